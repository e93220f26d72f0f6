package federation

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/toolgate/toolgate/gateway/upstream"
)

// How the MCP side works.
//
// One mcp-go MCPServer serves every route. It holds a single internal tool,
// prompt and resource (named f.dispatch); everything visible comes from the
// hooks below, which read the request's scope from the context (put there by
// Handler) and replace list results with the caller's view, and rewrite the
// name of a call, prompt get or resource read that resolves for the caller
// to the internal one, recording the resolved target in the request state.
// A name that does not resolve is left alone, so mcp-go answers it the
// standard way (-32602 "tool 'x' not found"). Per-route views therefore cost
// nothing per route, and authorization happens in exactly one place per kind
// (resolveTool/listTools share allowTool).

// reqState is per HTTP request (one JSON-RPC message).
type reqState struct {
	scope    scope
	tool     *toolRef
	toolName string // the name tool was called by
	prompt   *toolRef
	resource *toolRef
}

type stateKey struct{}

func withState(ctx context.Context, st *reqState) context.Context {
	return context.WithValue(ctx, stateKey{}, st)
}

// stateFrom returns the request state; without one (never through Handler)
// the scope is empty, so nothing is visible.
func stateFrom(ctx context.Context) *reqState {
	if st, ok := ctx.Value(stateKey{}).(*reqState); ok {
		return st
	}
	return &reqState{scope: scope{servers: []string{}}}
}

var errNotResolved = errors.New("federation: request did not resolve")

func (f *Federation) buildMCP() {
	h := &server.Hooks{}
	if on := f.cfg.OnSession; on != nil {
		h.AddOnRegisterSession(func(context.Context, server.ClientSession) { on(1) })
		h.AddOnUnregisterSession(func(context.Context, server.ClientSession) { on(-1) })
	}
	h.AddAfterInitialize(func(ctx context.Context, _ any, _ *mcp.InitializeRequest, res *mcp.InitializeResult) {
		if sc := stateFrom(ctx).scope; sc.single != "" {
			res.ServerInfo.Name = sc.single
			if st := f.reg.Load().byName[sc.single]; st != nil && st.cfg.Description != "" {
				res.Instructions = st.cfg.Description
			}
		}
	})
	h.AddAfterListTools(func(ctx context.Context, _ any, _ *mcp.ListToolsRequest, res *mcp.ListToolsResult) {
		tools, missing, need := f.listTools(ctx, stateFrom(ctx).scope)
		res.Tools = f.shownTools(ctx, tools)
		res.NextCursor = ""
		res.Meta = authMeta(missingMeta(res.Meta, missing), need)
	})
	h.AddBeforeCallTool(func(ctx context.Context, _ any, req *mcp.CallToolRequest) {
		st := stateFrom(ctx)
		if ref, ok := f.resolveTool(ctx, st.scope, req.Params.Name); ok {
			st.tool, st.toolName = &ref, req.Params.Name
			req.Params.Name = f.dispatch
		}
	})
	h.AddAfterListPrompts(func(ctx context.Context, _ any, _ *mcp.ListPromptsRequest, res *mcp.ListPromptsResult) {
		prompts, missing, need := f.listPrompts(ctx, stateFrom(ctx).scope)
		res.Prompts = prompts
		if res.Prompts == nil {
			res.Prompts = []mcp.Prompt{}
		}
		res.NextCursor = ""
		res.Meta = authMeta(missingMeta(res.Meta, missing), need)
	})
	h.AddBeforeGetPrompt(func(ctx context.Context, _ any, req *mcp.GetPromptRequest) {
		st := stateFrom(ctx)
		if ref, ok := f.resolvePrompt(ctx, st.scope, req.Params.Name); ok {
			st.prompt = &ref
			req.Params.Name = f.dispatch
		}
	})
	h.AddAfterListResources(func(ctx context.Context, _ any, _ *mcp.ListResourcesRequest, res *mcp.ListResourcesResult) {
		resources, missing, need := f.listResources(ctx, stateFrom(ctx).scope)
		res.Resources = resources
		if res.Resources == nil {
			res.Resources = []mcp.Resource{}
		}
		res.NextCursor = ""
		res.Meta = authMeta(missingMeta(res.Meta, missing), need)
	})
	h.AddAfterListResourceTemplates(func(ctx context.Context, _ any, _ *mcp.ListResourceTemplatesRequest, res *mcp.ListResourceTemplatesResult) {
		templates, missing, need := f.listTemplates(ctx, stateFrom(ctx).scope)
		res.ResourceTemplates = templates
		if res.ResourceTemplates == nil {
			res.ResourceTemplates = []mcp.ResourceTemplate{}
		}
		res.NextCursor = ""
		res.Meta = authMeta(missingMeta(res.Meta, missing), need)
	})
	h.AddBeforeReadResource(func(ctx context.Context, _ any, req *mcp.ReadResourceRequest) {
		st := stateFrom(ctx)
		if ref, ok := f.resolveURI(ctx, st.scope, req.Params.URI); ok {
			st.resource = &ref
			req.Params.URI = "toolgate-internal://" + f.dispatch
		}
	})

	h.AddOnRequestInitialization(f.subscribeHook)
	h.AddOnUnregisterSession(func(_ context.Context, sess server.ClientSession) {
		// An SSE session ends with its stream; a streamable HTTP one may
		// reopen its GET stream, and ends on DELETE or expiry (sessions.onEnd).
		f.sessionEnded(sess.SessionID(), true)
	})
	h.AddAfterDiscover(func(ctx context.Context, _ any, _ *mcp.DiscoverRequest, res *mcp.DiscoverResult) {
		// Resource subscriptions are relayed for 2025-era sessions
		// (resources/subscribe); 2026-07-28 subscriptions/listen filters
		// naming resources are not, so they are not advertised there.
		if r := res.Capabilities.Resources; r != nil && r.Subscribe {
			cp := *r
			cp.Subscribe = false
			res.Capabilities.Resources = &cp
		}
		if sc := stateFrom(ctx).scope; sc.single != "" {
			if st := f.reg.Load().byName[sc.single]; st != nil && st.cfg.Description != "" {
				res.Instructions = st.cfg.Description
			}
		}
	})
	h.AddOnSuccess(func(ctx context.Context, _ any, _ mcp.MCPMethod, _ any, result any) {
		// 2026-07-28 results name the server in _meta (mcp-go fills in the
		// gateway's own name when it is absent): on a single-server route,
		// that server's name, as initialize's serverInfo has it.
		sc := stateFrom(ctx).scope
		if sc.single == "" {
			return
		}
		if info := server.RequestProtocolInfoFromContext(ctx); info == nil || !info.Modern {
			return
		}
		if rm, ok := result.(mcp.ResultMetadata); ok {
			if meta := rm.EnsureResultMeta(); meta != nil {
				meta.SetServerInfo(mcp.Implementation{Name: sc.single, Version: f.cfg.Version})
			}
		}
	})

	s := server.NewMCPServer(f.cfg.Name, f.cfg.Version,
		server.WithToolCapabilities(true),
		server.WithResourceCapabilities(f.subscriber != nil, true),
		server.WithPromptCapabilities(true),
		server.WithLogging(),
		server.WithCompletions(),
		server.WithPromptCompletionProvider(completer{f}),
		server.WithResourceCompletionProvider(completer{f}),
		server.WithHooks(h),
		server.WithRecovery(),
	)
	s.AddTool(mcp.Tool{Name: f.dispatch, InputSchema: mcp.ToolInputSchema{Type: "object"}}, f.handleCall)
	s.AddPrompt(mcp.Prompt{Name: f.dispatch}, f.handlePrompt)
	s.AddResource(mcp.Resource{URI: "toolgate-internal://" + f.dispatch, Name: f.dispatch}, f.handleRead)
	f.mcp = s
}

