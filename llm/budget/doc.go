// Package budget is the one budget core for LLM calls and MCP tool calls: reservations
// made atomically before a call and settled after it, budgets on keys, users, teams, team
// members, orgs, end users and tags, periodic resets, rate and parallel limits, and the
// batched spend log. With leases (Config.LeaseFor) the store holds budget for many calls at
// a time and the calls themselves are admitted in memory.
package budget
