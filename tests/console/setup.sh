#!/usr/bin/env bash
# Installs what the browser test drivers (console.mjs, uppy.mjs) need: playwright-core,
# with `npm ci` from the committed package-lock.json, and Uppy's browser bundle. Idempotent, quiet and non-interactive:
# skipped while a stamp shows package.json, the lock file and node's version are unchanged.
#
# It installs nothing system-wide: node/npm must be there already (tests/clients/setup.sh
# installs them) and Chromium comes from Debian's `chromium` package (/usr/bin/chromium),
# which the test command installs. playwright-core never downloads a browser of its own.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

die() {
  echo "tests/console/setup.sh: $*" >&2
  exit 1
}

command -v node >/dev/null 2>&1 || die "node is missing (run tests/clients/setup.sh, or apt-get install nodejs npm)"
command -v npm >/dev/null 2>&1 || die "npm is missing (run tests/clients/setup.sh, or apt-get install npm)"
[ -f "$here/package-lock.json" ] || die "missing $here/package-lock.json"

hash_of() {
  sha256sum "$@" | sha256sum | cut -d' ' -f1
}

stamp="$here/node_modules/.strongroom-setup-stamp"
want="$(hash_of "$here/package.json" "$here/package-lock.json") node-$(node --version)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  log_file="$(mktemp)"
  trap 'rm -f "$log_file"' EXIT
  # PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD: playwright-core has no install script today; this
  # keeps it that way should a later version grow one.
  if ! (cd "$here" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error) \
    >"$log_file" 2>&1; then
    cat "$log_file" >&2
    die "npm ci in tests/console failed"
  fi
  [ -f "$here/node_modules/playwright-core/package.json" ] || die "npm ci did not install playwright-core"
  echo "$want" >"$stamp"
fi

# Uppy for tests/console/uppy.mjs, which answers examples/uppy.html's CDN
# requests with the same release: the npm tarball, checked against the
# registry's integrity pinned here, unpacked into vendor/ (git-ignored).
UPPY_VERSION=4.18.3
UPPY_INTEGRITY="sha512-PV7yVn062TP/3FJEl6toqiQZlVMDXWzQzBZLfVzfqeZ8G7iU5KwBYPTgO1UBjRBAfS3NeCOfeGzhZK6KWACcDQ=="
uppy_dir="$here/vendor/uppy"
if [ "$(cat "$uppy_dir/VERSION" 2>/dev/null)" != "$UPPY_VERSION" ]; then
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack "uppy@$UPPY_VERSION" --silent >/dev/null 2>&1) ||
    die "npm pack uppy@$UPPY_VERSION failed"
  tarball="$work/uppy-$UPPY_VERSION.tgz"
  got="sha512-$(python3 -c 'import base64, hashlib, sys
print(base64.b64encode(hashlib.sha512(open(sys.argv[1], "rb").read()).digest()).decode())' "$tarball")"
  [ "$got" = "$UPPY_INTEGRITY" ] || die "uppy-$UPPY_VERSION.tgz does not match its pinned integrity ($got)"
  tar -xzf "$tarball" -C "$work" package/dist/uppy.min.mjs package/dist/uppy.min.css
  rm -rf "$uppy_dir"
  mkdir -p "$uppy_dir"
  cp "$work/package/dist/uppy.min.mjs" "$work/package/dist/uppy.min.css" "$uppy_dir/"
  echo "$UPPY_VERSION" >"$uppy_dir/VERSION"
fi

if [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
  echo "tests/console/setup.sh: note: ${CHROMIUM:-/usr/bin/chromium} is missing (Debian package: chromium)" >&2
fi
