//go:build unix

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestInstall runs install.sh, as `curl ... | sh` would, under every POSIX
// shell this machine has, against releases built by go run ./release and
// served on loopback, into temp dirs.
func TestInstall(t *testing.T) {
	for _, tool := range []string{"sh", "tar", "sha256sum"} {
		needTool(t, tool)
	}
	if _, err := exec.LookPath("wget"); err != nil {
		needTool(t, "curl")
	}
	host := runtime.GOOS + "/" + runtime.GOARCH
	if !slices.Contains(targets, host) {
		t.Skipf("wire has no release build for %s", host)
	}
	start := time.Now()
	r123, r124 := installBuild(t, "1.2.3"), installBuild(t, "1.2.4")
	t.Logf("built two releases in %.1f s", time.Since(start).Seconds())

	scenarios := []struct {
		name string
		test func(*testing.T, installFixture)
	}{
		{"fresh", installFresh},
		{"again and upgrade", installAgain},
		{"upgrade under a running wire", installUnderRunning},
		{"replaces what is in the way", installReplaces},
		{"refuses", installRefuses},
		{"tampered archive", installTampered},
		{"bad binary", installBadBinary},
		{"download fails", installDownloadFails},
		{"WIRE_VERSION", installPinned},
		{"file URL", installFromFiles},
		{"platforms", installPlatforms},
		{"tools", installTools},
		{"interrupted", installInterrupted},
		{"not root", installNotRoot},
	}
	for _, sh := range installShells(t) {
		f := installFixture{sh, r123, r124}
		t.Run(sh.name, func(t *testing.T) {
			t.Parallel()
			for _, s := range scenarios {
				t.Run(s.name, func(t *testing.T) {
					t.Parallel()
					s.test(t, f)
				})
			}
		})
	}
}

// installFixture is what each scenario starts from: a shell and two
// releases of wire.
type installFixture struct {
	sh         installShell
	r123, r124 installRelease
}

// env is a new temp world to install into, with the installer's script.
func (f installFixture) env(t *testing.T) *installEnv {
	return newInstallEnv(t, f.sh, f.r123["install.sh"])
}

func installFresh(t *testing.T, f installFixture) {
	e := f.env(t)
	res := e.run(installServe(t, f.r123).url)
	res.ok(t)
	e.checkInstalled("1.2.3")
	res.says(t, res.stdout, "installed wire 1.2.3 in "+e.bin)
	res.says(t, res.stdout, e.bin+"/wire server install-service")
	res.says(t, res.stdout, e.bin+"/wire up --server https://SERVER:8787 --join KEY")
	res.says(t, res.stderr, `export PATH="`+e.bin+`:$PATH"`)
	if got := installSnapshot(t, e.home); len(got) != 0 {
		t.Errorf("HOME holds %v; want it untouched", got)
	}
	if strings.Contains(res.stderr, "warning") {
		t.Errorf("warns about a download from loopback:\n%s", res.stderr)
	}
	if os.Geteuid() == 0 && strings.Contains(res.stdout, "sudo") {
		t.Errorf("tells root to use sudo:\n%s", res.stdout)
	}
	// Run through sudo, the user will need sudo for the next steps too.
	res = e.run(installServe(t, f.r123).url, "SUDO_USER=alice")
	res.ok(t)
	res.says(t, res.stdout, "sudo "+e.bin+"/wire up --server https://SERVER:8787 --join KEY")
}

// installAgain installs the same version twice, then the next one.
func installAgain(t *testing.T, f installFixture) {
	e := f.env(t)
	url := installServe(t, f.r123).url
	e.run(url).ok(t)
	before := installSnapshot(t, e.bin)
	res := e.run(url)
	res.ok(t)
	res.says(t, res.stdout, "reinstalled wire 1.2.3")
	e.checkUnchanged(before)
	res = e.run(installServe(t, f.r124).url)
	res.ok(t)
	res.says(t, res.stdout, "upgraded wire 1.2.3 -> 1.2.4")
	e.checkInstalled("1.2.4")
}

