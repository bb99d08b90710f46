#!/usr/bin/env bash
# Installs the Debian package on this machine and checks it as an operator would: the binary
# runs, the service user reads the shipped settings and check-config passes as that user, the
# unit passes `systemd-analyze verify` (where systemd is installed), and purging removes it.
# Needs root. Packages the debug build unless given a binary.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "package-test: needs root (dpkg -i)" >&2; exit 1; }
binary="${1:-${CARGO_TARGET_DIR:-target}/debug/herald}"
[ -x "$binary" ] || cargo build --locked
deb="$(bash scripts/package-deb.sh "$binary")"
echo "== installing $deb =="
dpkg -i "$deb" >/dev/null
trap 'dpkg --purge herald >/dev/null 2>&1 || true' EXIT
herald --version
[ -s /usr/share/bash-completion/completions/herald ] && [ -s /usr/share/man/man1/herald.1.gz ] \
  || { echo "completions or manual page missing" >&2; exit 1; }
[ -s /usr/share/doc/herald/prometheus-alerts.yml ] || { echo "alert rules missing" >&2; exit 1; }
getent passwd herald >/dev/null || { echo "no herald user" >&2; exit 1; }
[ "$(stat -c '%U:%G %a' /etc/herald/herald.env)" = "root:herald 640" ] \
  || { echo "herald.env should be root:herald 640" >&2; exit 1; }
state="$(mktemp -d)"
chown herald:herald "$state"
# As the service reads it, with the state directory systemd would make.
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
  $(grep -v '^#' /etc/herald/herald.env | grep . | sed "s#/var/lib/herald#$state#") \
  runuser -u herald -- herald check-config
if command -v systemd-analyze >/dev/null 2>&1; then
  systemd-analyze verify /lib/systemd/system/herald.service
fi
dpkg --purge herald >/dev/null
! getent passwd herald >/dev/null || { echo "the herald user outlived the purge" >&2; exit 1; }
[ ! -e /usr/bin/herald ] || { echo "/usr/bin/herald outlived the purge" >&2; exit 1; }
rm -rf "$state"
echo "package-test: ok"
