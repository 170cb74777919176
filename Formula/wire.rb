# Written by the release (go run ./release) for wire 0.1.0; do not edit by hand.
class Wire < Formula
  desc "Self-hosted WireGuard mesh VPN: coordination server, node daemon, MCP server"
  homepage "https://github.com/wire-mesh/wire"
  version "0.1.0"
  license "MIT"

  on_macos do
    on_arm do
      url "https://github.com/wire-mesh/wire/releases/download/v0.1.0/wire_0.1.0_darwin_arm64.tar.gz"
      sha256 "b29afb10c5baac3185c13688796a218b14cf0827f47bdc6fb83bfd6aa3f0d94e"
    end
    on_intel do
      url "https://github.com/wire-mesh/wire/releases/download/v0.1.0/wire_0.1.0_darwin_amd64.tar.gz"
      sha256 "c6fb42558d8a29f306fe6b41c04b709ad0051d1b5ed4e6e10130cb9c21eaca40"
    end
  end

  on_linux do
    on_arm do
      url "https://github.com/wire-mesh/wire/releases/download/v0.1.0/wire_0.1.0_linux_arm64.tar.gz"
      sha256 "46b2189f9021880cbf8cc4feaa66f8fd73f87b71acda55dd8a60c26335e7c69a"
    end
    on_intel do
      url "https://github.com/wire-mesh/wire/releases/download/v0.1.0/wire_0.1.0_linux_amd64.tar.gz"
      sha256 "888da1871a9a644f9abcb4e32bd86486f90db749b1d253a319453f42419bbb21"
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