// installUnderRunning upgrades while the old wire runs. The new file is
// renamed over the old one, so the running wire keeps its file: writing
// into it would fail (ETXTBSY) or corrupt the running program.
func installUnderRunning(t *testing.T, f installFixture) {
	e := f.env(t)
	e.run(installServe(t, f.r123).url).ok(t)
	old, err := os.Stat(filepath.Join(e.bin, "wire"))
	if err != nil {
		t.Fatal(err)
	}
	// wire mcp serves stdin until it closes.
	mcp := exec.Command(filepath.Join(e.bin, "wire-mcp"), "--state-dir", filepath.Join(e.home, "state"))
	stdin, err := mcp.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := mcp.Start(); err != nil {
		t.Fatal(err)
	}
	defer mcp.Process.Kill()

	e.run(installServe(t, f.r124).url).ok(t)
	e.checkInstalled("1.2.4")
	if cur, err := os.Stat(filepath.Join(e.bin, "wire")); err != nil || os.SameFile(old, cur) {
		t.Errorf("wire was rewritten in place (%v), not replaced", err)
	}
	stdin.Close()
	if err := mcp.Wait(); err != nil {
		t.Errorf("the wire mcp that ran during the upgrade: %v", err)
	}
}

// installReplaces installs over an older wire, a stray file and a dangling
// link, then over a wire that does not say its version.
func installReplaces(t *testing.T, f installFixture) {
	e := f.env(t)
	installWrite(t, filepath.Join(e.bin, "wire"), "#!/bin/sh\necho 'wire 0.9.0 (go1.25.0, linux/amd64)'\n", 0o755)
	installWrite(t, filepath.Join(e.bin, "wire-server"), "an old copy\n", 0o755)
	if err := os.Symlink("/nonexistent/wire", filepath.Join(e.bin, "wire-mcp")); err != nil {
		t.Fatal(err)
	}
	res := e.run(installServe(t, f.r123).url)
	res.ok(t)
	res.says(t, res.stdout, "upgraded wire 0.9.0 -> 1.2.3")
	e.checkInstalled("1.2.3")

	// A wire whose version it cannot read, like meshpop-wire's.
	installWrite(t, filepath.Join(e.bin, "wire"), "#!/bin/sh\necho 'usage: wire [server|up]' >&2; exit 2\n", 0o755)
	res = e.run(installServe(t, f.r123).url)
	res.ok(t)
	res.says(t, res.stdout, "replaced "+e.bin+"/wire with wire 1.2.3")
	e.checkInstalled("1.2.3")
}

// installRefuses leaves alone what it must not replace: a directory (mv
// would move into it), and Homebrew's link to its own wire.
func installRefuses(t *testing.T, f installFixture) {
	for _, tc := range []struct {
		name  string
		setup func(bin string) error
		want  string
	}{
		{"a directory", func(bin string) error {
			return os.MkdirAll(filepath.Join(bin, "wire-mcp"), 0o755)
		}, "/wire-mcp is a directory"},
		{"Homebrew's wire", func(bin string) error {
			os.Mkdir(bin, 0o755)
			return os.Symlink("../Cellar/wire/1.0.0/bin/wire", filepath.Join(bin, "wire"))
		}, "/wire is Homebrew's: upgrade it with brew upgrade wire"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := f.env(t)
			if err := tc.setup(e.bin); err != nil {
				t.Fatal(err)
			}
			before := installSnapshot(t, e.bin)
			e.run(installServe(t, f.r123).url).fails(t, "wire install: "+e.bin+tc.want)
			e.checkUnchanged(before)
		})
	}
}

