package service

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/wire-mesh/wire/service/servicetest"
)

func TestLaunchd(t *testing.T) {
	tests := []struct {
		spec Spec
		want map[string]any
	}{{nodeSpec, map[string]any{
		"Label":            "com.wire-mesh.wire",
		"ProgramArguments": []any{"/usr/local/bin/wire", "up", "--foreground", "--state-dir", "/etc/wire"},
		"RunAtLoad":        true,
		// Restarted after a failure, not after `wire down`'s exit 0.
		"KeepAlive":         map[string]any{"SuccessfulExit": false},
		"ThrottleInterval":  int64(2),
		"StandardOutPath":   "/etc/wire/wire.log",
		"StandardErrorPath": "/etc/wire/wire.log",
	}}, {serverSpec, map[string]any{
		"Label":             "com.wire-mesh.wire-server",
		"ProgramArguments":  []any{"/usr/local/bin/wire", "server", "--state-dir", "/var/lib/wire", "--listen", ":443"},
		"RunAtLoad":         true,
		"KeepAlive":         true,
		"ThrottleInterval":  int64(5),
		"StandardOutPath":   "/var/log/wire-server.log",
		"StandardErrorPath": "/var/log/wire-server.log",
	}}}
	for _, tt := range tests {
		doc := Launchd(tt.spec)
		if !strings.HasPrefix(doc, `<?xml version="1.0" encoding="UTF-8"?>`+"\n<!DOCTYPE plist") {
			t.Errorf("Launchd(%s) does not start as a plist does:\n%s", tt.spec.Name, doc)
		}
		if diff := cmp.Diff(any(tt.want), servicetest.Plist(t, doc)); diff != "" {
			t.Errorf("Launchd(%s) (-want +got):\n%s", tt.spec.Name, diff)
		}
	}
}

// TestLaunchdEscaping checks that any string comes back from the plist as
// it went in: XML's special characters are escaped, not interpreted.
func TestLaunchdEscaping(t *testing.T) {
	odd := []string{
		"/opt/my wire/wire", `a "quoted" 'arg'`, "R&D <dept> 100% $HOME", "</string><true/>",
		"two\nlines\ttab", `back\slash`, "", "naïve ☃",
	}
	s := nodeSpec
	s.Args, s.LogPath = odd, "/var/log/R&D <wire>.log"
	doc := Launchd(s)
	for _, raw := range []string{"R&D", "<dept>", "</string><true/>", "<wire>"} {
		if strings.Contains(doc, raw) {
			t.Errorf("the plist holds %q unescaped:\n%s", raw, doc)
		}
	}
	got := servicetest.Plist(t, doc).(map[string]any)
	want := make([]any, len(odd))
	for i, a := range odd {
		want[i] = a
	}
	if diff := cmp.Diff(want, got["ProgramArguments"]); diff != "" {
		t.Errorf("ProgramArguments (-want +got):\n%s", diff)
	}
	if got["StandardOutPath"] != s.LogPath {
		t.Errorf("StandardOutPath = %q, want %q", got["StandardOutPath"], s.LogPath)
	}
}

// The parser the tests rely on must reject what launchd would.
func TestParsePlistRejects(t *testing.T) {
	for _, doc := range []string{
		`<plist><string>R&D</string></plist>`,
		`<plist><string>a<b</string></plist>`,
		`<plist><dict><key>A</key><true/><key>A</key><false/></dict></plist>`,
		`<plist><dict><string>no key</string></dict></plist>`,
		`<plist><dict><key>A</key></dict></plist>`,
		`<plist><integer>2s</integer></plist>`,
		`<plist><true/><true/></plist>`,
		`<plist><real>1.5</real></plist>`,
		`<dict></dict>`,
		`<plist><string>open</plist>`,
	} {
		if v, err := servicetest.ParsePlist(doc); err == nil {
			t.Errorf("ParsePlist(%s) = %v, want an error", doc, v)
		}
	}
}
