#!/bin/sh
# Installs wire, the self-hosted WireGuard mesh VPN, from its GitHub release:
#
#	curl -fsSL https://github.com/wire-mesh/wire/releases/latest/download/install.sh | sh
#
# It takes the archive for this OS and CPU from the release's SHA256SUMS,
# checks its SHA-256, and puts wire and its two other names, wire-server and
# wire-mcp, in one directory, replacing an earlier install atomically.
#
#	WIRE_VERSION=1.2.0     install that release instead of the latest
#	WIRE_INSTALL_DIR=DIR   install there (default: /usr/local/bin as root, else ~/.local/bin)
#	WIRE_INSTALL_BASE=URL  download the release's files from URL (a mirror, a file:// copy)
#
# Everything is in functions and main runs on the last line, so a download
# cut short runs nothing.

set -u

repo=https://github.com/wire-mesh/wire
work=  # the temp dir the release is downloaded and unpacked in
stage= # the prefix of the temp names in the install dir

say() { printf '%s\n' "$*" >&2; }
die() { say "wire install: $*"; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

cleanup() {
	if [ -n "$work" ]; then rm -rf "$work"; fi
	if [ -n "$stage" ]; then rm -f "$stage.wire" "$stage.wire-server" "$stage.wire-mcp"; fi
}

need_tools() {
	have curl || have wget || die "needs curl or wget to download wire"
	have sha256sum || have shasum || have openssl || die "needs sha256sum, shasum or openssl to check the download"
	have tar || die "needs tar to unpack the download"
}

# platform sets os and arch to the release's names for this machine.
platform() {
	kernel=$(uname -s) machine=$(uname -m)
	case $kernel in
	Linux) os=linux ;;
	Darwin) os=darwin ;;
	*) os= ;;
	esac
	case $machine in
	x86_64 | amd64) arch=amd64 ;;
	aarch64 | arm64) arch=arm64 ;;
	*) arch= ;;
	esac
	# An x86_64 shell under Rosetta on Apple silicon: take the native build.
	if [ "$os/$arch" = darwin/amd64 ] && [ "$(sysctl -n sysctl.proc_translated 2>/dev/null)" = 1 ]; then
		arch=arm64
	fi
	if [ -z "$os" ] || [ -z "$arch" ]; then
		die "wire has no build for $kernel/$machine (only Linux and macOS on x86_64 and arm64); build from source: $repo#building"
	fi
}

base_url() {
	if [ -n "${WIRE_INSTALL_BASE:-}" ]; then
		base=${WIRE_INSTALL_BASE%/}
	elif [ -n "${WIRE_VERSION:-}" ]; then
		base=$repo/releases/download/v${WIRE_VERSION#v}
	else
		base=$repo/releases/latest/download
	fi
	# SHA256SUMS comes from the same place as the archive, so only TLS
	# proves either is wire's.
	case $base in
	https://* | file://* | http://127.* | http://localhost | http://localhost[:/]* | http://\[::1\]*) ;;
	*) say "wire install: warning: $base is not https: whoever is on the way can replace what this installs" ;;
	esac
}

# fetch downloads URL $1 to file $2. curl refuses redirects away from https.
fetch() {
	if have curl; then
		case $1 in
		https://*) curl -fsSL --proto '=https' -o "$2" "$1" ;;
		*) curl -fsSL -o "$2" "$1" ;;
		esac
	else
		wget -q -O "$2" "$1"
	fi || die "cannot download $1"
}

sha256() {
	if have sha256sum; then
		sha256sum "$1" | cut -d ' ' -f 1
	elif have shasum; then
		shasum -a 256 "$1" | cut -d ' ' -f 1
	else
		openssl dgst -sha256 "$1" | sed 's/^.*= *//'
	fi
}