// installTampered serves an archive with one bit flipped: refused, into a
// fresh dir and over an earlier install.
func installTampered(t *testing.T, f installFixture) {
	bad := f.r124.clone()
	name := archiveName("1.2.4", runtime.GOOS, runtime.GOARCH)
	bad[name][len(bad[name])/2] ^= 0x01
	url := installServe(t, bad).url

	fresh := f.env(t)
	fresh.run(url).fails(t, "wire install: checksum mismatch for "+name)
	fresh.checkNothingInstalled()

	e := f.env(t)
	e.run(installServe(t, f.r123).url).ok(t)
	before := installSnapshot(t, e.bin)
	e.run(url).fails(t, "wire install: checksum mismatch for "+name)
	e.checkUnchanged(before)
}

// installBadBinary serves a wire that passes the checksum but does not
// run, or is not the version its archive says. It is refused after it was
// copied into the install dir: the copy must go, and the old install stay.
func installBadBinary(t *testing.T, f installFixture) {
	for _, tc := range []struct{ name, script, want string }{
		{"does not run", "#!/bin/sh\necho 'cannot execute binary file' >&2; exit 126\n",
			"wire install: the downloaded wire does not run on this machine: cannot execute binary file"},
		{"another version", "#!/bin/sh\necho 'wire 9.9.9 (go1.26.8, linux/amd64)'\n",
			`wire install: the downloaded wire says "wire 9.9.9 (go1.26.8, linux/amd64)", not version 1.2.4`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := f.env(t)
			e.run(installServe(t, f.r123).url).ok(t)
			before := installSnapshot(t, e.bin)
			e.run(installServe(t, installFake(t, "1.2.4", tc.script)).url).fails(t, tc.want)
			e.checkUnchanged(before)
		})
	}
}

// installDownloadFails gets a 404 for the archive, then finds no server.
func installDownloadFails(t *testing.T, f installFixture) {
	files := f.r123.clone()
	name := archiveName("1.2.3", runtime.GOOS, runtime.GOARCH)
	delete(files, name)
	url := installServe(t, files).url
	e := f.env(t)
	e.run(url).fails(t, "wire install: cannot download "+url+"/"+name)
	e.checkNothingInstalled()

	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	e.run(srv.URL).fails(t, "wire install: cannot download "+srv.URL+"/SHA256SUMS")
	e.checkNothingInstalled()
}

// installPinned asks for a version: the release must be that version.
func installPinned(t *testing.T, f installFixture) {
	url := installServe(t, f.r123).url
	e := f.env(t)
	e.run(url, "WIRE_VERSION=1.2.4").fails(t, "wire install: WIRE_VERSION is 1.2.4 but "+url+" has wire 1.2.3")
	e.checkNothingInstalled()
	e.run(url, "WIRE_VERSION=v1.2.3").ok(t)
	e.checkInstalled("1.2.3")
}

// installFromFiles installs from a copy of the release on disk.
func installFromFiles(t *testing.T, f installFixture) {
	needTool(t, "curl") // wget has no file:// URLs
	dist := t.TempDir()
	for name, data := range f.r123 {
		installWrite(t, filepath.Join(dist, name), string(data), 0o644)
	}
	e := f.env(t)
	res := e.run("file://" + dist)
	res.ok(t)
	e.checkInstalled("1.2.3")
	if strings.Contains(res.stderr, "warning") {
		t.Errorf("warns about a download from a file:\n%s", res.stderr)
	}
}

