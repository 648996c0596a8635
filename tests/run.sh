#!/usr/bin/env bash
# The project's one test command: ./tests/run.sh
#
# Idempotent and non-interactive (CI=true, no stdin, root or not). On a fresh
# machine it installs what the tests need (Debian's softhsm2, prometheus and
# chromium in one apt-get call; the tus client drivers via
# tests/clients/setup.sh; playwright-core via tests/console/setup.sh;
# rustfmt and clippy via rustup), then runs, in order:
# plugins/build.sh (the Wasm plugins from source), cargo fmt --check,
# cargo clippy --all-targets -D warnings, cargo test, and a bounded fuzz run
# of every cargo-fuzz target (nightly; installed here if missing).
# Everything builds into the one target/ dir (dev profile); the plugins build
# in plugins/target for wasm32, the fuzz targets in fuzz/target (nightly, so
# they cannot share target/).
#
# STRONGROOM_FUZZ_SECONDS sets the fuzzing time per target (default 20).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec </dev/null
export CARGO_TERM_PROGRESS_WHEN=never

section() {
  printf '\n==> %s\n' "$*"
}

section "Debian packages"
# Everything the tests need from Debian, installed in one apt-get call (with
# one apt-get update before it) and only when something is missing:
# - softhsm2: the PKCS#11 key provider tests (tests/keys.rs);
# - prometheus: promtool and a real Prometheus server (tests/observability.rs);
# - chromium: the web console in a real browser (tests/browser_console.rs);
# - curl, nodejs/npm, python3-venv: the tus client drivers (tests/clients/).
# Package scripts must not start services (prometheus would take port 9090,
# the admin listener's default): a policy-rc.d refuses them for the install.
SOFTHSM_MODULE=/usr/lib/softhsm/libsofthsm2.so
CHROMIUM=/usr/bin/chromium
debian_packages=()
{ command -v softhsm2-util >/dev/null 2>&1 && [ -e "$SOFTHSM_MODULE" ]; } ||
  debian_packages+=(softhsm2)
{ command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; } ||
  debian_packages+=(prometheus)
[ -x "$CHROMIUM" ] || debian_packages+=(chromium)
command -v curl >/dev/null 2>&1 || debian_packages+=(curl ca-certificates)
{ command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; } ||
  debian_packages+=(nodejs npm)
