#!/usr/bin/env bash
# The project's one test command: ./tests/run.sh
#
# Idempotent and non-interactive (CI=true, no stdin, root or not). On a fresh
# machine it installs what the tests need (the tus client drivers via
# tests/clients/setup.sh; rustfmt and clippy via rustup), then runs, in order:
# plugins/build.sh (the Wasm plugins from source), cargo fmt --check,
# cargo clippy --all-targets -D warnings, cargo test.
# Everything builds into the one target/ dir (dev profile); the plugins build
# in plugins/target for wasm32.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec </dev/null
export CARGO_TERM_PROGRESS_WHEN=never

section() {
  printf '\n==> %s\n' "$*"
}

section "client drivers (tests/clients/setup.sh)"
tests/clients/setup.sh
echo "node $(node --version), tus-js-client and tuspy installed"

section "rust toolchain"
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is missing: install the Rust toolchain (rustup) first" >&2
  exit 1
fi
for component in rustfmt clippy; do
  case "$component" in
    rustfmt) probe=(cargo fmt --version) ;;
    clippy) probe=(cargo clippy --version) ;;
  esac
  if ! "${probe[@]}" >/dev/null 2>&1; then
    command -v rustup >/dev/null 2>&1 || {
      echo "$component is missing and rustup is not available to add it" >&2
      exit 1
    }
    echo "adding rust component $component"
    rustup component add "$component"
  fi
done
cargo --version

section "plugins (plugins/build.sh)"
plugins/build.sh

section "cargo fmt --check"
cargo fmt --check

section "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

section "cargo test"
# Unit, integration and doc tests. Not --all-targets: that would also run
# bench/pipeline.rs (harness = false), i.e. the full benchmark; clippy above
# still builds the bench.
cargo test

section "all checks passed"
