package server

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"strings"

	"github.com/wire-mesh/wire/api"
)

// MaxBody caps request bodies; a registration is a few hundred bytes.
const MaxBody = 64 << 10

var (
	nodeIDPattern   = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
	nodeNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)
)

// badRequest is an error in what the client sent (a 4xx, never a 5xx).
type badRequest struct{ msg string }

func (e *badRequest) Error() string { return e.msg }

func badf(format string, args ...any) error { return &badRequest{fmt.Sprintf(format, args...)} }

// decodeJSON decodes one JSON object from body into v. Strict decoding
// refuses fields that v does not have.
func decodeJSON(body []byte, v any, strict bool) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badf("bad JSON: more than one value in the body")
	}
	return nil
}

func jsonError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return badf("empty body: want a JSON object")
	case errors.As(err, &syn):
		return badf("bad JSON at byte %d: %v", syn.Offset, syn)
	case errors.As(err, &typ):
		if typ.Field == "" {
			return badf("bad JSON: want an object, got %s", typ.Value)
		}
		return badf("field %s: want %s, got %s", typ.Field, typ.Type, typ.Value)
	}
	return badf("bad JSON: %v", err)
}

// parseRegister decodes and checks a POST /register body.
func parseRegister(body []byte, strict bool) (api.RegisterRequest, error) {
	var req api.RegisterRequest
	if err := decodeJSON(body, &req, strict); err != nil {
		return req, err
	}
	if len(req.Relayed) == 0 {
		req.Relayed = nil // [] and none are the same
	}
	return req, checkRegister(req)
}

func checkRegister(req api.RegisterRequest) error {
	nameErr := CheckNodeName(req.NodeName)
	switch {
	case !nodeIDPattern.MatchString(req.NodeID):
		return badf("node_id %q: want 1 to 64 letters, digits, '.', '_' or '-'", clip(req.NodeID))
	case nameErr != nil:
		return badf("node_name %v", nameErr)
	case !validWGKey(req.WGPublicKey):
		return badf("wg_public_key: want a WireGuard public key (base64 of 32 bytes)")
	case req.Port < 1 || req.Port > 65535:
		return badf("port %d: want 1 to 65535", req.Port)
	case req.NATPort < 0 || req.NATPort > 65535:
		return badf("nat_port %d: want 0 (unknown) to 65535", req.NATPort)
	}
	if req.LANIP != "" {
		// A plain address: peers dial it, and print it. A zone names an
		// interface of the sender's, meaningless to them.
		if a, err := netip.ParseAddr(req.LANIP); err != nil || a.Zone() != "" {
			return badf("lan_ip %q: want an IPv4 or IPv6 address without a zone", clip(req.LANIP))
		}
	}
	if req.JoinKey != "" {
		if _, err := api.ParseJoinKey(req.JoinKey); err != nil {
			return badf("join_key: %v", err)
		}
	}
	if len(req.Version) > 64 || strings.ContainsFunc(req.Version, func(r rune) bool { return r < ' ' || r > '~' }) {
		return badf("version %q: want at most 64 printable ASCII characters", clip(req.Version))
	}
	if len(req.Relayed) > api.MaxRelayed {
		return badf("relayed: %d node ids, want at most %d", len(req.Relayed), api.MaxRelayed)
	}
	for _, id := range req.Relayed {
		if !nodeIDPattern.MatchString(id) {
			return badf("relayed: node_id %q: want 1 to 64 letters, digits, '.', '_' or '-'", clip(id))
		}
	}
	return nil
}

func validWGKey(s string) bool {
	b, err := base64.StdEncoding.DecodeString(s)
	return err == nil && len(b) == 32 && len(s) == 44
}

// parsePunch decodes and checks a POST /punch body.
func parsePunch(body []byte, strict bool) (api.PunchRequest, error) {
	var req api.PunchRequest
	if err := decodeJSON(body, &req, strict); err != nil {
		return req, err
	}
	for _, f := range []struct{ name, v string }{{"from_vpn_ip", req.FromVPNIP}, {"to_vpn_ip", req.ToVPNIP}} {
		if a, err := netip.ParseAddr(f.v); err != nil || !a.Is4() {
			return req, badf("%s %q: want an IPv4 address", f.name, clip(f.v))
		}
	}
	return req, nil
}

// clip shortens what a client sent before it is echoed in an error (with
// %q, which escapes what a terminal would act on).
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// CheckNodeName says whether name may be a node's name.
func CheckNodeName(name string) error {
	if !nodeNamePattern.MatchString(name) {
		return fmt.Errorf("%q: want 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit", clip(name))
	}
	return nil
}