// installPlatforms fakes uname (and sysctl, for Rosetta) and checks which
// archive the installer asks for, or that it refuses before downloading.
func installPlatforms(t *testing.T, f installFixture) {
	var sums strings.Builder
	for _, target := range targets {
		goos, goarch, _ := strings.Cut(target, "/")
		fmt.Fprintf(&sums, "%064d  %s\n", 0, archiveName("1.2.3", goos, goarch))
	}
	for _, tc := range []struct {
		kernel, machine, translated string
		want                        string // the archive it downloads, or what it says
	}{
		{"Linux", "x86_64", "1", "wire_1.2.3_linux_amd64.tar.gz"},
		{"Linux", "aarch64", "0", "wire_1.2.3_linux_arm64.tar.gz"},
		{"Linux", "amd64", "0", "wire_1.2.3_linux_amd64.tar.gz"}, // as some unames say
		{"Darwin", "arm64", "0", "wire_1.2.3_darwin_arm64.tar.gz"},
		{"Darwin", "x86_64", "0", "wire_1.2.3_darwin_amd64.tar.gz"},
		{"Darwin", "x86_64", "1", "wire_1.2.3_darwin_arm64.tar.gz"}, // under Rosetta
		{"FreeBSD", "amd64", "0", "wire install: wire has no build for FreeBSD/amd64"},
		{"Linux", "riscv64", "0", "wire install: wire has no build for Linux/riscv64"},
		{"Linux", "armv7l", "0", "wire install: wire has no build for Linux/armv7l"},
	} {
		t.Run(tc.kernel+"/"+tc.machine+"/"+tc.translated, func(t *testing.T) {
			t.Parallel()
			srv := installServe(t, installRelease{"SHA256SUMS": []byte(sums.String())})
			fake := t.TempDir()
			installWrite(t, filepath.Join(fake, "uname"), fmt.Sprintf(
				"#!/bin/sh\ncase $1 in -m) echo %s ;; *) echo %s ;; esac\n", tc.machine, tc.kernel), 0o755)
			installWrite(t, filepath.Join(fake, "sysctl"), "#!/bin/sh\necho "+tc.translated+"\n", 0o755)
			e := f.env(t)
			e.fakes = fake
			res := e.run(srv.url, "PATH="+fake+":"+os.Getenv("PATH"))
			e.checkNothingInstalled()
			if strings.HasPrefix(tc.want, "wire_") {
				res.fails(t, "wire install: cannot download "+srv.url+"/"+tc.want)
				if diff := cmp.Diff([]string{"/SHA256SUMS", "/" + tc.want}, srv.requests()); diff != "" {
					t.Errorf("requests (-want +got):\n%s", diff)
				}
				return
			}
			res.fails(t, tc.want)
			res.says(t, res.stderr, "build from source")
			if got := srv.requests(); len(got) != 0 {
				t.Errorf("refused, yet asked the server for %v", got)
			}
		})
	}
}

// installTools hides tools from the installer's PATH, so that it falls
// back to wget, shasum or openssl, or says what it needs.
func installTools(t *testing.T, f installFixture) {
	name := archiveName("1.2.3", runtime.GOOS, runtime.GOARCH)
	tampered, missing := f.r123.clone(), f.r123.clone()
	tampered[name][100] ^= 0x80
	delete(missing, name)
	for _, tc := range []struct {
		name string
		hide []string
		need string // the tool it falls back to; "" for none
		want string // what it says when there is none
	}{
		{"wget", []string{"curl"}, "wget", ""},
		{"shasum", []string{"sha256sum"}, "shasum", ""},
		{"openssl", []string{"sha256sum", "shasum"}, "openssl", ""},
		{"no downloader", []string{"curl", "wget"}, "", "wire install: needs curl or wget"},
		{"no sha256", []string{"sha256sum", "shasum", "openssl"}, "", "wire install: needs sha256sum, shasum or openssl"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := "PATH=" + installPathWithout(t, tc.hide...)
			e := f.env(t)
			if tc.need == "" && f.sh.applets {
				t.Skipf("%s has applets (sha256sum, wget) that no PATH can hide, and a system with it always has them: sh and dash test this case", f.sh.name)
			}
			if tc.need == "" {
				srv := installServe(t, f.r123)
				e.run(srv.url, path).fails(t, tc.want)
				e.checkNothingInstalled()
				if got := srv.requests(); len(got) != 0 {
					t.Errorf("refused, yet asked the server for %v", got)
				}
				return
			}
			needTool(t, tc.need)
			e.run(installServe(t, tampered).url, path).fails(t, "wire install: checksum mismatch for "+name)
			e.checkNothingInstalled()
			url := installServe(t, missing).url
			e.run(url, path).fails(t, "wire install: cannot download "+url+"/"+name)
			e.checkNothingInstalled()
			e.run(installServe(t, f.r123).url, path).ok(t)
			e.checkInstalled("1.2.3")
		})
	}
}

