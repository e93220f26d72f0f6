// Package toolsets decides who may see and call which upstream MCP server and tool: object
// permissions on keys, teams, users and orgs, named toolsets, server allow-lists, blocked
// tools and network scope, combined by one policy function.
//
// # The permission rule
//
// A caller is a chain of grant levels, narrowest first:
//
//	key -> owner -> org
//
// where owner is the key's team when the key belongs to a team, else the key's user (a
// personal key; a team key ignores its user's grants), and org is the key's organization,
// else its team's. Each level carries a store.ObjectPermission; a level may be absent.
// (Callers without a key, such as OAuth users, start the chain at owner.)
//
// A level is EMPTY when its mcp_servers, mcp_access_groups, mcp_tool_permissions and
// mcp_toolsets are all empty. An empty (or absent) level means "inherit": it imposes
// nothing and the levels around it decide. It never means "nothing".
//
// A non-empty level grants, on a server S:
//   - every tool of S, when S's ID or name is in mcp_servers, or one of S's access groups is
//     in mcp_access_groups, and mcp_tool_permissions has no entry for S;
//   - only the tools listed, when mcp_tool_permissions has an entry for S (by ID or name);
//   - plus the tools of S named by any toolset in mcp_toolsets.
//
// A non-empty level that grants nothing on S denies S.
//
// Tool T on server S is allowed when every one of these holds, checked in this order (the
// first that fails is the rule named in the decision):
//
//  1. key, owner, org: every non-empty level grants T on S (key narrowed by owner narrowed
//     by org: the effective set is the intersection of the non-empty levels), and at least
//     one level is non-empty. Two exceptions: an admin (the master key or a proxy_admin
//     user's key) passes this step whatever the levels say, and a server with
//     allow_all_keys passes it for every caller. If every level is empty and the server
//     does not allow all keys, nothing is granted: there is nothing to inherit from.
//  2. toolset: when the request narrows itself to one toolset (x-mcp-toolset-id), that
//     toolset must be listed in mcp_toolsets of some level of the caller's chain (any
//     toolset, for an admin) or the request is refused; T must then be one of its tools.
//     The header only ever narrows: step 1 still applies in full.
//  3. server allowed_tools: when the server lists allowed_tools, T must be one of them
//     (other tools do not exist for anyone, admins included).
//  4. blocked_tools: T is not blocked by any level. An entry blocks by tool name ("search")
//     or by server and tool ("github-search", with the server's name or ID). Blocked
//     always wins, over admin and allow_all_keys too.
//  5. network scope: a server with available_on_public_internet false is reachable only
//     from internal addresses (loopback, RFC 1918, RFC 4193, link-local). The caller's
//     address is the TCP peer; X-Forwarded-For counts only when enabled and the peer is in
//     a trusted proxy range; forwarding enabled with no trusted ranges fails closed (the
//     caller is external).
//
// A server is visible (listed, its resources and prompts reachable) when steps 1, 2 and 5
// allow some tool of it, that is, when each non-empty level grants the server at all.
//
// Subject.Allow, Subject.AllowServer and Subject.Explain all run the same function
// (Subject.decide); Explain also records the chain of steps that produced the verdict.
package toolsets
