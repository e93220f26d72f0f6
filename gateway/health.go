package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/toolgate/toolgate/gateway/federation"
	"github.com/toolgate/toolgate/gateway/upstream"
	"github.com/toolgate/toolgate/llm/budget"
	"github.com/toolgate/toolgate/store"
)

// liveliness answers as long as the process serves HTTP (LiteLLM's spelling).
func (s *Server) liveliness(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "healthy"})
}

// dbStatus pings the store within a short deadline.
func (s *Server) dbStatus(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		return "disconnected", err
	}
	return "connected", nil
}

// readiness reports whether the gateway can serve: 503 when the database is down.
func (s *Server) readiness(w http.ResponseWriter, r *http.Request) {
	db, err := s.dbStatus(r.Context())
	if err != nil {
		s.log.WarnContext(r.Context(), "readiness: database unreachable", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unhealthy", "db": db})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "healthy", "db": db})
}

// upstreamHealthView is one upstream in health responses.
type upstreamHealthView struct {
	ServerID         string     `json:"server_id"`
	ServerName       string     `json:"server_name"`
	Status           string     `json:"status"`
	LastHealthCheck  *time.Time `json:"last_health_check"`
	HealthCheckError *string    `json:"health_check_error"`
	Tools            int        `json:"tools"`
	Source           string     `json:"source"`
}

// upstreamHealth lists the health of the registered servers, optionally only those whose
// id or name is in only.
func (s *Server) upstreamHealthViews(only map[string]bool) []upstreamHealthView {
	health := s.pool.Health()
	reg := s.reg.Load()
	out := []upstreamHealthView{}
	for _, srv := range reg.servers {
		if len(only) > 0 && !only[srv.ID] && !only[srv.Name] {
			continue
		}
		v := upstreamHealthView{ServerID: srv.ID, ServerName: srv.Name, Status: store.HealthUnknown, Source: srv.Source}
		if h, ok := health[srv.Name]; ok && !h.CheckedAt.IsZero() {
			v.Status = store.HealthUnhealthy
			if h.Healthy {
				v.Status = store.HealthHealthy
			}
			v.LastHealthCheck = timePtr(h.CheckedAt)
			v.HealthCheckError = strPtr(h.Err)
			v.Tools = h.Tools
		} else if srv.AuthType == store.AuthOAuth2 {
			v.HealthCheckError = strPtr("not probed: auth_type oauth2 servers are reached only with a caller's or the client-credentials token")
		}
		out = append(out, v)
	}
	return out
}

// readinessDetails is readiness plus version and upstream health, for authenticated callers.
func (s *Server) readinessDetails(w http.ResponseWriter, r *http.Request) error {
	db, err := s.dbStatus(r.Context())
	status, code := "healthy", http.StatusOK
	if err != nil {
		status, code = "unhealthy", http.StatusServiceUnavailable
	}
	writeJSON(w, code, map[string]any{
		"status":    status,
		"db":        db,
		"version":   s.cfg.Version,
		"upstreams": s.upstreamHealthViews(nil),
		"cache":     s.cacheInfo(),
	})
	return nil
}

// cacheInfo describes the caches for readiness details, in the spirit of LiteLLM's
// "cache" field: where rate-limit counters live (redis, shared by replicas, or local to
// this process) and how many virtual keys the admission cache holds.
func (s *Server) cacheInfo() map[string]any {
	counters := "local"
	if v, ok := llmRuntimes.Load(s); ok {
		if _, redis := v.(*llmRuntime).limiter.(*budget.RedisLimiter); redis {
			counters = "redis"
		}
	}
	return map[string]any{"rate_limit_counters": counters, "cached_keys": s.keys.Len(),
		"key_cache_ttl_seconds": s.cfg.KeyCacheTTL.Seconds()}
}

// serverHealth is GET /v1/mcp/server/health[?server_ids=a,b].
func (s *Server) serverHealth(w http.ResponseWriter, r *http.Request) error {
	only := map[string]bool{}
	for _, v := range append(r.URL.Query()["server_ids"], r.URL.Query()["server_id"]...) {
		for _, id := range strings.Split(v, ",") {
			if id = strings.TrimSpace(id); id != "" {
				only[id] = true
			}
		}
	}
	views := s.upstreamHealthViews(only)
	for id := range only {
		found := false
		for _, v := range views {
			if v.ServerID == id || v.ServerName == id {
				found = true
				break
			}
		}
		if !found {
			return errorf(http.StatusNotFound, "not_found_error", "server_ids", "no mcp server with server_id %q", id)
		}
	}
	writeJSON(w, http.StatusOK, views)
	return nil
}

// metricsHandler serves the Prometheus registry. Admission decides who may reach it.
func (s *Server) metricsHandler() http.Handler {
	return promhttp.HandlerFor(s.metrics.registry, promhttp.HandlerOpts{Registry: s.metrics.registry})
}

// restTool is a tool in LiteLLM's REST listing shape.
type restTool struct {
	Name        string         `json:"name"`
	Description string         `json:"description"`
	InputSchema any            `json:"inputSchema"`
	Annotations any            `json:"annotations,omitempty"`
	MCPInfo     map[string]any `json:"mcp_info"`
}

// toolsResponse is LiteLLM's list-tools response.
type toolsResponse struct {
	Tools          []restTool `json:"tools"`
	Error          *string    `json:"error"`
	Message        string     `json:"message"`
	MissingServers []string   `json:"missing_servers,omitempty"`
}

// serversParam reads server_id/server_name query parameters (repeated or comma
// separated) and resolves ids to names.
func (s *Server) serversParam(r *http.Request) ([]string, error) {
	q := r.URL.Query()
	var out []string
	reg := s.reg.Load()
	for _, key := range []string{"server_id", "server_ids", "server_name"} {
		for _, v := range q[key] {
			for _, id := range strings.Split(v, ",") {
				id = strings.TrimSpace(id)
				if id == "" {
					continue
				}
				srv := reg.byID[id]
				if srv == nil {
					srv = reg.byName[id]
				}
				if srv == nil {
					return nil, errorf(http.StatusNotFound, "not_found_error", key, "no mcp server %q", id)
				}
				out = append(out, srv.Name)
			}
		}
	}
	return out, nil
}

// listTools is GET /v1/mcp/tools and GET /mcp-rest/tools/list: the caller's tools, as
// tools/list on /mcp shows them (same network scope and x-mcp-toolset-id narrowing).
func (s *Server) listTools(w http.ResponseWriter, r *http.Request) error {
	r, err := s.identityRequest(r)
	if err != nil {
		return err
	}
	servers, err := s.serversParam(r)
	if err != nil {
		return err
	}
	tools, missing, err := s.fed.ListTools(r.Context(), servers)
	if errors.Is(err, federation.ErrUnknownServer) {
		return &Error{Status: http.StatusNotFound, Type: "not_found_error", Param: "server_id", Message: err.Error(), Err: err}
	} else if err != nil {
		return fmt.Errorf("list tools: %w", err)
	}
	reg := s.reg.Load()
	resp := toolsResponse{Tools: []restTool{}, Message: "Successfully retrieved tools"}
	for _, t := range tools {
		info := map[string]any{"server_name": t.Server, "original_name": t.Original}
		if srv := reg.byName[t.Server]; srv != nil {
			info["server_id"] = srv.ID
		}
		rt := restTool{Name: t.Tool.Name, Description: t.Tool.Description, MCPInfo: info}
		if t.Tool.RawInputSchema != nil {
			rt.InputSchema = t.Tool.RawInputSchema
		} else {
			rt.InputSchema = t.Tool.InputSchema
		}
		if t.Tool.Annotations != (mcp.ToolAnnotation{}) {
			rt.Annotations = t.Tool.Annotations
		}
		resp.Tools = append(resp.Tools, rt)
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		msg := "these servers did not answer in time: " + strings.Join(missing, ", ")
		resp.Error, resp.Message, resp.MissingServers = &msg, msg, missing
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

func (s *Server) restListTools(w http.ResponseWriter, r *http.Request) error {
	return s.listTools(w, r)
}

// callRequest is the body of POST /mcp-rest/tools/call.
type callRequest struct {
	Name       string         `json:"name"`
	Arguments  map[string]any `json:"arguments"`
	ServerName string         `json:"server_name"`
	ServerID   string         `json:"server_id"`
}

// restCallTool is POST /mcp-rest/tools/call: call a tool by its federated name, or by
// server_name/server_id and the upstream tool name (its federated name works there too).
// The caller's permissions, network scope and x-mcp-toolset-id apply as on /mcp: a tool
// it does not see is a 404, like one that does not exist.
func (s *Server) restCallTool(w http.ResponseWriter, r *http.Request) error {
	r, err := s.identityRequest(r)
	if err != nil {
		return err
	}
	var req callRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if req.Name == "" {
		return badRequest("name", "name is required")
	}
	server := req.ServerName
	if req.ServerID != "" {
		srv := s.reg.Load().byID[req.ServerID]
		if srv == nil {
			return errorf(http.StatusNotFound, "not_found_error", "server_id", "no mcp server with server_id %q", req.ServerID)
		}
		if server != "" && server != srv.Name {
			return badRequest("server_name", "server_name %q does not match server_id %q", server, req.ServerID)
		}
		server = srv.Name
	}
	if server != "" && s.reg.Load().byName[server] == nil {
		return errorf(http.StatusNotFound, "not_found_error", "server_name", "no mcp server %q", server)
	}
	if req.Arguments == nil {
		req.Arguments = map[string]any{}
	}
	res, err := s.fed.CallServerTool(upstream.WithCallerHeaders(r.Context(), r.Header), server, req.Name, req.Arguments)
	if err != nil {
		var he *Error
		switch {
		case errors.As(err, &he):
			return err
		case errors.Is(err, federation.ErrUnknownTool):
			return &Error{Status: http.StatusNotFound, Type: "not_found_error", Param: "name", Message: err.Error(), Err: err}
		case errors.Is(err, federation.ErrUnknownServer):
			param := "server_name"
			if req.ServerID != "" {
				param = "server_id"
			}
			return &Error{Status: http.StatusNotFound, Type: "not_found_error", Param: param, Message: err.Error(), Err: err}
		case errors.Is(err, upstream.ErrUnknownServer):
			return &Error{Status: http.StatusNotFound, Type: "not_found_error", Param: "name", Message: err.Error(), Err: err}
		case errors.Is(err, context.DeadlineExceeded):
			return &Error{Status: http.StatusGatewayTimeout, Param: "name", Message: fmt.Sprintf("tool %q timed out", req.Name), Err: err}
		}
		return &Error{Status: http.StatusBadGateway, Param: "name", Message: fmt.Sprintf("tool %q: %v", req.Name, err), Err: err}
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}
