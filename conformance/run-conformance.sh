#!/usr/bin/env bash
# run-conformance.sh (make conformance) runs the official MCP conformance suite
# (@modelcontextprotocol/conformance 0.1.16, server scenarios) against mcp-go v1.2.1's fixture
# directly and through toolgate's single-server route /mcp/fixture (keyless opt-in), prints
# "scenario | direct | through toolgate", writes conformance/CONFORMANCE.md, and fails when a
# scenario that passes direct fails through the gateway or when conformance/expected-failures.yml
# is stale. The work itself is conformance/suite_test.go.
#
# Env: TOOLGATE_BIN (default bin/toolgate when it serves; else the gateway runs in-process),
# CONFORMANCE_RUNS (default 3), CONFORMANCE_DIRECT_ONLY=1 (fixture only, no gateway).
set -euo pipefail
cd "$(dirname "$0")/.."
./conformance/setup.sh
if [[ -z "${TOOLGATE_BIN:-}" && -x bin/toolgate ]] && bin/toolgate version >/dev/null 2>&1; then
  export TOOLGATE_BIN="$PWD/bin/toolgate"
fi
echo "gateway: ${TOOLGATE_BIN:-in-process (gateway.New)}"
TOOLGATE_CONFORMANCE=1 exec go test -count=1 -timeout 20m -v -run '^TestConformanceSuite$' ./conformance/
