package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/toolgate/toolgate/gateway/federation"
	"github.com/toolgate/toolgate/gateway/upstream"
	"github.com/toolgate/toolgate/store"
)

// registry is the merged set of upstream servers the gateway serves: config-file servers
// and database servers. It is replaced whole on every change, never modified.
type registry struct {
	servers []*store.MCPServer // config servers first, then database servers, each by name
	byName  map[string]*store.MCPServer
	byID    map[string]*store.MCPServer
}

// credentials is the secret part of an upstream's auth settings, in LiteLLM's
// MCPCredentials shape. It is sealed as JSON into store.MCPServer.Credentials.
type credentials struct {
	AuthValue    string `json:"auth_value,omitempty"`
	ClientSecret string `json:"client_secret,omitempty"`
}

// set lists the fields that hold a value, for responses and audit entries.
func (c credentials) set() []string {
	var out []string
	if c.AuthValue != "" {
		out = append(out, "auth_value")
	}
	if c.ClientSecret != "" {
		out = append(out, "client_secret")
	}
	return out
}

// reload rebuilds the registry from the config servers and the database, and hands it to
// the upstream pool and federation. Changes therefore take effect without a restart.
func (s *Server) reload(ctx context.Context) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	dbServers, err := s.store.MCPServers(ctx)
	if err != nil {
		return err
	}
	reg := &registry{byName: map[string]*store.MCPServer{}, byID: map[string]*store.MCPServer{}}
	for _, srv := range s.configServers() {
		reg.servers = append(reg.servers, srv)
		reg.byName[srv.Name] = srv
		reg.byID[srv.ID] = srv
	}
	for _, srv := range dbServers {
		srv.Source = "db"
		if _, dup := reg.byName[srv.Name]; dup {
			s.log.Warn("database server shadowed by a config-file server of the same name", "server", srv.Name, "id", srv.ID)
			continue
		}
		reg.servers = append(reg.servers, srv)
		reg.byName[srv.Name] = srv
		reg.byID[srv.ID] = srv
	}
	specs := make([]upstream.Spec, 0, len(reg.servers))
	fed := make([]federation.Server, 0, len(reg.servers))
	for _, srv := range reg.servers {
		spec, err := s.spec(srv)
		if err != nil {
			// One unreadable server must not take the others down.
			s.log.Error("upstream left out of the registry", "server", srv.Name, "err", err)
			continue
		}
		specs = append(specs, spec)
		fed = append(fed, federation.Server{
			ID:                    srv.ID,
			Name:                  srv.Name,
			Description:           srv.Description,
			AllowedTools:          srv.AllowedTools,
			ToolNameToDisplayName: srv.ToolNameToDisplayName,
			ToolNameToDescription: srv.ToolNameToDescription,
			PerCaller:             perCallerOAuth(srv),
		})
	}
	s.reg.Store(reg)
	fp := registryFingerprint(reg.servers, specs, fed)
	if fp == s.regPrint {
		return nil // only health or timestamps changed
	}
	s.regPrint = fp
	s.pool.Update(specs)
	s.fed.SetServers(fed)
	for _, f := range s.onReload {
		f(reg.servers)
	}
	return nil
}

// registryFingerprint hashes what the pool, federation and route functions see of the
// registry, leaving out health and timestamps.
func registryFingerprint(servers []*store.MCPServer, specs []upstream.Spec, fed []federation.Server) [32]byte {
	h := sha256.New()
	enc := json.NewEncoder(h)
	for _, srv := range servers {
		c := *srv
		c.HealthStatus, c.HealthError, c.LastHealthCheck = "", "", time.Time{}
		c.CreatedAt, c.UpdatedAt = time.Time{}, time.Time{}
		_ = enc.Encode(&c)
	}
	_ = enc.Encode(specs)
	_ = enc.Encode(fed)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// refreshRegistry reloads the registry every interval until ctx ends, so that servers
// registered through other replicas sharing the database are picked up.
func (s *Server) refreshRegistry(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.reload(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("periodic registry reload", "err", err)
			}
		}
	}
}