// missingMeta notes servers that did not answer in a list result's _meta.
func missingMeta(m *mcp.Meta, missing []string) *mcp.Meta {
	if len(missing) == 0 {
		return m
	}
	if m == nil {
		m = &mcp.Meta{}
	}
	if m.AdditionalFields == nil {
		m.AdditionalFields = map[string]any{}
	}
	m.AdditionalFields[MetaMissing] = missing
	return m
}

func (f *Federation) handleCall(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	st := stateFrom(ctx)
	ref := st.tool
	if ref == nil {
		return nil, errNotResolved
	}
	ctx, end := f.traceServerCall(ctx, req.Params.Meta, st.toolName)
	up := mcp.CallToolRequest{}
	up.Params.Name = ref.original
	up.Params.Arguments = req.Params.Arguments
	up.Params.Meta = hopMeta(req.Params.Meta)
	res, err := f.call(ctx, *ref, up, f.observer(ctx))
	end(res, err)
	return res, err
}

// observer routes an upstream call's side traffic to the downstream client
// of ctx: progress and log notifications, sampling and elicitation requests
// (the latter only reach clients that can take server-initiated requests,
// i.e. 2025-era sessions).
func (f *Federation) observer(ctx context.Context) *upstream.Observer {
	return &upstream.Observer{
		OnNotification: func(n mcp.JSONRPCNotification) {
			params := make(map[string]any, len(n.Params.AdditionalFields)+1)
			for k, v := range n.Params.AdditionalFields {
				params[k] = v
			}
			if len(n.Params.Meta) > 0 {
				params["_meta"] = n.Params.Meta
			}
			if err := f.mcp.SendNotificationToClient(ctx, n.Method, params); err != nil {
				f.log.Debug("notification not delivered downstream", "method", n.Method, "err", err)
			}
		},
		Sampling: func(_ context.Context, r mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
			//lint:ignore SA1019 upstreams of the 2025 era still sample through the gateway
			return f.mcp.RequestSampling(ctx, r)
		},
		Elicitation: func(_ context.Context, r mcp.ElicitationRequest) (*mcp.ElicitationResult, error) {
			return f.mcp.RequestElicitation(ctx, r)
		},
	}
}

