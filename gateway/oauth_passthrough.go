package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"

	"github.com/toolgate/toolgate/store"
)

// servePassthrough proxies a request on an oauth_passthrough server's own route to the
// upstream (LiteLLM's oauth_passthrough; outside the MCP authorization spec, which forbids
// token pass-through, so it is opt-in per server). The upstream's token travels in
// Authorization; whether it is sent is decided by forwardCallerAuthorization alone, and a
// toolgate key or gateway-issued token never leaves the gateway. The upstream speaks
// streamable HTTP; its sessions, streams and status codes reach the caller as they are,
// except that a 401 or 403 gets a WWW-Authenticate pointing at this route's metadata URL
// (served from the upstream's own document), so that the client discovers the upstream's
// authorization server through the gateway.
func (s *Server) servePassthrough(w http.ResponseWriter, r *http.Request, srv *store.MCPServer) {
	target, err := url.Parse(srv.URL)
	if err != nil {
		s.writeError(w, r, &Error{Status: http.StatusBadGateway, Type: "upstream_error",
			Message: fmt.Sprintf("server %q has an invalid URL", srv.Name), Err: err})
		return
	}
	if err := s.checkPassthroughTool(r, srv.Name); err != nil {
		s.refuse(w, r, classMCP, err)
		return
	}
	forward := s.forwardCallerAuthorization(r, srv.Name)
	authz := r.Header.Get("Authorization")
	challenge := s.challenge
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			out := pr.Out
			out.URL = &url.URL{Scheme: target.Scheme, Host: target.Host, Path: target.Path,
				RawPath: target.RawPath, RawQuery: target.RawQuery}
			if pr.In.URL.RawQuery != "" && target.RawQuery == "" {
				out.URL.RawQuery = pr.In.URL.RawQuery
			}
			out.Host = target.Host
			for _, h := range []string{"Authorization", "X-Toolgate-Api-Key", "X-Litellm-Api-Key", "Cookie",
				"Proxy-Authorization", "Forwarded", "Origin"} {
				out.Header.Del(h)
			}
			for k, v := range srv.StaticHeaders {
				if !strings.EqualFold(k, "Authorization") {
					out.Header.Set(k, v)
				}
			}
			if forward {
				out.Header.Set("Authorization", authz)
			}
		},
		Transport:     s.upstreamTransport(),
		FlushInterval: -1, // SSE responses stream
		ModifyResponse: func(resp *http.Response) error {
			resp.Header.Del("Set-Cookie")
			if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusForbidden {
				return nil
			}
			resp.Header.Set("WWW-Authenticate", relayChallenge(resp.Header.Get("WWW-Authenticate"), challenge, r))
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, req *http.Request, err error) {
			s.writeError(w, req, &Error{Status: http.StatusBadGateway, Type: "upstream_error",
				Message: fmt.Sprintf("MCP server %q is unreachable", srv.Name), Err: err})
		},
	}
	rp.ServeHTTP(w, r)
}

// upstreamTransport is the round tripper for pass-through requests: Config.HTTPClient's,
// else the default.
func (s *Server) upstreamTransport() http.RoundTripper {
	if s.cfg.HTTPClient != nil && s.cfg.HTTPClient.Transport != nil {
		return s.cfg.HTTPClient.Transport
	}
	return http.DefaultTransport
}

// relayChallenge returns the WWW-Authenticate value for an upstream 401/403 relayed to the
// caller: the upstream's parameters (error, scope, error_description) with resource_metadata
// replaced by the gateway's path-aware URL for the route, or the gateway's own challenge
// when the upstream sent none.
func relayChallenge(upstream string, challenge func(*http.Request) string, r *http.Request) string {
	own := ""
	if challenge != nil {
		own = challenge(r)
	}
	if !strings.HasPrefix(strings.ToLower(strings.TrimSpace(upstream)), "bearer") {
		return own
	}
	ownMeta := challengeParam(own, "resource_metadata")
	params := splitChallenge(strings.TrimSpace(upstream)[len("bearer"):])
	var b strings.Builder
	b.WriteString("Bearer ")
	n := 0
	add := func(k, v string) {
		if n > 0 {
			b.WriteString(", ")
		}
		n++
		b.WriteString(k + "=" + v)
	}
	if ownMeta != "" {
		add("resource_metadata", ownMeta)
	}
	for _, kv := range params {
		if strings.EqualFold(kv[0], "resource_metadata") {
			continue
		}
		add(kv[0], kv[1])
	}
	return b.String()
}

// splitChallenge splits the auth-params of a challenge into (name, raw value) pairs; quoted
// values keep their quotes.
func splitChallenge(s string) [][2]string {
	var out [][2]string
	for {
		s = strings.TrimLeft(s, " ,\t")
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			return out
		}
		name := strings.TrimSpace(s[:eq])
		s = strings.TrimLeft(s[eq+1:], " \t")
		var val string
		if strings.HasPrefix(s, `"`) {
			i := 1
			for i < len(s) && s[i] != '"' {
				if s[i] == '\\' {
					i++
				}
				i++
			}
			if i >= len(s) {
				return out
			}
			val, s = s[:i+1], s[i+1:]
		} else {
			j := strings.IndexByte(s, ',')
			if j < 0 {
				j = len(s)
			}
			val, s = strings.TrimSpace(s[:j]), s[j:]
		}
		out = append(out, [2]string{name, val})
	}
}

// challengeParam returns the raw (quoted) value of param in a challenge, or "".
func challengeParam(c, param string) string {
	if i := strings.IndexByte(c, ' '); i >= 0 {
		for _, kv := range splitChallenge(c[i:]) {
			if strings.EqualFold(kv[0], param) {
				return kv[1]
			}
		}
	}
	return ""
}

// checkPassthroughTool applies the caller's tool permissions to a tools/call sent to a
// pass-through server (a recognised caller only: an anonymous one has no toolgate identity
// and is judged by the upstream). It reads and restores the body.
func (s *Server) checkPassthroughTool(r *http.Request, server string) error {
	p := PrincipalFrom(r.Context())
	if r.Method != http.MethodPost || p == nil || p.Kind == KindAnonymous || p.Kind == KindMaster || r.Body == nil {
		return nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, s.cfg.MaxBodyBytes+1))
	if err != nil {
		return &Error{Status: http.StatusBadRequest, Type: "invalid_request", Message: "cannot read request body", Err: err}
	}
	if int64(len(body)) > s.cfg.MaxBodyBytes {
		return &Error{Status: http.StatusRequestEntityTooLarge, Type: "request_too_large",
			Message: fmt.Sprintf("request body exceeds %d bytes", s.cfg.MaxBodyBytes)}
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	var msg struct {
		Method string `json:"method"`
		Params struct {
			Name string `json:"name"`
		} `json:"params"`
	}
	if json.Unmarshal(body, &msg) != nil || msg.Method != "tools/call" {
		return nil
	}
	if !(authorizer{s}).AllowTool(r.Context(), server, msg.Params.Name) {
		return &Error{Status: http.StatusForbidden, Type: "permission_error", Param: "tool",
			Message: fmt.Sprintf("%s may not call tool %q on MCP server %q", p.subject(), msg.Params.Name, server)}
	}
	return nil
}