// configServers returns copies of the config-file servers with IDs and Source set.
func (s *Server) configServers() []*store.MCPServer {
	s.mu.Lock()
	servers := s.configSrvs
	s.mu.Unlock()
	out := make([]*store.MCPServer, 0, len(servers))
	for _, c := range servers {
		srv := *c
		if srv.ID == "" {
			srv.ID = srv.Name
		}
		srv.Source = "config"
		if srv.Transport == "" {
			srv.Transport = store.TransportHTTP
		}
		out = append(out, &srv)
	}
	return out
}

// spec turns a server record into what the upstream pool needs, opening its credentials.
func (s *Server) spec(srv *store.MCPServer) (upstream.Spec, error) {
	creds, err := s.openCredentials(srv)
	if err != nil {
		return upstream.Spec{}, err
	}
	return upstream.Spec{
		Name:           srv.Name,
		URL:            srv.URL,
		Transport:      srv.Transport,
		StaticHeaders:  srv.StaticHeaders,
		AuthHeaders:    authHeaders(srv.AuthType, creds),
		ForwardHeaders: srv.ExtraHeaders,
		// oauth2 upstreams are reached only with a caller's or the client-credentials
		// token (oauthUpstreams); a probe without one would only fail and log.
		NoHealthCheck: srv.AuthType == store.AuthOAuth2,
	}, nil
}

// openCredentials returns a server's credentials: sealed for database servers, plain JSON
// for config servers.
func (s *Server) openCredentials(srv *store.MCPServer) (credentials, error) {
	var c credentials
	if len(srv.Credentials) == 0 {
		return c, nil
	}
	raw := srv.Credentials
	if srv.Source != "config" {
		if s.box == nil {
			return c, errors.New("credentials are sealed but no TOOLGATE_SALT_KEY or master key is configured")
		}
		var err error
		if raw, err = s.box.Open(srv.Credentials); err != nil {
			return c, fmt.Errorf("open credentials: %w", err)
		}
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return c, fmt.Errorf("decode credentials: %w", err)
	}
	return c, nil
}

// authHeaders renders configured credentials as upstream request headers (LiteLLM's rules).
func authHeaders(authType string, c credentials) map[string]string {
	if c.AuthValue == "" {
		return nil
	}
	switch authType {
	case store.AuthAPIKey:
		return map[string]string{"X-API-Key": c.AuthValue}
	case store.AuthBearer:
		return map[string]string{"Authorization": "Bearer " + c.AuthValue}
	case store.AuthBasic:
		v := c.AuthValue
		if strings.Contains(v, ":") {
			v = base64.StdEncoding.EncodeToString([]byte(v))
		}
		return map[string]string{"Authorization": "Basic " + v}
	case store.AuthAuthorization:
		return map[string]string{"Authorization": c.AuthValue}
	}
	return nil
}

// isKeyless reports whether server may be used without a credential on its own routes.
func (s *Server) isKeyless(server string) bool {
	srv := s.reg.Load().byName[server]
	return srv != nil && srv.AllowKeyless
}

// listChanged passes an upstream's list_changed notification to federation.
func (s *Server) listChanged(server, method string) {
	s.fed.ListChanged(server, method)
}

// upstreamHealth records a health change in the metrics and, for database servers, the store.
func (s *Server) upstreamHealth(server string, healthy bool, err error) {
	v := 0.0
	if healthy {
		v = 1
	}
	s.metrics.health.WithLabelValues(server).Set(v)
	srv := s.reg.Load().byName[server]
	if srv == nil || srv.Source == "config" || s.isClosed() {
		return
	}
	status, msg := store.HealthHealthy, ""
	if !healthy {
		status = store.HealthUnhealthy
		if err != nil {
			msg = err.Error()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.store.SetMCPServerHealth(ctx, srv.ID, status, msg, s.now()); err != nil && !errors.Is(err, store.ErrNotFound) {
		s.log.Warn("record upstream health", "server", server, "err", err)
	}
}

// decodeHash decodes a hex SHA-256.
func decodeHash(h string) ([]byte, error) {
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != 32 {
		return nil, errors.New("not a hex SHA-256")
	}
	return b, nil
}
