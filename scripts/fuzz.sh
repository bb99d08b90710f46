#!/usr/bin/env bash
# Runs each fuzz target (fuzz/fuzz_targets/) for a bounded time: SECONDS per target (default 60).
# Not part of CI. Needs cargo-fuzz (`cargo install cargo-fuzz`); cargo-fuzz wants a nightly
# compiler, and RUSTC_BOOTSTRAP=1 lets this machine's stable one stand in.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
for target in hub_form feed urls settings addresses; do
  echo "== fuzzing $target for ${seconds}s =="
  RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" -- -max_total_time="$seconds"
done
