# Written by the release (go run ./release) for wire 0.1.0; do not edit by hand.
class Wire < Formula
  desc "Self-hosted WireGuard mesh VPN: coordination server, node daemon, MCP server"
  homepage "https://github.com/wire-mesh/wire"
  version "0.1.0"
  license "MIT"

  on_macos do
    on_arm do
      url "https://github.com/wire-mesh/wire/releases/download/v0.1.0/wire_0.1.0_darwin_arm64.tar.gz"
      sha256 "fe60cc9e0f1aae908f531ff5d33b1ff8ae14f0a5df28760cbdeb7afbfe7f752d"
    end
    on_intel do
      url "https://github.com/wire-mesh/wire/releases/download/v0.1.0/wire_0.1.0_darwin_amd64.tar.gz"
      sha256 "25615ebb2f1ccc0879efd28289178726ac44e9525662ed1b8c4c52af28ec50a9"
    end
  end

  on_linux do
    on_arm do
      url "https://github.com/wire-mesh/wire/releases/download/v0.1.0/wire_0.1.0_linux_arm64.tar.gz"
      sha256 "f439c10c9dff04b3b69bf4671cd05a38633a5a0d4049887090c08a2bccc903b2"
    end
    on_intel do
      url "https://github.com/wire-mesh/wire/releases/download/v0.1.0/wire_0.1.0_linux_amd64.tar.gz"
      sha256 "3eb461f1046c706781f60c01c3ed474fa5f20709e59f4db243c2245bc94cf8fa"
    end
  end

  def install
    bin.install "wire"
    bin.install_symlink "wire" => "wire-server"
    bin.install_symlink "wire" => "wire-mcp"
  end

  def caveats
    <<~EOS
      Join a mesh (the node daemon needs root for its tunnel device):
        sudo wire up --server https://SERVER:8787 --join JOIN_KEY
      Or run the coordination server as a service:
        sudo wire server install-service
    EOS
  end

  test do
    assert_match version.to_s, shell_output("#{bin}/wire version")
    assert_match "wire server", shell_output("#{bin}/wire-server --help")
  end
end
