// Command release builds wire's release into dist/: a static binary for
// each target packed as wire_<version>_<os>_<arch>.tar.gz, install.sh, and
// SHA256SUMS over them; and it writes the Homebrew formula that points at
// the archives.
//
//	go run ./release [-version V] [-out dist] [-targets linux/amd64,...]
//
// The same commit gives the same bytes, wherever it is checked out: builds
// are -trimpath with no VCS stamp or build ID, with the Go toolchain that
// go.mod names, and archives carry the commit's time, root ownership and
// fixed modes, in a fixed order.
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wire-mesh/wire/internal/progress"
)

// targets are the platforms wire ships for.
var targets = []string{"linux/amd64", "linux/arm64", "darwin/amd64", "darwin/arm64"}

// formulaPath is the Homebrew tap's formula, in this repository so that
// `brew tap wire-mesh/wire https://github.com/wire-mesh/wire` finds it.
const formulaPath = "Formula/wire.rb"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "release: %v\n", err)
		os.Exit(1)
	}
}

// options are run's flags, resolved.
type options struct {
	version string    // e.g. 1.2.0 or 1.2.0-3-gabcdef0: names and stamps everything
	tag     string    // the git tag the release page is under, e.g. v1.2.0
	epoch   time.Time // the time every archive entry carries
	out     string
	targets []string
	formula string // where to write the formula; "" writes none
	urlBase string // where the archives will be downloadable
	warning string // what to say about the version before building
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	flags := flag.NewFlagSet("release", flag.ContinueOnError)
	version := flags.String("version", "", "release version (default: git describe, without the leading v)")
	out := flags.String("out", "dist", "output directory; an earlier release there is replaced")
	targetList := flags.String("targets", strings.Join(targets, ","), "comma-separated GOOS/GOARCH list")
	formula := flags.String("formula", formulaPath, `the Homebrew formula to write ("" for none)`)
	urlBase := flags.String("url", "https://github.com/wire-mesh/wire/releases/download/{tag}", "where the archives will be published; {tag} is replaced")
	showSizes := flags.Bool("sizes", false, "build nothing into -out; print what each module adds to the linux/amd64 binary")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if flags.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", flags.Arg(0))
	}
	if _, err := os.Stat("go.mod"); err != nil {
		return errors.New("run the release from the repository's root: go run ./release")
	}
	o := options{out: *out, formula: *formula, targets: strings.Split(*targetList, ",")}
	for _, t := range o.targets {
		if !slices.Contains(targets, t) {
			return fmt.Errorf("unknown target %q (wire ships for %s)", t, strings.Join(targets, ", "))
		}
	}
	if err := o.resolveVersion(ctx, *version); err != nil {
		return err
	}
	if o.warning != "" {
		fmt.Fprintf(stdout, "warning: %s\n", o.warning)
	}
	o.urlBase = strings.ReplaceAll(*urlBase, "{tag}", o.tag)
	toolchain, goVersion, err := goToolchain(ctx)
	if err != nil {
		return err
	}
	if *showSizes {
		return sizes(ctx, toolchain, o.version, stdout)
	}

	// Build beside -out, and replace what is there only once everything
	// is built: a failed release leaves the previous one whole.
	if err := checkOut(o.out); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(filepath.Clean(o.out)), 0o755); err != nil {
		return err
	}
	stage, err := os.MkdirTemp(filepath.Dir(filepath.Clean(o.out)), ".release-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stage)
	docs, err := readFiles("LICENSE", "README.md")
	if err != nil {
		return err
	}
	sums := map[string]string{} // file name -> hex SHA-256
	line := progress.On(os.Stderr)
	for i, t := range o.targets {
		goos, goarch, _ := strings.Cut(t, "/")
		line.Show("release: building %s (%d of %d)…", t, i+1, len(o.targets))
		bin, err := build(ctx, toolchain, goos, goarch, o.version, true)
		line.Clear()
		if err != nil {
			return fmt.Errorf("building %s: %w", t, err)
		}
		name := archiveName(o.version, goos, goarch)
		files := append([]file{{name: "wire", mode: 0o755, data: bin}}, docs...)
		archive, err := tarGz(strings.TrimSuffix(name, ".tar.gz"), o.epoch, files)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(stage, name), archive, 0o644); err != nil {
			return err
		}
		sums[name] = sha256Hex(archive)
		fmt.Fprintf(stdout, "%-40s binary %5.1f MB, archive %5.1f MB\n", name, mb(len(bin)), mb(len(archive)))
	}
	installer, err := os.ReadFile("install.sh")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(stage, "install.sh"), installer, 0o755); err != nil {
		return err
	}
	sums["install.sh"] = sha256Hex(installer)
	if err := os.WriteFile(filepath.Join(stage, "SHA256SUMS"), sumsFile(sums), 0o644); err != nil {
		return err
	}
	if err := replaceOut(o.out, stage); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s/SHA256SUMS (wire %s, %s)\n", o.out, o.version, goVersion)
	if o.formula != "" {
		rb, err := formulaText(o.version, o.urlBase, sums)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(o.formula), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(o.formula, rb, 0o644); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s for %s\n", o.formula, o.urlBase)
	}
	return nil
}

