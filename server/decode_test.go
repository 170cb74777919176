package server

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

const validRegister = `{"node_id":"a1b2c3d4e5f60718293a4b5c6d7e8f90","node_name":"node1","wg_public_key":"YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWE=","port":51820,"nat_port":54321,"lan_ip":"10.0.0.2"}`

// FuzzParseRegister checks that no body makes the decoder panic, that
// every refusal is a client error, and that what it accepts is valid.
func FuzzParseRegister(f *testing.F) {
	for _, s := range []string{validRegister, `{}`, `{"port":"1"}`, `[]`, `null`, `{"node_id":"x"} {}`} {
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, body []byte, strict bool) {
		req, err := parseRegister(body, strict)
		var bad *badRequest
		if err != nil {
			if !errors.As(err, &bad) {
				t.Fatalf("error %v is not a badRequest", err)
			}
			return
		}
		if checkRegister(req) != nil {
			t.Fatalf("accepted an invalid request: %+v", req)
		}
		// What was accepted survives a round trip unchanged.
		b, _ := json.Marshal(req)
		again, err := parseRegister(b, true)
		if err != nil || !reflect.DeepEqual(again, req) {
			t.Fatalf("round trip: %+v, %v; want %+v", again, err, req)
		}
	})
}

func FuzzParsePunch(f *testing.F) {
	for _, s := range []string{`{"from_vpn_ip":"10.99.1.1","to_vpn_ip":"10.99.2.2"}`, `{"from_vpn_ip":1}`, `{`} {
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, body []byte, strict bool) {
		_, err := parsePunch(body, strict)
		var bad *badRequest
		if err != nil && !errors.As(err, &bad) {
			t.Fatalf("error %v is not a badRequest", err)
		}
	})
}

func FuzzParseSeedState(f *testing.F) {
	f.Add([]byte(`{"nodes":{"a":{"node_name":"x","vpn_ip":"10.99.1.1","last_seen":1.5}}}`))
	f.Add([]byte(`{"nodes":[{"node_id":"a"}]}`))
	f.Add([]byte(`{"a":{"node_name":"x"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		parseSeedState(b) // must not panic
	})
}
