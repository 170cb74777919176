package main

import (
	"bytes"
	"fmt"
	"text/template"
)

// The formula installs the archive for the machine's OS and CPU, and the
// two names wire answers to besides its own.
var formulaTemplate = template.Must(template.New("wire.rb").Parse(`# Written by the release (go run ./release) for wire {{.Version}}; do not edit by hand.
class Wire < Formula
  desc "Self-hosted WireGuard mesh VPN: coordination server, node daemon, MCP server"
  homepage "https://github.com/wire-mesh/wire"
  version "{{.Version}}"
  license "MIT"
{{range .OSes}}
  on_{{.Name}} do
{{- range .Archs}}
    on_{{.Name}} do
      url "{{.URL}}"
      sha256 "{{.SHA256}}"
    end
{{- end}}
  end
{{end}}
  def install
    bin.install "wire"
    bin.install_symlink "wire" => "wire-server"
    bin.install_symlink "wire" => "wire-mcp"
  end

  # brew services start wire: the coordination server, as this user, with
  # its state in Homebrew's var. (The node needs root: sudo wire up.)
  service do
    run [opt_bin/"wire", "server", "--state-dir", var/"wire"]
    keep_alive true
    log_path var/"log/wire-server.log"
    error_log_path var/"log/wire-server.log"
  end

  def caveats
    <<~EOS
      Join a mesh (the node daemon needs root for its tunnel device):
        sudo wire up --server https://SERVER:8787 --join JOIN_KEY
      Run the coordination server: brew services start wire
      (or as root, at boot: sudo wire server install-service)
    EOS
  end

  test do
    assert_match version.to_s, shell_output("#{bin}/wire version")
    assert_match "wire server", shell_output("#{bin}/wire-server --help")
  end
end
`))

type formulaArch struct{ Name, URL, SHA256 string }

type formulaOS struct {
	Name  string // Homebrew's on_macos / on_linux
	Archs []formulaArch
}

// formulaText is the Homebrew formula for the archives in sums, to be
// downloaded from urlBase.
func formulaText(version, urlBase string, sums map[string]string) ([]byte, error) {
	var oses []formulaOS
	for _, goos := range []struct{ goos, brew string }{{"darwin", "macos"}, {"linux", "linux"}} {
		o := formulaOS{Name: goos.brew}
		for _, arch := range []struct{ goarch, brew string }{{"arm64", "arm"}, {"amd64", "intel"}} {
			name := archiveName(version, goos.goos, arch.goarch)
			if sum, ok := sums[name]; ok {
				o.Archs = append(o.Archs, formulaArch{Name: arch.brew, URL: urlBase + "/" + name, SHA256: sum})
			}
		}
		if len(o.Archs) > 0 {
			oses = append(oses, o)
		}
	}
	if len(oses) == 0 {
		return nil, fmt.Errorf("no archives to write a formula for")
	}
	var b bytes.Buffer
	err := formulaTemplate.Execute(&b, struct {
		Version string
		OSes    []formulaOS
	}{version, oses})
	return b.Bytes(), err
}
