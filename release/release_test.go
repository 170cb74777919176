package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"debug/macho"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// offline is the environment for building releases in tests: this
// machine's Go rather than the toolchain go.mod names (which the go
// command would download), and no module proxy. Two builds compared with
// each other still tell whether the release is reproducible. TestMain
// downloads the modules first.
var offline = []string{"GOTOOLCHAIN=local", "GOPROXY=off"}

// needTool fails under CI, where .ci/run installs every tool the tests
// use, and skips elsewhere.
func needTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is missing: .ci/run must install it", name)
	}
	t.Skipf("%s not installed", name)
	return ""
}

func TestTarGz(t *testing.T) {
	epoch := time.Unix(1764000000, 0)
	files := []file{{"wire", 0o755, []byte("binary")}, {"LICENSE", 0o644, []byte("MIT")}}
	a, err := tarGz("wire_1.0.0_linux_amd64", epoch, files)
	if err != nil {
		t.Fatal(err)
	}
	slices.Reverse(files)
	b, _ := tarGz("wire_1.0.0_linux_amd64", epoch, files)
	if !bytes.Equal(a, b) {
		t.Fatal("the same files in another order gave other bytes")
	}

	zr, err := gzip.NewReader(bytes.NewReader(a))
	if err != nil {
		t.Fatal(err)
	}
	if !zr.ModTime.IsZero() || zr.Name != "" {
		t.Errorf("gzip header carries time %v, name %q", zr.ModTime, zr.Name)
	}
	tr := tar.NewReader(zr)
	var got []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%s %o", h.Name, h.Mode))
		if !h.ModTime.Equal(epoch) || h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: time %v, owner %d/%d %q/%q", h.Name, h.ModTime, h.Uid, h.Gid, h.Uname, h.Gname)
		}
	}
	want := []string{"wire_1.0.0_linux_amd64/ 755", "wire_1.0.0_linux_amd64/LICENSE 644", "wire_1.0.0_linux_amd64/wire 755"}
	if !slices.Equal(got, want) {
		t.Errorf("entries %q, want %q", got, want)
	}
}

func TestSumsFile(t *testing.T) {
	got := string(sumsFile(map[string]string{"b.tar.gz": "22", "a.tar.gz": "11"}))
	if want := "11  a.tar.gz\n22  b.tar.gz\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestRunRefuses(t *testing.T) {
	// Tests run in release/, where the release refuses to run.
	if err := run(t.Context(), []string{"-out", t.TempDir()}, io.Discard); err == nil || !strings.Contains(err.Error(), "repository's root") {
		t.Errorf("run outside the repository's root: %v", err)
	}
	t.Chdir("..")
	for _, args := range [][]string{
		{"-targets", "linux/mips"},
		{"-version", "1.0 beta"},
		{"-version", `1.0"; system("x")`},
		{"extra"},
	} {
		if err := run(t.Context(), append(args, "-out", t.TempDir()), io.Discard); err == nil {
			t.Errorf("run %q succeeded", args)
		} else {
			t.Logf("run %q: %v", args, err)
		}
	}

	// -out is emptied of an earlier release, but nothing else is removed.
	out := t.TempDir()
	mine := filepath.Join(out, "notes.txt")
	os.WriteFile(mine, []byte("keep"), 0o644)
	os.WriteFile(filepath.Join(out, "SHA256SUMS"), nil, 0o644)
	err := run(t.Context(), []string{"-version", "1.0.0", "-out", out}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "notes.txt") {
		t.Errorf("release into a directory with other files: %v", err)
	}
	if _, err := os.Stat(mine); err != nil {
		t.Errorf("the release removed a file it did not make: %v", err)
	}
}

// brewPlatforms are Homebrew's names for wire's targets.
var brewPlatforms = map[string][2]string{
	"darwin/arm64": {"macos", "arm"}, "darwin/amd64": {"macos", "intel"},
	"linux/arm64": {"linux", "arm"}, "linux/amd64": {"linux", "intel"},
}