# pick_archive finds this platform's archive and its sum in SHA256SUMS;
# the name gives the version, which a .../latest/download URL does not.
pick_archive() {
	lines=$(grep -E "^[0-9a-f]{64} [ *]wire_[0-9A-Za-z.+-]+_${os}_${arch}\.tar\.gz\$" "$work/SHA256SUMS")
	case $(printf '%s\n' "$lines" | grep -c .) in
	0) die "$base/SHA256SUMS lists no wire_*_${os}_${arch}.tar.gz: that release has no build for $os/$arch" ;;
	1) ;;
	*) die "$base/SHA256SUMS lists several archives for $os/$arch" ;;
	esac
	sum=${lines%% *}
	archive=${lines##* }
	archive=${archive#\*}
	version=${archive#wire_}
	version=${version%_"$os"_"$arch".tar.gz}
	if [ -n "${WIRE_VERSION:-}" ] && [ "$version" != "${WIRE_VERSION#v}" ]; then
		die "WIRE_VERSION is $WIRE_VERSION but $base has wire $version"
	fi
}

# unpack checks the archive against its sum and unpacks it; new is the binary.
unpack() {
	got=$(sha256 "$work/$archive")
	if [ "$got" != "$sum" ]; then
		die "checksum mismatch for $archive: SHA256SUMS says $sum, the download is $got; nothing was installed"
	fi
	tar -xzf "$work/$archive" -C "$work" || die "cannot unpack $archive"
	new=$work/${archive%.tar.gz}/wire
	[ -f "$new" ] || die "$archive holds no ${archive%.tar.gz}/wire"
}

# pick_dir chooses where to install, and notes the wire already there. The
# directory is made only once the download has checked out.
pick_dir() {
	if [ -n "${WIRE_INSTALL_DIR:-}" ]; then
		dir=${WIRE_INSTALL_DIR%/}
	elif [ "$(id -u)" = 0 ]; then
		dir=/usr/local/bin
	else
		[ -n "${HOME:-}" ] || die "HOME is not set: set WIRE_INSTALL_DIR"
		dir=$HOME/.local/bin
		say "not root: installing into $dir (for every user: ... | sudo sh)"
	fi
	if [ -e "$dir" ] && [ ! -w "$dir" ]; then
		die "cannot write to $dir: run the installer with sudo, or set WIRE_INSTALL_DIR"
	fi
	# Homebrew links its wire into bin; replacing the link would confuse brew.
	case $(readlink "$dir/wire" 2>/dev/null) in
	*/Cellar/*) die "$dir/wire is Homebrew's: upgrade it with brew upgrade wire" ;;
	esac
	for name in wire wire-server wire-mcp; do
		# mv would move the new file into a directory rather than replace it.
		[ ! -d "$dir/$name" ] || die "$dir/$name is a directory; move it away and run the installer again"
	done
	old=
	if [ -x "$dir/wire" ]; then
		old=$("$dir/wire" version </dev/null 2>/dev/null | sed -n '1s/^wire \([^ ]*\).*/\1/p')
		[ -n "$old" ] || old=unknown
	fi
}

# place puts wire, wire-server and wire-mcp in dir. Each is made under a
# temp name there and renamed over the old one: a rename is atomic, so no
# one sees a half-written wire, and a running daemon keeps its old file.
place() {
	mkdir -p "$dir" || die "cannot create $dir"
	stage=$dir/.wire-install.$$
	cp "$new" "$stage.wire" || die "cannot write to $dir"
	chmod 755 "$stage.wire" || die "cannot make $stage.wire executable"
	# Run the copy that will be installed: it is on this machine's disk, not
	# in a temp dir that may be mounted noexec.
	ran=$("$stage.wire" version </dev/null 2>&1) || die "the downloaded wire does not run on this machine: $ran"
	case $ran in
	"wire $version "*) ;;
	*) die "the downloaded wire says \"$ran\", not version $version" ;;
	esac
	for name in wire-server wire-mcp; do
		ln -s wire "$stage.$name" || die "cannot make a link in $dir"
	done
	for name in wire wire-server wire-mcp; do
		mv -f "$stage.$name" "$dir/$name" || die "cannot replace $dir/$name"
	done
}

report() {
	case $old in
	"") what="installed wire $version" ;;
	"$version") what="reinstalled wire $version" ;;
	unknown) what="replaced $dir/wire with wire $version" ;;
	*) what="upgraded wire $old -> $version" ;;
	esac
	case ":$PATH:" in
	*":$dir:"*) ;;
	*) say "$dir is not on your PATH; add this line to your shell's profile: export PATH=\"$dir:\$PATH\"" ;;
	esac
	wire=$dir/wire # sudo's PATH has only the system's directories
	case $dir in /usr/local/bin | /usr/bin | /bin) wire=wire ;; esac
	sudo="sudo " # unless root is who ran this, not just how (curl ... | sudo sh)
	if [ "$(id -u)" = 0 ] && [ -z "${SUDO_USER:-}" ]; then sudo=; fi
	cat <<EOF
$what in $dir (with wire-server and wire-mcp)
Next, on the always-on host that coordinates the mesh:
  ${sudo}$wire server install-service    (or in the foreground: ${sudo}$wire server)
and on each machine that joins it, with a key from \`wire server key create\`:
  ${sudo}$wire up --server https://SERVER:8787 --join KEY
EOF
}

main() {
	trap cleanup EXIT
	trap 'exit 129' HUP
	trap 'exit 130' INT
	trap 'exit 143' TERM
	need_tools
	platform
	base_url
	pick_dir
	work=$(mktemp -d "${TMPDIR:-/tmp}/wire-install.XXXXXX") || die "cannot make a temp dir"
	fetch "$base/SHA256SUMS" "$work/SHA256SUMS"
	pick_archive
	say "downloading wire $version for $os/$arch from $base"
	fetch "$base/$archive" "$work/$archive"
	unpack
	place
	report
}

main "$@"
