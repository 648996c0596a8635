#!/usr/bin/env bash
# Installs what the end-to-end client drivers need: curl, tus-js-client (npm ci in js/)
# and tuspy (a venv in py/.venv). Idempotent and non-interactive; safe to call before every
# test run: each part is skipped while a stamp shows its lock/requirements are unchanged.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
js_dir="$here/js"
py_dir="$here/py"
venv="$py_dir/.venv"

export DEBIAN_FRONTEND=noninteractive

die() {
  echo "tests/clients/setup.sh: $*" >&2
  exit 1
}

log_file="$(mktemp)"
trap 'rm -f "$log_file"' EXIT

# Run a command quietly; on failure show its output and stop.
quiet() {
  local what="$1"
  shift
  if ! "$@" >"$log_file" 2>&1; then
    cat "$log_file" >&2
    die "$what failed: $*"
  fi
}

apt_updated=0
apt_install() {
  command -v apt-get >/dev/null 2>&1 || die "need to install $* but apt-get is not available"
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "need root (or sudo) to install $*"
    sudo=(sudo -n)
  fi
  if [ "$apt_updated" -eq 0 ]; then
    quiet "apt-get update" "${sudo[@]}" apt-get update -q
    apt_updated=1
  fi
  quiet "apt-get install $*" "${sudo[@]}" apt-get install -y -q --no-install-recommends "$@"
}

hash_of() {
  sha256sum "$@" | sha256sum | cut -d' ' -f1
}

# --- curl: the HTTPS tests (tests/tls.rs) drive it over HTTP/2 and HTTP/1.1 --------------
command -v curl >/dev/null 2>&1 || apt_install curl ca-certificates
command -v curl >/dev/null 2>&1 || die "curl is still missing after installing it"

# --- JavaScript: tus-js-client -------------------------------------------------------
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  apt_install nodejs npm
fi
command -v node >/dev/null 2>&1 || die "node is still missing after installing nodejs"
command -v npm >/dev/null 2>&1 || die "npm is still missing after installing npm"

[ -f "$js_dir/package-lock.json" ] || die "missing $js_dir/package-lock.json"
js_stamp="$js_dir/node_modules/.strongroom-setup-stamp"
js_want="$(hash_of "$js_dir/package.json" "$js_dir/package-lock.json") node-$(node --version)"
if [ ! -f "$js_stamp" ] || [ "$(cat "$js_stamp")" != "$js_want" ]; then
  (cd "$js_dir" && quiet "npm ci in tests/clients/js" npm ci --no-audit --no-fund --loglevel=error)
  [ -f "$js_dir/node_modules/tus-js-client/package.json" ] || die "npm ci did not install tus-js-client"
  echo "$js_want" >"$js_stamp"
fi

# --- Python: tuspy ---------------------------------------------------------------------
command -v python3 >/dev/null 2>&1 || apt_install python3
if [ ! -x "$venv/bin/python" ]; then
  rm -rf "$venv"
  if ! python3 -m venv "$venv" >"$log_file" 2>&1; then
    # Debian splits venv/ensurepip out of python3 (python3-venv / python3.X-venv).
    rm -rf "$venv"
    apt_install python3-venv
    if ! python3 -m venv "$venv" >"$log_file" 2>&1; then
      rm -rf "$venv"
      pyver="$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
      apt_install "python${pyver}-venv"
      quiet "python3 -m venv" python3 -m venv "$venv"
    fi
  fi
fi
[ -x "$venv/bin/python" ] || die "venv at $venv has no python"

py_stamp="$venv/.strongroom-setup-stamp"
py_want="$(hash_of "$py_dir/requirements.txt") $("$venv/bin/python" --version 2>&1)"
if [ ! -f "$py_stamp" ] || [ "$(cat "$py_stamp")" != "$py_want" ]; then
  quiet "pip install -r tests/clients/py/requirements.txt" \
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    -r "$py_dir/requirements.txt"
  "$venv/bin/python" -c 'import tusclient' >/dev/null 2>&1 || die "tuspy is not importable in $venv"
  echo "$py_want" >"$py_stamp"
fi