// brew loads the formula in testdata/brew.rb's stand-in for Homebrew and
// returns the url, sha256 and version it gives a platform; with src and
// prefix it also runs the formula's install and test blocks.
func brew(t *testing.T, formula, target string, extra ...string) (url, sum, version string) {
	t.Helper()
	ruby := needTool(t, "ruby")
	p := brewPlatforms[target]
	args := append([]string{"testdata/brew.rb", formula, p[0], p[1]}, extra...)
	out, err := exec.Command(ruby, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("formula on %s: %v\n%s", target, err, out)
	}
	f := strings.Fields(string(out))
	if len(f) != 3 {
		t.Fatalf("formula on %s: %q", target, out)
	}
	return f[0], f[1], f[2]
}

func TestFormulaSomeTargets(t *testing.T) {
	sums := map[string]string{archiveName("1.0.0", "linux", "amd64"): strings.Repeat("ab", 32)}
	rb, err := formulaText("1.0.0", "https://example.invalid/v1.0.0", sums)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "wire.rb")
	os.WriteFile(path, rb, 0o644)
	url, sum, version := brew(t, path, "linux/amd64")
	if url != "https://example.invalid/v1.0.0/wire_1.0.0_linux_amd64.tar.gz" || sum != strings.Repeat("ab", 32) || version != "1.0.0" {
		t.Errorf("linux/amd64: %s %s %s", url, sum, version)
	}
	// A platform with no archive has no url, and brew refuses it.
	p := brewPlatforms["darwin/arm64"]
	if out, err := exec.Command("ruby", "testdata/brew.rb", path, p[0], p[1]).CombinedOutput(); err == nil {
		t.Errorf("the formula offers darwin/arm64 without an archive: %s", out)
	}
	if _, err := formulaText("1.0.0", "https://example.invalid", nil); err == nil {
		t.Error("a formula for no archives")
	}
}