// resolveVersion takes the version from the flag or from git, and the
// archives' timestamp from SOURCE_DATE_EPOCH or the commit.
func (o *options) resolveVersion(ctx context.Context, flagVersion string) error {
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		sec, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("SOURCE_DATE_EPOCH=%q: %w", s, err)
		}
		o.epoch = time.Unix(sec, 0)
	} else if ct, err := git(ctx, "log", "-1", "--format=%ct"); err == nil {
		sec, _ := strconv.ParseInt(ct, 10, 64)
		o.epoch = time.Unix(sec, 0)
	} else {
		return fmt.Errorf("not a git checkout (%v): give -version and SOURCE_DATE_EPOCH", err)
	}
	// The formula is rewritten by every release, so it does not make the
	// tree dirty; anything else uncommitted does.
	status, statusErr := git(ctx, "status", "--porcelain", "--", ".", ":(exclude)"+formulaPath)
	dirty := statusErr == nil && status != ""
	if flagVersion != "" {
		o.version = strings.TrimPrefix(flagVersion, "v")
		o.tag = "v" + o.version
		if dirty {
			o.warning = "uncommitted changes: this release is of no commit, and cannot be built again"
		}
		return validVersion(o.version)
	}
	if statusErr != nil {
		return statusErr
	}
	desc, err := git(ctx, "describe", "--tags", "--always", "--match", "v[0-9]*")
	if err != nil {
		return err
	}
	o.tag = desc
	o.version = strings.TrimPrefix(desc, "v")
	if dirty {
		o.version += "-dirty"
	}
	return validVersion(o.version)
}

// validVersion keeps versions to what file names, URLs and Ruby strings
// can carry without quoting.
func validVersion(v string) error {
	if !regexp.MustCompile(`^[0-9A-Za-z][0-9A-Za-z.+-]*$`).MatchString(v) {
		return fmt.Errorf("version %q: use letters, digits, '.', '+' and '-'", v)
	}
	return nil
}

func git(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "git", args...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("git %s: %s", strings.Join(args, " "), bytes.TrimSpace(ee.Stderr))
		}
		return "", fmt.Errorf("git %s: %w", args[0], err)
	}
	return strings.TrimSpace(string(out)), nil
}

