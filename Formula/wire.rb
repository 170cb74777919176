# Written by the release (go run ./release) for wire 0.1.0; do not edit by hand.
class Wire < Formula
  desc "Self-hosted WireGuard mesh VPN: coordination server, node daemon, MCP server"
  homepage "https://github.com/wire-mesh/wire"
  version "0.1.0"
  license "MIT"

  on_macos do
    on_arm do
      url "https://github.com/wire-mesh/wire/releases/download/v0.1.0/wire_0.1.0_darwin_arm64.tar.gz"
      sha256 "a840eb2bf07cd740139ff28050eea49b025be36f5d76445c4f98ddee55b940ac"
    end
    on_intel do
      url "https://github.com/wire-mesh/wire/releases/download/v0.1.0/wire_0.1.0_darwin_amd64.tar.gz"
      sha256 "4996a4734c2c905322e562c5bd28f79f38a6daecbbe1beeecb5444b39e0f205b"
    end
  end

  on_linux do
    on_arm do
      url "https://github.com/wire-mesh/wire/releases/download/v0.1.0/wire_0.1.0_linux_arm64.tar.gz"
      sha256 "15ec2e857e8f56fe5c99a23304d2dfd40cca177865291d279c5b78a28a1dcba7"
    end
    on_intel do
      url "https://github.com/wire-mesh/wire/releases/download/v0.1.0/wire_0.1.0_linux_amd64.tar.gz"
      sha256 "2ecf59315659f306b1191323aace076e6a528ec002c7fb690e6baabd4f97a7f1"
    end
  end

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
