//go:build tools

// This file pins modules the project has chosen before every package imports them, so that
// go mod tidy keeps them. It is never built.
package tools

import (
	_ "github.com/google/go-cmp/cmp"
	_ "github.com/hashicorp/golang-lru/v2/expirable"
	_ "github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/lestrrat-go/jwx/v2/jwt"
	_ "github.com/mark3labs/mcp-go/client"
	_ "github.com/mark3labs/mcp-go/server"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/redis/go-redis/v9"
	_ "golang.org/x/oauth2"
	_ "gopkg.in/yaml.v3"
	_ "modernc.org/sqlite"
)