// installInterrupted signals the installer's process group, as ^C in a
// terminal does, while the archive is half downloaded: the trap must
// remove the temp dir and exit with the signal's status.
func installInterrupted(t *testing.T, f installFixture) {
	name := archiveName("1.2.3", runtime.GOOS, runtime.GOARCH)
	archive := f.r123[name]
	for _, tc := range []struct {
		sig  syscall.Signal
		code int
	}{{syscall.SIGINT, 130}, {syscall.SIGTERM, 143}, {syscall.SIGHUP, 129}} {
		t.Run(tc.sig.String(), func(t *testing.T) {
			t.Parallel()
			started := make(chan struct{}, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				if req.URL.Path != "/"+name {
					w.Write(f.r123[strings.TrimPrefix(req.URL.Path, "/")])
					return
				}
				w.Header().Set("Content-Length", fmt.Sprint(len(archive)))
				w.Write(archive[:len(archive)/2])
				w.(http.Flusher).Flush()
				select {
				case started <- struct{}{}:
				default:
				}
				select { // until the installer hangs up
				case <-req.Context().Done():
				case <-time.After(time.Minute):
				}
			}))
			t.Cleanup(srv.Close)

			e := f.env(t)
			cmd, stderr := e.command(srv.URL)
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			select {
			case <-started:
			case <-time.After(time.Minute):
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("the installer never asked for the archive:\n%s", stderr)
			}
			if err := syscall.Kill(-cmd.Process.Pid, tc.sig); err != nil {
				t.Fatal(err)
			}
			err := cmd.Wait()
			if code := cmd.ProcessState.ExitCode(); code != tc.code {
				t.Errorf("after %v the installer exited with %d (%v), want %d:\n%s", tc.sig, code, err, tc.code, stderr)
			}
			e.checkTmpEmpty()
			e.checkNothingInstalled()
		})
	}
}

// installNotRoot runs the installer without WIRE_INSTALL_DIR as a user
// who is not root (nobody, when the test is root): it installs into
// ~/.local/bin and says so, and refuses a directory it cannot write.
func installNotRoot(t *testing.T, f installFixture) {
	e := f.env(t)
	if os.Geteuid() == 0 {
		e.asNobody()
	}
	e.dir = "" // the default
	e.bin = filepath.Join(e.home, ".local", "bin")
	srv := installServe(t, f.r123)

	res := e.run(srv.url)
	res.ok(t)
	e.checkInstalled("1.2.3")
	res.says(t, res.stderr, "not root: installing into "+e.bin)
	res.says(t, res.stderr, `export PATH="`+e.bin+`:$PATH"`)
	res.says(t, res.stdout, "sudo "+e.bin+"/wire up --server https://SERVER:8787 --join KEY")
	if info, err := os.Stat(filepath.Join(e.bin, "wire")); err == nil && e.cred != nil {
		if uid := info.Sys().(*syscall.Stat_t).Uid; uid != e.cred.Uid {
			t.Errorf("wire is owned by uid %d, want %d", uid, e.cred.Uid)
		}
	}

	res = e.run(srv.url, "PATH="+e.bin+":"+os.Getenv("PATH"))
	res.ok(t)
	res.says(t, res.stdout, "reinstalled wire 1.2.3")
	if strings.Contains(res.stderr, "not on your PATH") {
		t.Errorf("with %s on PATH, it says:\n%s", e.bin, res.stderr)
	}

	locked := filepath.Join(e.home, "locked")
	if err := os.Mkdir(locked, 0o555); err != nil {
		t.Fatal(err)
	}
	asked := len(srv.requests())
	res = e.run(srv.url, "WIRE_INSTALL_DIR="+locked)
	res.fails(t, "wire install: cannot write to "+locked)
	if got := srv.requests()[asked:]; len(got) != 0 {
		t.Errorf("refused %s, but only after asking the server for %v", locked, got)
	}
	if got := installSnapshot(t, locked); len(got) != 0 {
		t.Errorf("%s holds %v after a refused install", locked, got)
	}
}

