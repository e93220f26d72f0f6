#!/usr/bin/env bash
# run-conformance.sh (make conformance) runs the official MCP conformance suite
# (@modelcontextprotocol/conformance 0.1.16, server scenarios) against mcp-go v1.2.1's fixture
# directly and through toolgate's single-server route, prints "scenario | direct | through
# toolgate", and fails when a scenario that passes direct fails through the gateway or when
# conformance/expected-failures.yml is stale. The work itself is conformance/suite_test.go.
#
# Env: TOOLGATE_BIN (default bin/toolgate, built by `make build`), CONFORMANCE_RUNS (default 3),
# CONFORMANCE_DIRECT_ONLY=1 (fixture only, no gateway).
set -euo pipefail
cd "$(dirname "$0")/.."
./conformance/setup.sh
if [[ -z "${TOOLGATE_BIN:-}" && -x bin/toolgate ]]; then
  export TOOLGATE_BIN="$PWD/bin/toolgate"
fi
TOOLGATE_CONFORMANCE=1 exec go test -count=1 -timeout 20m -v -run '^TestConformanceSuite$' ./conformance/
