package service

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// Systemd is the spec as a systemd unit.
//
// The units are written with fmt, not text/template: a template's
// reflection on method names keeps every exported method of every type
// in the binary (the linker cannot tell which it calls), some 4 MB.
func Systemd(s Spec) string {
	var b strings.Builder
	fmt.Fprintf(&b, `[Unit]
Description=%s
Documentation=https://github.com/wire-mesh/wire
After=network-online.target
Wants=network-online.target

[Service]
`, systemdText(s.Description))
	if s.Notify {
		b.WriteString("Type=notify\n")
	}
	fmt.Fprintf(&b, `ExecStart=%s
# SIGTERM to wire alone: what it runs on the way down (resolvectl revert)
# must finish, not be signalled with it.
KillMode=mixed
Restart=%s
RestartSec=%d
`, systemdCommand(s.Args), s.Restart, seconds(s.RestartDelay))
	if s.MaxFiles != 0 {
		fmt.Fprintf(&b, "LimitNOFILE=%d\n", s.MaxFiles)
	}
	if s.Sandbox {
		fmt.Fprintf(&b, `# Root, but with no capability beyond binding ports under 1024 and forcing
# large UDP buffers for the relay (SO_RCVBUFFORCE); writing only its state.
CapabilityBoundingSet=CAP_NET_BIND_SERVICE CAP_NET_ADMIN
NoNewPrivileges=yes
ProtectSystem=strict
ReadWritePaths=%s
ProtectHome=%s
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK
RestrictNamespaces=yes
LockPersonality=yes
`, systemdWord(s.StateDir), protectHome(s))
	}
	b.WriteString(`
[Install]
WantedBy=multi-user.target
`)
	return b.String()
}

// systemdCommand is an ExecStart= line. systemd expands $VAR in the
// arguments, not in the program's path, so only they double their $.
func systemdCommand(args []string) string {
	words := make([]string, len(args))
	for i, a := range args {
		words[i] = systemdWord(a)
		if i > 0 {
			words[i] = strings.ReplaceAll(words[i], "$", "$$")
		}
	}
	return strings.Join(words, " ")
}

// systemdWord is s as one word of a setting that systemd splits at
// spaces and unquotes (systemd.syntax(7), "Quoting"): double-quoted with
// C escapes where it must be, and with % doubled against specifiers.
func systemdWord(s string) string {
	switch {
	case s == ";":
		return `\;` // a lone ; would separate two commands
	case s != "" && !strings.ContainsFunc(s, needsQuotes):
		return strings.ReplaceAll(s, "%", "%%")
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '%':
			b.WriteString("%%")
		case r < ' ' || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func needsQuotes(r rune) bool {
	return r <= ' ' || r == 0x7f || r == '"' || r == '\'' || r == '\\'
}

// systemdText is free text to the end of the line, as Description= takes
// it: no quoting, but specifiers, and no line breaks.
func systemdText(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	return strings.ReplaceAll(s, "%", "%%")
}

// protectHome hides /home, /root and /run/user from a sandboxed program,
// unless its state dir or one of its arguments (the binary itself, after
// `go install`) lies there: then they stay visible, read-only but for
// ReadWritePaths.
func protectHome(s Spec) string {
	for _, p := range append([]string{s.StateDir}, s.Args...) {
		for _, home := range []string{"/home", "/root", "/run/user"} {
			if p := filepath.Clean(p); p == home || strings.HasPrefix(p, home+"/") {
				return "read-only"
			}
		}
	}
	return "yes"
}

func seconds(d time.Duration) int { return int(d / time.Second) }