// installRelease is a release's files by name.
type installRelease map[string][]byte

// clone copies the map and the bytes, so a test may change them.
func (r installRelease) clone() installRelease {
	c := installRelease{}
	for name, data := range r {
		c[name] = bytes.Clone(data)
	}
	return c
}

// installBuild builds a release for this machine with go run ./release,
// from the repository root, with this machine's Go and the module proxy
// off: no network.
func installBuild(t *testing.T, version string) installRelease {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "dist")
	cmd := exec.Command("go", "run", "./release", "-out", out, "-version", version,
		"-targets", runtime.GOOS+"/"+runtime.GOARCH, "-formula", "")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), offline...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go run ./release -version %s: %v\n%s", version, err, b)
	}
	entries, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	r := installRelease{}
	for _, e := range entries {
		if r[e.Name()], err = os.ReadFile(filepath.Join(out, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// installFake is a release for this machine whose wire is a shell script.
func installFake(t *testing.T, version, script string) installRelease {
	t.Helper()
	name := archiveName(version, runtime.GOOS, runtime.GOARCH)
	archive, err := tarGz(strings.TrimSuffix(name, ".tar.gz"), time.Unix(1764000000, 0),
		[]file{{name: "wire", mode: 0o755, data: []byte(script)}})
	if err != nil {
		t.Fatal(err)
	}
	return installRelease{name: archive, "SHA256SUMS": sumsFile(map[string]string{name: sha256Hex(archive)})}
}

type installServer struct {
	url string
	mu  sync.Mutex
	got []string // the paths asked for
}

func (s *installServer) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.got)
}

// installServe serves a release over HTTP on loopback; a name it does not
// have is a 404.
func installServe(t *testing.T, r installRelease) *installServer {
	s := &installServer{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		s.mu.Lock()
		s.got = append(s.got, req.URL.Path)
		s.mu.Unlock()
		data, ok := r[strings.TrimPrefix(req.URL.Path, "/")]
		if !ok {
			http.NotFound(w, req)
			return
		}
		w.Write(data)
	}))
	t.Cleanup(srv.Close)
	s.url = srv.URL
	return s
}

// installShell is a shell to run the installer with.
type installShell struct {
	name string
	argv []string
	// applets says the shell runs its own uname, sha256sum, wget... before
	// any on PATH, as Debian's busybox does: fakes on PATH do not work
	// there, and what a busybox system always has cannot be hidden.
	applets bool
}

// installShells are the shells on this machine that curl ... | sh may
// meet: sh, and dash, bash in POSIX mode and busybox's ash when they are
// installed and are not sh itself. Each is named for the program that
// runs: on Debian, sh is dash.
func installShells(t *testing.T) []installShell {
	var shells []installShell
	for _, argv := range [][]string{{"sh"}, {"dash"}, {"bash", "--posix"}, {"busybox", "sh"}} {
		path, err := exec.LookPath(argv[0])
		if err != nil {
			t.Logf("no %s here; not testing under it", argv[0])
			continue
		}
		if real, err := filepath.EvalSymlinks(path); err == nil {
			path = real
		}
		name := filepath.Base(path)
		if slices.ContainsFunc(shells, func(sh installShell) bool { return sh.name == name }) {
			continue // sh is this one
		}
		// Applets first? Then uname runs with an empty PATH.
		probe := exec.Command(argv[0], append(argv[1:], "-c", "PATH=/nonexistent; uname -s")...)
		applets := probe.Run() == nil
		shells = append(shells, installShell{name, argv, applets})
	}
	t.Logf("shells: %v", shells)
	return shells
}

