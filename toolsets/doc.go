// Package toolsets decides who may see and call which upstream MCP server and tool: object
// permissions on keys, teams, users and orgs, named toolsets, server allow-lists, blocked
// tools and network scope, combined by one policy function.
package toolsets
