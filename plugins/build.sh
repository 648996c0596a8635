#!/usr/bin/env bash
# Builds every plugin in this workspace into a WebAssembly component under
# plugins/dist/, validates it, checks what it imports and prints the SHA-256 an admin
# pins in a policy. Idempotent and non-interactive; installs what it needs (the
# wasm32-unknown-unknown target, the pinned wasm-tools) when missing.
#
#   plugins/build.sh            build everything
#   WASM_TOOLS=/path/wasm-tools plugins/build.sh   use that wasm-tools binary
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

TARGET=wasm32-unknown-unknown
# Same generation as wasmtime 48 (wasmparser/wit-parser 0.254) and wit-bindgen 0.60.
WASM_TOOLS_VERSION=1.254.2
# Plugins the appliance ships, then the hostile cases the host's tests load.
SHIPPED=(content-inspector provenance anomaly)
HOSTILE=(hostile-loop hostile-memory hostile-panic hostile-log-spam hostile-forbidden-import)
# What a plugin may import: the host functions, and the type-only interface their
# signatures use (it has no functions; any component using the world imports it).
ALLOWED_IMPORTS=(strongroom:plugin/types@0.1.0 strongroom:plugin/host@0.1.0)
EXPORT=strongroom:plugin/inspect@0.1.0

started=$SECONDS
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'build.sh: %s\n' "$*" >&2; exit 1; }

# --- toolchain ---------------------------------------------------------------
if command -v rustup >/dev/null 2>&1; then
    if ! rustup target list --installed | grep -qx "$TARGET"; then
        say "adding rust target $TARGET"
        rustup target add "$TARGET"
    fi
fi

cargo_home="${CARGO_HOME:-$HOME/.cargo}"
tools_root="$cargo_home/strongroom-tools/wasm-tools-$WASM_TOOLS_VERSION"
version_of() { "$1" --version 2>/dev/null | awk '{print $2}'; }
if [[ -n "${WASM_TOOLS:-}" ]]; then
    wasm_tools="$WASM_TOOLS"
elif command -v wasm-tools >/dev/null 2>&1 && [[ "$(version_of wasm-tools)" == "$WASM_TOOLS_VERSION" ]]; then
    wasm_tools="$(command -v wasm-tools)"
else
    wasm_tools="$tools_root/bin/wasm-tools"
    if [[ "$(version_of "$wasm_tools")" != "$WASM_TOOLS_VERSION" ]]; then
        # Into its own root, so a different wasm-tools on PATH is left alone.
        # `component` gives `component new` and `component wit`; `validate` the validator.
        say "installing wasm-tools $WASM_TOOLS_VERSION into $tools_root (a few minutes, once)"
        cargo install wasm-tools --version "$WASM_TOOLS_VERSION" --locked \
            --no-default-features --features component,validate --root "$tools_root"
    fi
fi
[[ -x "$wasm_tools" ]] || die "wasm-tools not found at $wasm_tools"
[[ "$(version_of "$wasm_tools")" == "$WASM_TOOLS_VERSION" ]] ||
    say "warning: using wasm-tools $(version_of "$wasm_tools"), pinned is $WASM_TOOLS_VERSION"

# --- build -------------------------------------------------------------------
say "cargo build --release --target $TARGET"
# Registry paths would otherwise end up in panic locations, making the SHA-256
# depend on the builder's home directory. (The target-specific variable wins over
# .cargo/config.toml, so it repeats the flags from there.)
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="-C target-feature=+simd128 --remap-path-prefix=$cargo_home/registry/src=/cargo/registry/src --remap-path-prefix=$here=/plugins"
cargo build --release --locked --target "$TARGET" --target-dir "$here/target" --workspace

# --- componentize, validate, check imports ------------------------------------
staging="target/dist.tmp"
rm -rf "$staging"
mkdir -p "$staging"

imports_of() {
    # `world root { import a; import b; export c; }` as printed by `component wit`.
    "$wasm_tools" component wit "$1" | awk '/^world root \{/{w=1; next} w && /^\}/{w=0} w && $1=="import"{sub(/;$/,"",$2); print $2}'
}
exports_of() {
    "$wasm_tools" component wit "$1" | awk '/^world root \{/{w=1; next} w && /^\}/{w=0} w && $1=="export"{sub(/;$/,"",$2); print $2}'
}
is_allowed() {
    local i
    for i in "${ALLOWED_IMPORTS[@]}"; do [[ "$1" == "$i" ]] && return 0; done
    return 1
}

summary=()
for name in "${SHIPPED[@]}" "${HOSTILE[@]}"; do
    core="target/$TARGET/release/${name//-/_}.wasm"
    out="$staging/$name.wasm"
    [[ -f "$core" ]] || die "$name: core module $core was not built"
    "$wasm_tools" component new "$core" -o "$out"
    "$wasm_tools" validate "$out"

    mapfile -t imports < <(imports_of "$out")
    mapfile -t exports < <(exports_of "$out")
    [[ "${exports[*]}" == "$EXPORT" ]] || die "$name: exports '${exports[*]}', expected only $EXPORT"
    forbidden=()
    for i in "${imports[@]}"; do is_allowed "$i" || forbidden+=("$i"); done
    if [[ "$name" == hostile-forbidden-import ]]; then
        # This one exists to be refused; make sure it still is.
        (( ${#forbidden[@]} > 0 )) || die "$name: imports nothing forbidden, the host test would prove nothing"
    elif (( ${#forbidden[@]} > 0 )); then
        die "$name: imports ${forbidden[*]} (allowed: ${ALLOWED_IMPORTS[*]})"
    fi
    sha=$(sha256sum "$out" | awk '{print $1}')
    size=$(stat -c %s "$out")
    summary+=("$(printf '%-30s %8s  %s\n%-30s %8s  imports: %s' "$name.wasm" "$size" "$sha" "" "" "${imports[*]}")")
done

# Swap in the new set whole, so a reader never sees a half-built dist/.
( cd "$staging" && sha256sum ./*.wasm | sed 's| \./| |' > SHA256SUMS )
rm -rf dist
mv "$staging" dist

printf '\n%-30s %8s  %s\n' "component" "bytes" "sha256 (pin this in the policy)"
printf '%s\n' "${summary[@]}"
printf '\nbuilt %d components into %s/dist in %ds (wasm-tools %s)\n' \
    "$(( ${#SHIPPED[@]} + ${#HOSTILE[@]} ))" "$here" "$(( SECONDS - started ))" "$(version_of "$wasm_tools")"
