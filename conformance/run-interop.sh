#!/usr/bin/env bash
# run-interop.sh (make interop) runs real MCP clients against a live toolgate fronting
# server-everything (streamable HTTP upstream) and a Go mcp-go server (SSE upstream): the
# TypeScript SDK 1.32, MCP Inspector 2.12 CLI (legacy and modern eras), Claude Code 2.1.332
# and the mcp-go client in both protocol generations, over streamable HTTP and SSE. It prints
# the client x transport x operation matrix, writes conformance/MATRIX.md and fails when any
# cell a client supports fails. The work itself is conformance/interop_test.go.
#
# Env: TOOLGATE_BIN (default bin/toolgate when it serves; else the gateway runs in-process).
set -euo pipefail
cd "$(dirname "$0")/.."
./conformance/setup.sh
if [[ -z "${TOOLGATE_BIN:-}" && -x bin/toolgate ]] && bin/toolgate version >/dev/null 2>&1; then
  export TOOLGATE_BIN="$PWD/bin/toolgate"
fi
echo "gateway: ${TOOLGATE_BIN:-in-process (gateway.New)}"
TOOLGATE_INTEROP=1 exec go test -count=1 -timeout 15m -v -run '^TestInterop$' ./conformance/
