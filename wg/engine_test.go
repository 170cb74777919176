package wg

import (
	"strings"
	"testing"
)

func TestNewUnknownKind(t *testing.T) {
	e, err := New(Options{Kind: "quantum"})
	if err == nil || e != nil {
		t.Fatalf("New with kind quantum = %v, %v; want an error", e, err)
	}
	for _, kind := range []string{KindAuto, KindKernel, KindUserspace} {
		if !strings.Contains(err.Error(), kind) {
			t.Errorf("error %q does not list kind %q", err, kind)
		}
	}
}

func TestOptionsDefaults(t *testing.T) {
	o := Options{}.withDefaults()
	if o.Name != defaultName || o.Kind != KindAuto || o.MTU != DefaultMTU || o.Logger == nil || o.ListenPort != 0 {
		t.Errorf("defaults = %+v", o)
	}
}
