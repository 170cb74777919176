package service

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/wire-mesh/wire/service/servicetest"
)

// The node and the server as cmd_up and cmd_server_service describe them.
var (
	nodeSpec = Spec{
		Name: "wire", Description: "wire mesh VPN node (/etc/wire)",
		Args:     []string{"/usr/local/bin/wire", "up", "--foreground", "--state-dir", "/etc/wire"},
		StateDir: "/etc/wire", Restart: OnFailure, RestartDelay: 2 * time.Second,
		LogPath: "/etc/wire/wire.log",
	}
	serverSpec = Spec{
		Name: "wire-server", Description: "wire coordination server",
		Args:     []string{"/usr/local/bin/wire", "server", "--state-dir", "/var/lib/wire", "--listen", ":443"},
		StateDir: "/var/lib/wire", Restart: Always, RestartDelay: 5 * time.Second,
		Notify: true, Sandbox: true, MaxFiles: 65536, LogPath: "/var/log/wire-server.log",
	}
)

func TestSystemd(t *testing.T) {
	tests := []struct {
		spec Spec
		want string
	}{{nodeSpec, `[Unit]
Description=wire mesh VPN node (/etc/wire)
Documentation=https://github.com/wire-mesh/wire
After=network-online.target
Wants=network-online.target

[Service]
ExecStart=/usr/local/bin/wire up --foreground --state-dir /etc/wire
# SIGTERM to wire alone: what it runs on the way down (resolvectl revert)
# must finish, not be signalled with it.
KillMode=mixed
Restart=on-failure
RestartSec=2

[Install]
WantedBy=multi-user.target
`}, {serverSpec, `[Unit]
Description=wire coordination server
Documentation=https://github.com/wire-mesh/wire
After=network-online.target
Wants=network-online.target

[Service]
Type=notify
ExecStart=/usr/local/bin/wire server --state-dir /var/lib/wire --listen :443
# SIGTERM to wire alone: what it runs on the way down (resolvectl revert)
# must finish, not be signalled with it.
KillMode=mixed
Restart=always
RestartSec=5
LimitNOFILE=65536
# Root, but with no capability beyond binding ports under 1024 and forcing
# large UDP buffers for the relay (SO_RCVBUFFORCE); writing only its state.
CapabilityBoundingSet=CAP_NET_BIND_SERVICE CAP_NET_ADMIN
NoNewPrivileges=yes
ProtectSystem=strict
ReadWritePaths=/var/lib/wire
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK
RestrictNamespaces=yes
LockPersonality=yes

[Install]
WantedBy=multi-user.target
`}}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, Systemd(tt.spec)); diff != "" {
			t.Errorf("Systemd(%s) (-want +got):\n%s", tt.spec.Name, diff)
		}
	}
}

func TestSystemdCommand(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"/usr/bin/wire", "up"}, `/usr/bin/wire up`},
		{[]string{"/opt/my wire/wire", "--state-dir", "/srv/wire state"}, `"/opt/my wire/wire" --state-dir "/srv/wire state"`},
		{[]string{"/opt/100%/wire", "50%"}, `/opt/100%%/wire 50%%`},
		// systemd expands $ in the arguments only, not in the program's path.
		{[]string{"/opt/$x/wire", "$HOME", "${HOME}"}, `/opt/$x/wire $$HOME $${HOME}`},
		{[]string{"/bin/wire", `say "hi"`, `C:\dir`, "it's"}, `/bin/wire "say \"hi\"" "C:\\dir" "it's"`},
		{[]string{"/bin/wire", "", ";", "a;b"}, `/bin/wire "" \; a;b`},
		{[]string{"/bin/wire", "two\nlines", "tab\there", "50% $5"}, `/bin/wire "two\x0alines" "tab\x09here" "50%% $$5"`},
		{[]string{"/bin/wire", "&<>|"}, `/bin/wire &<>|`}, // not a shell: nothing to escape
	}
	for _, tt := range tests {
		if got := systemdCommand(tt.args); got != tt.want {
			t.Errorf("systemdCommand(%q)\n got %s\nwant %s", tt.args, got, tt.want)
		}
	}
}

func TestSystemdDescription(t *testing.T) {
	s := nodeSpec
	s.Args = []string{executable(t), "up"}
	s.Description = "wire mesh VPN node (/srv/100%\nInjected=yes)"
	servicetest.Verify(t, "wire.service", Systemd(s))
	if want := "Description=wire mesh VPN node (/srv/100%% Injected=yes)\n"; !strings.Contains(Systemd(s), want) {
		t.Errorf("unit lacks %q:\n%s", want, Systemd(s))
	}
}

func TestProtectHome(t *testing.T) {
	tests := []struct {
		bin, dir, want string
	}{
		{"/usr/local/bin/wire", "/var/lib/wire", "yes"},
		{"/usr/local/bin/wire", "/home/me/.wire", "read-only"},
		{"/usr/local/bin/wire", "/root/wire", "read-only"},
		{"/root/go/bin/wire", "/var/lib/wire", "read-only"}, // go install as root
		{"/usr/local/bin/wire", "/homework/wire", "yes"},
		{"/usr/local/bin/wire", "/run/user/1000/wire", "read-only"},
	}
	for _, tt := range tests {
		s := Spec{Args: []string{tt.bin, "server"}, StateDir: tt.dir}
		if got := protectHome(s); got != tt.want {
			t.Errorf("protectHome(bin %s, state %s) = %s, want %s", tt.bin, tt.dir, got, tt.want)
		}
	}
}

// TestSystemdVerify has systemd read the units, with awkward characters
// in every path: systemd-analyze checks that ExecStart's program, once
// unquoted and unescaped, is the executable there, and warns about any
// key, value, quoting or specifier it does not understand. (systemd
// refuses quotes and backslashes in the program's path whatever the
// escaping; they are tried in the arguments.)
func TestSystemdVerify(t *testing.T) {
	root := t.TempDir()
	binDir := filepath.Join(root, "my wire 100% $x &<>")
	odd := filepath.Join(root, `state 100% $x "q" \b 'it' &<>`)
	for _, dir := range []string{binDir, odd} {
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(binDir, "wire")
	if err := os.Symlink(executable(t), bin); err != nil {
		t.Fatal(err)
	}
	for _, s := range []Spec{nodeSpec, serverSpec} {
		s.Args = []string{bin, s.Args[1], "--state-dir", odd, "--say", "$HOME", ";", ""}
		s.StateDir = odd
		servicetest.Verify(t, s.Unit(), Systemd(s))
	}
}

// executable is a program that exists, for systemd-analyze to find.
func executable(t *testing.T) string {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return self
}
