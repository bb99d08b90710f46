#!/usr/bin/env bash
# Builds the Debian package: the binary, the systemd unit, /etc/herald/herald.env (a conffile),
# the docs; with the service user made by postinst (packaging/). Prints the .deb's path.
#   bash scripts/package-deb.sh                  # a release build, then the package
#   bash scripts/package-deb.sh target/debug/herald   # package a binary already built
set -euo pipefail
cd "$(dirname "$0")/.."
binary="${1:-}"
if [ -z "$binary" ]; then
  cargo build --release --locked
  binary=target/release/herald
fi
[ -x "$binary" ] || { echo "no executable at $binary" >&2; exit 1; }
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)"
arch="$(dpkg --print-architecture)"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
install -D -m 0755 "$binary" "$stage/usr/bin/herald"
install -D -m 0644 packaging/herald.service "$stage/lib/systemd/system/herald.service"
install -D -m 0640 packaging/herald.env "$stage/etc/herald/herald.env"
doc="$stage/usr/share/doc/herald"
install -D -m 0644 README.md "$doc/README.md"
install -m 0644 .env.example "$doc/env.example"
for d in operations deploy api live polling architecture; do
  [ -f "docs/$d.md" ] && install -m 0644 "docs/$d.md" "$doc/$d.md"
done
[ -f CHANGELOG.md ] && install -m 0644 CHANGELOG.md "$doc/CHANGELOG.md"
install -m 0644 packaging/prometheus-alerts.yml "$doc/prometheus-alerts.yml"
# Shell completions and the manual page, from the binary itself.
mkdir -p "$stage/usr/share/bash-completion/completions" "$stage/usr/share/zsh/vendor-completions" \
  "$stage/usr/share/fish/vendor_completions.d" "$stage/usr/share/man/man1"
"$binary" completions bash > "$stage/usr/share/bash-completion/completions/herald"
"$binary" completions zsh > "$stage/usr/share/zsh/vendor-completions/_herald"
"$binary" completions fish > "$stage/usr/share/fish/vendor_completions.d/herald.fish"
"$binary" man | gzip -9n > "$stage/usr/share/man/man1/herald.1.gz"
mkdir -p "$stage/DEBIAN"
install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$stage/DEBIAN/"
echo /etc/herald/herald.env > "$stage/DEBIAN/conffiles"
depends="libc6, adduser"
size="$(du -sk "$stage" | cut -f1)"
cat > "$stage/DEBIAN/control" <<CONTROL
Package: herald
Version: $version
Architecture: $arch
Maintainer: The Herald developers <herald@localhost>
Depends: $depends
Recommends: ca-certificates
Section: net
Priority: optional
Installed-Size: $size
Homepage: https://www.w3.org/TR/websub/
Description: WebSub / PubSubHubbub hub
 Herald lets subscribers follow feeds and other topics: publishers ping it (or it
 fetches on their behalf), and it delivers what changed to every verified
 subscriber, signed, with retries, or live over Server-Sent Events and WebSocket.
 State in SQLite, or PostgreSQL shared by several processes.
CONTROL
out="target/debian"
mkdir -p "$out"
deb="$out/herald_${version}_${arch}.deb"
dpkg-deb --root-owner-group --build "$stage" "$deb" >/dev/null
echo "$deb"
