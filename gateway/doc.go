// Package gateway is toolgate's HTTP surface: the MCP endpoints, the management API,
// admission (who is calling) and the wiring between the domain packages.
package gateway