// TestRelease builds the whole release twice from the same commit in two
// checkouts at different paths and checks the bytes are the same, then
// checks what is inside: four static binaries for the right machines,
// SHA256SUMS, and a formula whose URLs and sums are those of the archives.
func TestRelease(t *testing.T) {
	if testing.Short() {
		t.Skip("builds four release binaries twice")
	}
	// Every tool first: the builds take a minute, and a missing tool
	// found after them wastes it.
	for _, tool := range []string{"git", "ruby", "tar"} {
		needTool(t, tool)
	}
	a := checkout(t, filepath.Join(t.TempDir(), "a"))
	b := checkout(t, filepath.Join(t.TempDir(), "somewhere", "else", "wire"))
	goEnv := strings.Fields(output(t, a, "go", "env", "GOROOT", "GOMODCACHE"))
	release(t, a)
	release(t, b)

	sums := readSums(t, filepath.Join(a, "dist", "SHA256SUMS"))
	var version string
	for name := range sums {
		if v, ok := strings.CutPrefix(name, "wire_"); ok {
			version = v[:strings.Index(v, "_")]
		}
	}
	want := []string{"SHA256SUMS", "install.sh"}
	for _, target := range targets {
		goos, goarch, _ := strings.Cut(target, "/")
		want = append(want, archiveName(version, goos, goarch))
	}
	slices.Sort(want)
	for _, name := range want {
		da, err := os.ReadFile(filepath.Join(a, "dist", name))
		if err != nil {
			t.Fatal(err)
		}
		db, err := os.ReadFile(filepath.Join(b, "dist", name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(da, db) {
			t.Errorf("%s differs between the two checkouts", name)
		}
		if sum, listed := sums[name]; name != "SHA256SUMS" && (!listed || sum != sha256Hex(da)) {
			t.Errorf("SHA256SUMS says %q for %s, whose sum is %s", sum, name, sha256Hex(da))
		}
	}
	entries, _ := os.ReadDir(filepath.Join(a, "dist"))
	var have []string
	for _, e := range entries {
		have = append(have, e.Name())
	}
	if !slices.Equal(have, want) {
		t.Errorf("dist holds %q, want %q", have, want)
	}
	fa, _ := os.ReadFile(filepath.Join(a, formulaPath))
	fb, _ := os.ReadFile(filepath.Join(b, formulaPath))
	if !bytes.Equal(fa, fb) {
		t.Error("the formulas differ between the two checkouts")
	}

	for _, target := range targets {
		goos, goarch, _ := strings.Cut(target, "/")
		name := archiveName(version, goos, goarch)
		bin := unpack(t, filepath.Join(a, "dist", name), t.TempDir())
		checkBinary(t, bin, goos, goarch, append(goEnv, a)...)

		url, sum, fv := brew(t, filepath.Join(a, formulaPath), target)
		tag := strings.TrimSpace(gitOut(t, a, "describe", "--tags", "--always"))
		if wantURL := "https://github.com/wire-mesh/wire/releases/download/" + tag + "/" + name; url != wantURL {
			t.Errorf("formula on %s downloads %s, want %s", target, url, wantURL)
		}
		if sum != sums[name] || fv != version {
			t.Errorf("formula on %s: sha256 %s version %s; SHA256SUMS has %s, version %s", target, sum, fv, sums[name], version)
		}
		if goos != runtime.GOOS || goarch != runtime.GOARCH {
			continue
		}
		out, err := exec.Command(bin, "version").Output()
		if err != nil || !strings.HasPrefix(string(out), "wire "+version+" ") {
			t.Errorf("wire version: %q, %v; want version %s", out, err, version)
		}
		// Install it the way brew would and run the formula's test block.
		prefix := t.TempDir()
		brew(t, filepath.Join(a, formulaPath), target, filepath.Dir(bin), prefix)
		for _, link := range []string{"wire-server", "wire-mcp"} {
			if dest, err := os.Readlink(filepath.Join(prefix, "bin", link)); err != nil || dest != "wire" {
				t.Errorf("%s -> %q, %v; want a link to wire", link, dest, err)
			}
		}
	}

	// A second release from the same commit: the formula the first one
	// wrote does not count as a change, so the bytes are the same.
	out := filepath.Join(t.TempDir(), "again")
	host := runtime.GOOS + "/" + runtime.GOARCH
	if slices.Contains(targets, host) {
		goRun(t, a, "-out", out, "-targets", host, "-formula", "")
		name := archiveName(version, runtime.GOOS, runtime.GOARCH)
		if again := readSums(t, filepath.Join(out, "SHA256SUMS")); again[name] != sums[name] {
			t.Errorf("a second release gave %s another sum", name)
		}
	}
}

// checkout makes a git checkout of the working tree's files at dir, with
// one commit whose author, committer and dates are fixed, so that two
// checkouts have the same commit, as two clones would.
func checkout(t *testing.T, dir string) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	list := gitOut(t, root, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	for name := range strings.SplitSeq(strings.TrimRight(list, "\x00"), "\x00") {
		src := filepath.Join(root, name)
		info, err := os.Lstat(src)
		if err != nil || !info.Mode().IsRegular() {
			continue // deleted in the working tree, or not a file
		}
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(dst), 0o755)
		if err := os.WriteFile(dst, data, info.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
	gitOut(t, dir, "init", "-q")
	gitOut(t, dir, "add", "-A")
	gitOut(t, dir, "commit", "-q", "--no-gpg-sign", "-m", "release test")
	return dir
}

func gitOut(t *testing.T, dir string, args ...string) string {
	t.Helper()
	return output(t, dir, "git", args...)
}

// output runs a command in dir, with git's identity and dates fixed.
func output(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"GIT_AUTHOR_NAME=wire", "GIT_AUTHOR_EMAIL=wire@example.invalid", "GIT_AUTHOR_DATE=@1764000000 +0000",
		"GIT_COMMITTER_NAME=wire", "GIT_COMMITTER_EMAIL=wire@example.invalid", "GIT_COMMITTER_DATE=@1764000000 +0000",
		"GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// release runs the release as its README says, in dir.
func release(t *testing.T, dir string) {
	t.Helper()
	start := time.Now()
	out := goRun(t, dir)
	t.Logf("release in %s (%.0f s):\n%s", dir, time.Since(start).Seconds(), out)
}

func goRun(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("go", append([]string{"run", "./release"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), offline...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go run ./release %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func readSums(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sums := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok || len(sum) != 64 {
			t.Fatalf("SHA256SUMS line %q", sc.Text())
		}
		sums[name] = sum
	}
	return sums
}

// unpack extracts an archive into dir and returns the path of its wire.
func unpack(t *testing.T, archive, dir string) string {
	t.Helper()
	tarCmd := needTool(t, "tar")
	if out, err := exec.Command(tarCmd, "-xzf", archive, "-C", dir).CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	top := strings.TrimSuffix(filepath.Base(archive), ".tar.gz")
	for _, name := range []string{"LICENSE", "README.md"} {
		if _, err := os.Stat(filepath.Join(dir, top, name)); err != nil {
			t.Errorf("%s: %v", archive, err)
		}
	}
	return filepath.Join(dir, top, "wire")
}

// checkBinary checks a binary is for goos/goarch, and on Linux that it is
// static: no interpreter, no shared libraries.
func checkBinary(t *testing.T, path, goos, goarch string, buildDirs ...string) {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil || info.Mode().Perm() != 0o755 {
		t.Fatalf("%s: %v, mode %v", path, err, info.Mode())
	}
	switch goos {
	case "linux":
		f, err := elf.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		machine := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[goarch]
		if f.Machine != machine {
			t.Errorf("%s is for %v", path, f.Machine)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
				t.Errorf("%s is dynamically linked", path)
			}
		}
	case "darwin":
		f, err := macho.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		cpu := map[string]macho.Cpu{"amd64": macho.CpuAmd64, "arm64": macho.CpuArm64}[goarch]
		if f.Cpu != cpu {
			t.Errorf("%s is for %v", path, f.Cpu)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range buildDirs {
		if bytes.Contains(data, []byte(dir)) {
			t.Errorf("%s contains the build path %s", path, dir)
		}
	}
}

// The tap's formula, as committed, offers every platform the release of
// its version, at that release's URL.
func TestCommittedFormula(t *testing.T) {
	path := filepath.Join("..", formulaPath)
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
	var version string
	for _, target := range targets {
		url, sum, v := brew(t, path, target)
		if version == "" {
			version = v
		}
		goos, goarch, _ := strings.Cut(target, "/")
		want := "https://github.com/wire-mesh/wire/releases/download/v" + version + "/" + archiveName(version, goos, goarch)
		if url != want || v != version || len(sum) != 64 || strings.Trim(sum, "0123456789abcdef") != "" {
			t.Errorf("%s: url %s sha256 %s version %s; want url %s", target, url, sum, v, want)
		}
	}
}

// A release that fails half-way leaves the earlier one as it was, and no
// staging directory behind.
func TestFailedReleaseKeepsEarlier(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	// A go that cannot build for arm64.
	fake := t.TempDir()
	script := "#!/bin/sh\nif [ \"$1\" = build ] && [ \"$GOARCH\" = arm64 ]; then echo 'no arm64 today' >&2; exit 1; fi\nexec '" + goBin + "' \"$@\"\n"
	if err := os.WriteFile(filepath.Join(fake, "go"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", fake+string(os.PathListSeparator)+os.Getenv("PATH"))
	for _, kv := range offline {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	parent := t.TempDir()
	out := filepath.Join(parent, "dist")
	os.Mkdir(out, 0o755)
	earlier := map[string]string{"SHA256SUMS": "sums", "wire_1.0.0_linux_amd64.tar.gz": "archive"}
	for name, data := range earlier {
		os.WriteFile(filepath.Join(out, name), []byte(data), 0o644)
	}
	t.Chdir("..")
	err = run(t.Context(), []string{"-version", "1.0.1", "-out", out, "-targets", "linux/amd64,linux/arm64", "-formula", ""}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "no arm64 today") {
		t.Fatalf("release with a failing build: %v", err)
	}
	entries, _ := os.ReadDir(out)
	if len(entries) != len(earlier) {
		t.Errorf("dist holds %d files after a failed release, want the earlier %d", len(entries), len(earlier))
	}
	for name, data := range earlier {
		if b, _ := os.ReadFile(filepath.Join(out, name)); string(b) != data {
			t.Errorf("%s changed: %q", name, b)
		}
	}
	if left, _ := os.ReadDir(parent); len(left) != 1 {
		t.Errorf("the failed release left %d entries beside dist", len(left)-1)
	}
}
