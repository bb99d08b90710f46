#!/usr/bin/env bash
# Runs every test: unit tests once, the integration suite on SQLite and then on PostgreSQL.
#
# PostgreSQL is reached at HERALD_TEST_POSTGRES_URL (default: the local server with trust auth);
# each integration test creates its own database there, named herald_test_*.
set -euo pipefail
cd "$(dirname "$0")/.."

export HERALD_TEST_POSTGRES_URL="${HERALD_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

# Databases and files left by earlier runs.
rm -f "${TMPDIR:-/tmp}"/herald_test_*.db "${TMPDIR:-/tmp}"/herald_test_*.db-*
if command -v psql >/dev/null 2>&1; then
  psql "$HERALD_TEST_POSTGRES_URL" -qAt -c \
    "SELECT 'DROP DATABASE IF EXISTS ' || quote_ident(datname) || ';' FROM pg_database WHERE datname LIKE 'herald\_test\_%'" \
    2>/dev/null | psql "$HERALD_TEST_POSTGRES_URL" -q >/dev/null 2>&1 || true
fi

# The pages are tested in headless Chromium over WebDriver (Debian's chromium and
# chromium-driver); installed here when missing (as root, which CI is).
if ! command -v chromedriver >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing chromium and chromium-driver for the browser tests =="
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "the browser tests need chromium and chromedriver: apt-get install chromium chromium-driver" >&2
    exit 1
  fi
fi

# The alert rules are evaluated by Prometheus's promtool (tests/api/alerts.rs): taken from
# Debian's prometheus package without installing it (that would start a server).
if [ -z "${HERALD_TEST_PROMTOOL:-}" ] && ! command -v promtool >/dev/null 2>&1; then
  target="${CARGO_TARGET_DIR:-target}"
  case "$target" in /*) ;; *) target="$(pwd)/$target" ;; esac
  tools="$target/tools"
  if [ ! -x "$tools/promtool" ]; then
    echo "== fetching promtool from Debian's prometheus package =="
    scratch="$(mktemp -d)"
    if [ "$(id -u)" = 0 ]; then apt-get update -qq; fi
    (cd "$scratch" && apt-get download -qq prometheus 2>/dev/null && dpkg-deb -x prometheus_*.deb x)
    mkdir -p "$tools" && cp "$scratch/x/usr/bin/promtool" "$tools/promtool"
    rm -rf "$scratch"
  fi
  export HERALD_TEST_PROMTOOL="$tools/promtool"
fi

echo "== unit tests and the integration suite on SQLite =="
HERALD_TEST_DATABASE=sqlite cargo test --locked --lib --bins --tests

echo "== the integration suite on PostgreSQL =="
HERALD_TEST_DATABASE=postgres cargo test --locked --test api

echo "== the Debian package: install, check as the service user, purge =="
if [ "$(id -u)" = 0 ] && command -v dpkg-deb >/dev/null 2>&1; then
  bash scripts/package-test.sh "${CARGO_TARGET_DIR:-target}/debug/herald"
else
  echo "skipped: installing the package needs root and dpkg (scripts/package-test.sh)"
fi