command -v python3 >/dev/null 2>&1 || debian_packages+=(python3)
if [ "${#debian_packages[@]}" -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || {
    echo "missing ${debian_packages[*]} and apt-get is not available to install them" >&2
    exit 1
  }
  apt_sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || {
      echo "need root (or sudo) to install ${debian_packages[*]}" >&2
      exit 1
    }
    apt_sudo=(sudo -n)
  fi
  echo "installing ${debian_packages[*]}"
  apt_log=$(mktemp)
  policy_rc=/usr/sbin/policy-rc.d
  own_policy_rc=0
  if [ ! -e "$policy_rc" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${apt_sudo[@]}" tee "$policy_rc" >/dev/null
    "${apt_sudo[@]}" chmod 755 "$policy_rc"
    own_policy_rc=1
  fi
  installed=0
  if { DEBIAN_FRONTEND=noninteractive "${apt_sudo[@]}" apt-get update -q &&
    DEBIAN_FRONTEND=noninteractive "${apt_sudo[@]}" apt-get install -y -q \
      --no-install-recommends "${debian_packages[@]}"; } >"$apt_log" 2>&1; then
    installed=1
  fi
  [ "$own_policy_rc" -eq 0 ] || "${apt_sudo[@]}" rm -f "$policy_rc"
  if [ "$installed" -ne 1 ]; then
    cat "$apt_log" >&2
    rm -f "$apt_log"
    echo "installing ${debian_packages[*]} failed" >&2
    exit 1
  fi
  rm -f "$apt_log"
fi
[ -e "$SOFTHSM_MODULE" ] || {
  echo "$SOFTHSM_MODULE is still missing after installing softhsm2" >&2
  exit 1
}
[ -x "$CHROMIUM" ] || {
  echo "$CHROMIUM is still missing after installing chromium" >&2
  exit 1
}
echo "softhsm2 $(softhsm2-util --version), $(promtool --version 2>&1 | head -n 1), $("$CHROMIUM" --version 2>/dev/null)"

section "client drivers (tests/clients/setup.sh)"
tests/clients/setup.sh
echo "node $(node --version), tus-js-client and tuspy installed"

section "browser driver (tests/console/setup.sh)"
tests/console/setup.sh
echo "playwright-core installed"

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

section "plugin tests (native, through the SDK's test host)"
# The plugins' own fixture tests; tests/plugin_corpus.rs runs the same
# plugins as compiled Wasm under the real sandbox.
cargo test --manifest-path plugins/Cargo.toml --target-dir plugins/target --workspace --locked

section "cargo fmt --check"
cargo fmt --check

section "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

section "cargo test"
# Unit, integration and doc tests. Not --all-targets: that would also run
# bench/pipeline.rs (harness = false), i.e. the full benchmark; clippy above
# still builds the bench.
cargo test

# The fuzz targets build with the nightly toolchain, as cargo-fuzz expects.
# cargo-fuzz is pinned so a new release cannot change the build under us;
# 0.13.2 works with the nightly of 2026-05.
CARGO_FUZZ_VERSION=0.13.2
FUZZ_SECONDS=${STRONGROOM_FUZZ_SECONDS:-20}
# libFuzzer's own timeout is 1200 s per input: a hang would eat the whole
# budget without failing. The RSS limit is libFuzzer's default, made explicit.
FUZZ_RSS_LIMIT_MB=2048
FUZZ_TIMEOUT_SECONDS=10
# Built for a smoke run of seconds, not a campaign, on two cores:
# - no sanitizer: the targets run safe Rust (ring's C is never instrumented
#   anyway); AddressSanitizer took ~60% more build CPU here and ran several
#   times fewer executions.
#   Panics, overflows (debug assertions stay on), stack overflows, hangs and
#   the RSS limit are still caught. A campaign can use the default:
#   cargo +nightly fuzz run <target>.
# - 16 codegen units instead of cargo-fuzz's release default of 1 (which trades
#   build time for execution speed): sled, tokio and strongroom itself then
#   compile on both cores.
FUZZ_BUILD=(--sanitizer none --codegen-units 16)

section "fuzz toolchain (nightly, cargo-fuzz $CARGO_FUZZ_VERSION)"
fuzz_started=$SECONDS
if ! cargo +nightly --version >/dev/null 2>&1; then
  command -v rustup >/dev/null 2>&1 || {
    echo "the nightly toolchain is missing and rustup is not available to add it" >&2
    exit 1
  }
  echo "installing the nightly toolchain (minimal profile)"
  rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi
cargo +nightly --version
cargo fuzz --version

section "fuzz build (cargo +nightly fuzz build ${FUZZ_BUILD[*]})"
cargo +nightly fuzz build "${FUZZ_BUILD[@]}"
echo "fuzz toolchain and build: $((SECONDS - fuzz_started)) s"

section "fuzz run (${FUZZ_SECONDS} s per target)"
# New inputs go to a temporary first corpus dir; the committed corpus
# (fuzz/corpus/<target>) is only read. Crash reproducers and each target's
# full libFuzzer log go under fuzz/target/ (ignored by git), and a reproducer
# is also printed in base64 so a CI log carries it.
fuzz_targets=$(cargo +nightly fuzz list)
fuzz_tmp=$(mktemp -d)
trap 'rm -rf "$fuzz_tmp"' EXIT
fuzz_failed=()
# One of libFuzzer's final stats (-print_final_stats=1) from a log.
fuzz_stat() {
  sed -n "s/^stat::$2: *//p" "$1" | tail -n 1
}
for target in $fuzz_targets; do
  artifacts="fuzz/target/artifacts/$target"
  log="fuzz/target/logs/$target.log"
  rm -rf "$artifacts"
  mkdir -p "$fuzz_tmp/$target" "$artifacts" "$(dirname "$log")"
  if cargo +nightly fuzz run "${FUZZ_BUILD[@]}" "$target" \
    "$fuzz_tmp/$target" "fuzz/corpus/$target" -- \
    -max_total_time="$FUZZ_SECONDS" -rss_limit_mb="$FUZZ_RSS_LIMIT_MB" \
    -timeout="$FUZZ_TIMEOUT_SECONDS" -print_final_stats=1 \
    -artifact_prefix="$artifacts/" >"$log" 2>&1; then
    outcome=ok
  else
    outcome=FAILED
    fuzz_failed+=("$target")
  fi
  printf '%-14s %-6s %10s execs (%s/s), %s new inputs, peak RSS %s MB\n' \
    "$target" "$outcome" "$(fuzz_stat "$log" number_of_executed_units)" \
    "$(fuzz_stat "$log" average_exec_per_sec)" "$(fuzz_stat "$log" new_units_added)" \
    "$(fuzz_stat "$log" peak_rss_mb)"
  if [ "$outcome" = FAILED ]; then
    echo "--- $log (tail)"
    tail -n 40 "$log"
    for input in "$artifacts"/*; do
      [ -f "$input" ] || continue
      echo "--- reproducer $input (base64); keep it as a regression in fuzz/artifacts/$target/"
      base64 "$input"
    done
  fi
done
if [ "${#fuzz_failed[@]}" -gt 0 ]; then
  echo "fuzzing failed for: ${fuzz_failed[*]}" >&2
  exit 1
fi
echo "fuzz step: $((SECONDS - fuzz_started)) s"

section "all checks passed"