// goToolchain is the toolchain go.mod asks for: another Go would build
// other bytes, so the release pins it (the go command fetches it from the
// module proxy if this machine has another). $GOTOOLCHAIN, if set, wins,
// as it does for the go command: GOTOOLCHAIN=local builds with this
// machine's Go. It returns the setting and the version it gives.
func goToolchain(ctx context.Context) (setting, version string, err error) {
	setting = os.Getenv("GOTOOLCHAIN")
	if setting == "" {
		out, err := exec.CommandContext(ctx, "go", "mod", "edit", "-print").Output()
		if err != nil {
			return "", "", fmt.Errorf("reading go.mod: %w", err)
		}
		var goLine string
		for line := range strings.Lines(string(out)) {
			switch f := strings.Fields(line); {
			case len(f) == 2 && f[0] == "go":
				goLine = "go" + f[1]
			case len(f) == 2 && f[0] == "toolchain":
				setting = f[1]
			}
		}
		if setting == "" {
			setting = goLine
		}
		if setting == "" {
			return "", "", errors.New("go.mod names no Go version")
		}
	}
	cmd := exec.CommandContext(ctx, "go", "env", "GOVERSION")
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN="+setting)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", "", fmt.Errorf("Go toolchain %s: %v: %s", setting, err, bytes.TrimSpace(out))
	}
	return setting, strings.TrimSpace(string(out)), nil
}

// build compiles wire for one target and returns the binary. Release
// binaries are stripped; the size report needs the symbols.
func build(ctx context.Context, toolchain, goos, goarch, version string, strip bool) ([]byte, error) {
	dir, err := os.MkdirTemp("", "wire-release-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "wire")
	ldflags := "-buildid= -X main.version=" + version
	if strip {
		ldflags = "-s -w " + ldflags
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false",
		"-ldflags", ldflags, "-o", bin, ".")
	// Everything that changes the output is set here, not inherited.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+goarch,
		"GOAMD64=v1", "GOARM64=v8.0", "GOFLAGS=-mod=readonly", "GOEXPERIMENT=", "GOTOOLCHAIN="+toolchain)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%v: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	return os.ReadFile(bin)
}

// checkOut refuses an output directory that holds anything but an
// earlier release, which the release will replace.
func checkOut(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for _, e := range entries {
		if !isArtifact(e.Name()) {
			return fmt.Errorf("%s holds %s, which is not from a release; remove it or give another -out", dir, e.Name())
		}
	}
	return nil
}

// replaceOut puts the staged release in dir, in place of an earlier one.
func replaceOut(dir, stage string) error {
	if err := checkOut(dir); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.Chmod(stage, 0o755); err != nil { // MkdirTemp made it 0700
		return err
	}
	return os.Rename(stage, dir)
}

func isArtifact(name string) bool {
	return name == "SHA256SUMS" || name == "install.sh" ||
		strings.HasPrefix(name, "wire_") && strings.HasSuffix(name, ".tar.gz")
}

func archiveName(version, goos, goarch string) string {
	return fmt.Sprintf("wire_%s_%s_%s.tar.gz", version, goos, goarch)
}

type file struct {
	name string
	mode int64
	data []byte
}

func readFiles(names ...string) ([]file, error) {
	var files []file
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			return nil, err
		}
		files = append(files, file{name: n, mode: 0o644, data: b})
	}
	return files, nil
}

// tarGz packs files under dir/ with nothing in the headers that varies
// between machines: fixed time, owner root, no user or group names.
func tarGz(dir string, mtime time.Time, files []file) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(zw)
	hdr := func(name string, typ byte, mode, size int64) *tar.Header {
		return &tar.Header{Typeflag: typ, Name: name, Mode: mode, Size: size, ModTime: mtime, Format: tar.FormatUSTAR}
	}
	if err := tw.WriteHeader(hdr(dir+"/", tar.TypeDir, 0o755, 0)); err != nil {
		return nil, err
	}
	files = slices.Clone(files)
	slices.SortFunc(files, func(a, b file) int { return strings.Compare(a.name, b.name) })
	for _, f := range files {
		if err := tw.WriteHeader(hdr(dir+"/"+f.name, tar.TypeReg, f.mode, int64(len(f.data)))); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// sumsFile is SHA256SUMS in the format sha256sum -c and shasum -a 256 -c
// read: "<hex>  <name>", sorted by name.
func sumsFile(sums map[string]string) []byte {
	var b bytes.Buffer
	for _, name := range slices.Sorted(maps.Keys(sums)) {
		fmt.Fprintf(&b, "%s  %s\n", sums[name], name)
	}
	return b.Bytes()
}

func mb(n int) float64 { return float64(n) / 1e6 }
