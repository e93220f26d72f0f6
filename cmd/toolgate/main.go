// Toolgate is an MCP gateway: it federates upstream MCP servers behind one endpoint,
// authenticates and authorizes every caller, and routes LLM completions under one budget.
//
// Usage:
//
//	toolgate serve [--host H] [--port P] [--config FILE]
//	toolgate migrate [--config FILE]
//	toolgate version
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "toolgate: not built yet")
	os.Exit(2)
}