// installEnv is one test's installer: a shell, the script, and the
// directories it installs into.
type installEnv struct {
	t       *testing.T
	shell   installShell
	script  []byte
	dir     string // WIRE_INSTALL_DIR, or "" for the default
	bin     string // where wire is expected
	home    string
	tmp     string // TMPDIR, which must be empty after each run
	workdir string
	cred    *syscall.Credential // whom to run as; nil for this process's user
	// fakes is a dir of commands that stand in for the system's: first on
	// PATH, and for a shell with applets, shell functions that run them.
	fakes string
}

// newInstallEnv makes HOME and TMPDIR in a temp dir, and names an install
// dir there that does not exist yet.
func newInstallEnv(t *testing.T, sh installShell, script []byte) *installEnv {
	root := t.TempDir()
	e := &installEnv{t: t, shell: sh, script: script, workdir: root,
		bin: filepath.Join(root, "bin"), home: filepath.Join(root, "home"), tmp: filepath.Join(root, "tmp")}
	e.dir = e.bin
	for _, dir := range []string{e.home, e.tmp} {
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// asNobody makes the installer run as nobody (65534), in a HOME and
// TMPDIR of its own, under a dir that it can reach: t.TempDir is 0700.
func (e *installEnv) asNobody() {
	t := e.t
	root, err := os.MkdirTemp("", "wire-install-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	e.workdir, e.home, e.tmp = root, filepath.Join(root, "home"), filepath.Join(root, "tmp")
	for _, dir := range []string{e.home, e.tmp} {
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(dir, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	e.cred = &syscall.Credential{Uid: 65534, Gid: 65534}
}

// command is the installer, reading the script from stdin as in
// curl ... | sh, with a minimal environment plus env. It never installs
// into the real /usr/local/bin.
func (e *installEnv) command(base string, env ...string) (*exec.Cmd, *bytes.Buffer) {
	if e.dir == "" && e.cred == nil && os.Geteuid() == 0 {
		e.t.Fatal("as root without WIRE_INSTALL_DIR the installer would write /usr/local/bin")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	e.t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, e.shell.argv[0], e.shell.argv[1:]...)
	cmd.Dir = e.workdir
	cmd.Stdin = bytes.NewReader(append(e.fakeFunctions(), e.script...))
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + e.home, "TMPDIR=" + e.tmp, "WIRE_INSTALL_BASE=" + base}
	if e.dir != "" {
		cmd.Env = append(cmd.Env, "WIRE_INSTALL_DIR="+e.dir)
	}
	cmd.Env = append(cmd.Env, env...)
	if e.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: e.cred}
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	return cmd, &stderr
}

// fakeFunctions defines, for a shell whose applets come before PATH, a
// function for each fake that runs it: functions come before applets.
func (e *installEnv) fakeFunctions() []byte {
	if e.fakes == "" || !e.shell.applets {
		return nil
	}
	entries, err := os.ReadDir(e.fakes)
	if err != nil {
		e.t.Fatal(err)
	}
	var b bytes.Buffer
	for _, f := range entries {
		fmt.Fprintf(&b, "%s() { '%s' \"$@\"; }\n", f.Name(), filepath.Join(e.fakes, f.Name()))
	}
	return b.Bytes()
}

type installResult struct {
	stdout, stderr string
	err            error
}

// run runs the installer and checks it left no temp files in TMPDIR.
func (e *installEnv) run(base string, env ...string) installResult {
	e.t.Helper()
	cmd, stderr := e.command(base, env...)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	err := cmd.Run()
	e.checkTmpEmpty()
	return installResult{stdout.String(), stderr.String(), err}
}

func (e *installEnv) checkTmpEmpty() {
	e.t.Helper()
	if left := installSnapshot(e.t, e.tmp); len(left) != 0 {
		e.t.Errorf("the installer left %v in TMPDIR", left)
	}
}

func (r installResult) ok(t *testing.T) {
	t.Helper()
	if r.err != nil {
		t.Fatalf("installer: %v\nstdout:\n%s\nstderr:\n%s", r.err, r.stdout, r.stderr)
	}
}

// fails checks the installer failed, saying want on stderr.
func (r installResult) fails(t *testing.T, want string) {
	t.Helper()
	var exit *exec.ExitError
	if !errors.As(r.err, &exit) {
		t.Errorf("installer: %v, want it to exit non-zero\nstdout:\n%s\nstderr:\n%s", r.err, r.stdout, r.stderr)
	}
	r.says(t, r.stderr, want)
}

func (r installResult) says(t *testing.T, out, want string) {
	t.Helper()
	if !strings.Contains(out, want) {
		t.Errorf("installer output lacks %q\nstdout:\n%s\nstderr:\n%s", want, r.stdout, r.stderr)
	}
}

// checkInstalled checks what a user would: wire runs and is version, its
// two other names are links to it that run it, and nothing else is there.
func (e *installEnv) checkInstalled(version string) {
	t := e.t
	t.Helper()
	out, err := exec.Command(filepath.Join(e.bin, "wire"), "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "wire "+version+" ") {
		t.Errorf("wire version: %q, %v; want wire %s", out, err, version)
	}
	out, err = exec.Command(filepath.Join(e.bin, "wire-server"), "--help").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "wire server - run the coordination server") {
		t.Errorf("wire-server --help: %v\n%s", err, out)
	}
	snap := installSnapshot(t, e.bin)
	if mode := strings.Fields(snap["wire"] + " ")[0]; mode != "-rwxr-xr-x" {
		t.Errorf("wire: %q, want a file with mode 0755", snap["wire"])
	}
	delete(snap, "wire")
	if diff := cmp.Diff(map[string]string{"wire-server": "-> wire", "wire-mcp": "-> wire"}, snap); diff != "" {
		t.Errorf("install dir besides wire (-want +got):\n%s", diff)
	}
}

// checkNothingInstalled checks the install dir was not even made.
func (e *installEnv) checkNothingInstalled() {
	e.t.Helper()
	if _, err := os.Lstat(e.bin); !errors.Is(err, fs.ErrNotExist) {
		e.t.Errorf("after a failed install, %s: %v (%v); want it not made", e.bin, err, installSnapshot(e.t, e.bin))
	}
}

// checkUnchanged checks the install dir's names, modes, contents and
// links are as they were.
func (e *installEnv) checkUnchanged(before map[string]string) {
	e.t.Helper()
	if diff := cmp.Diff(before, installSnapshot(e.t, e.bin)); diff != "" {
		e.t.Errorf("the install dir changed (-want +got):\n%s", diff)
	}
}

// installSnapshot describes a directory's entries: a file's mode and
// SHA-256, a link's target. It is nil if dir does not exist.
func installSnapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		t.Fatal(err)
	}
	snap := map[string]string{}
	for _, entry := range entries {
		path := filepath.Join(dir, entry.Name())
		info, err := os.Lstat(path)
		if err != nil {
			t.Fatal(err)
		}
		desc := info.Mode().String()
		if target, err := os.Readlink(path); err == nil {
			desc = "-> " + target
		} else if data, err := os.ReadFile(path); err == nil && info.Mode().IsRegular() {
			desc += " " + sha256Hex(data)
		}
		snap[entry.Name()] = desc
	}
	return snap
}

// installPathWithout is a PATH with every command this test's PATH has
// but the hidden ones: a directory of links.
func installPathWithout(t *testing.T, hide ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, p := range filepath.SplitList(os.Getenv("PATH")) {
		if !filepath.IsAbs(p) {
			continue
		}
		entries, _ := os.ReadDir(p)
		for _, entry := range entries {
			name := entry.Name()
			if slices.Contains(hide, name) || entry.IsDir() {
				continue
			}
			// The first of a name on PATH wins, as in a shell.
			if _, err := os.Lstat(filepath.Join(dir, name)); err == nil {
				continue
			}
			if err := os.Symlink(filepath.Join(p, name), filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}

func installWrite(t *testing.T, path, data string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
}