func (f *Federation) handlePrompt(ctx context.Context, req mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
	ref := stateFrom(ctx).prompt
	if ref == nil {
		return nil, errNotResolved
	}
	if ref.err != nil {
		return nil, ref.err
	}
	up := mcp.GetPromptRequest{}
	up.Params.Name = ref.original
	up.Params.Arguments = req.Params.Arguments
	up.Params.Meta = hopMeta(req.Params.Meta)
	return f.up.GetPrompt(ctx, ref.st.cfg.Name, up)
}

func (f *Federation) handleRead(ctx context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
	st := stateFrom(ctx)
	ref := st.resource
	if ref == nil {
		return nil, errNotResolved
	}
	up := mcp.ReadResourceRequest{}
	up.Params.URI = ref.original
	up.Params.Arguments = req.Params.Arguments
	up.Params.Meta = hopMeta(req.Params.Meta)
	res, err := f.up.ReadResource(ctx, ref.st.cfg.Name, up)
	if err != nil {
		return nil, err
	}
	if st.scope.single != "" {
		return res.Contents, nil
	}
	out := make([]mcp.ResourceContents, len(res.Contents))
	for i, c := range res.Contents {
		switch c := c.(type) {
		case mcp.TextResourceContents:
			c.URI = federatedURI(ref.st.cfg.Name, c.URI)
			out[i] = c
		case *mcp.TextResourceContents:
			cc := *c
			cc.URI = federatedURI(ref.st.cfg.Name, c.URI)
			out[i] = cc
		case mcp.BlobResourceContents:
			c.URI = federatedURI(ref.st.cfg.Name, c.URI)
			out[i] = c
		case *mcp.BlobResourceContents:
			cc := *c
			cc.URI = federatedURI(ref.st.cfg.Name, c.URI)
			out[i] = cc
		default:
			out[i] = c
		}
	}
	return out, nil
}

// hopMeta returns the request _meta to send upstream: the progress token and
// application keys, without the "io.modelcontextprotocol/" keys that belong
// to the downstream hop (protocol version, client info and capabilities of a
// 2026-07-28 request); the upstream connection sets its own.
func hopMeta(m *mcp.Meta) *mcp.Meta {
	if m == nil {
		return nil
	}
	out := &mcp.Meta{ProgressToken: m.ProgressToken}
	for k, v := range m.AdditionalFields {
		if strings.HasPrefix(k, "io.modelcontextprotocol/") {
			continue
		}
		if out.AdditionalFields == nil {
			out.AdditionalFields = make(map[string]any, len(m.AdditionalFields))
		}
		out.AdditionalFields[k] = v
	}
	if out.ProgressToken == nil && out.AdditionalFields == nil {
		return nil
	}
	return out
}

// completer forwards completion/complete for prompts and resource templates.
type completer struct{ f *Federation }

func (c completer) CompletePromptArgument(ctx context.Context, name string, arg mcp.CompleteArgument, cctx mcp.CompleteContext) (*mcp.Completion, error) {
	ref, ok := c.f.resolvePrompt(ctx, stateFrom(ctx).scope, name)
	if !ok {
		return nil, fmt.Errorf("prompt %q not found", name)
	}
	if ref.err != nil {
		return nil, ref.err
	}
	return c.f.complete(ctx, ref, mcp.PromptReference{Type: "ref/prompt", Name: ref.original}, arg, cctx)
}

func (c completer) CompleteResourceArgument(ctx context.Context, uri string, arg mcp.CompleteArgument, cctx mcp.CompleteContext) (*mcp.Completion, error) {
	ref, ok := c.f.resolveURI(ctx, stateFrom(ctx).scope, uri)
	if !ok {
		return nil, fmt.Errorf("resource %q not found", uri)
	}
	return c.f.complete(ctx, ref, mcp.ResourceReference{Type: "ref/resource", URI: ref.original}, arg, cctx)
}

func (f *Federation) complete(ctx context.Context, ref toolRef, r any, arg mcp.CompleteArgument, cctx mcp.CompleteContext) (*mcp.Completion, error) {
	req := mcp.CompleteRequest{}
	req.Params.Ref = r
	req.Params.Argument = arg
	req.Params.Context = cctx
	res, err := f.up.Complete(ctx, ref.st.cfg.Name, req)
	if err != nil {
		return nil, err
	}
	return &res.Completion, nil
}
