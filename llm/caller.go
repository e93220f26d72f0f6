package llm

import (
	"context"
	"slices"
	"strings"

	"github.com/toolgate/toolgate/llm/budget"
	"github.com/toolgate/toolgate/store"
)

// Caller is who makes an LLM request, as the gateway's admission decided. The gateway
// builds it from its principal and puts it in the request context with WithCaller.
type Caller struct {
	KeyID    string // virtual key ID ("" for the master key)
	KeyHash  string // hex SHA-256 of the key, recorded in spend logs
	KeyAlias string
	UserID   string
	TeamID   string
	OrgID    string
	Admin    bool // may manage models (/model/*) and read every spend log

	// Models lists the model names the key may call; TeamModels those its team may. An
	// empty list, "*" or "all-proxy-models" allows every model; "openai/*" allows names with
	// that prefix. Both lists must allow a model.
	Models     []string
	TeamModels []string

	// Budgets are charged for every call, e.g. the key, user, team, team member and org
	// budgets. The end-user budget (the body's "user") and tag budgets are added per request.
	Budgets []store.BudgetRef
	// ModelBudgets are the model names and "*"/"prefix/*" patterns the key caps
	// (model_max_budget): a call to a model one matches (a cap on an alias caps its
	// model) is also charged to BudgetKeyModel ModelCapID(KeyID, entry).
	ModelBudgets []string
	// TeamModelBudgets are the same for the team's caps, charged to BudgetTeamModel
	// ModelCapID(TeamID, entry).
	TeamModelBudgets []string
	// Limits are the rpm/tpm/max_parallel_requests rules of the key, user and team.
	Limits []budget.Rule

	// AllowClientSideCredentials lets the request carry api_base, api_key and the other
	// fields refused by request hygiene; api_base/api_key then override the deployment's.
	AllowClientSideCredentials bool

	// Tags are the key's and team's static tags, merged with the request's.
	Tags []string
}

type callerKey struct{}

// WithCaller returns a copy of ctx carrying c.
func WithCaller(ctx context.Context, c *Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// CallerFrom returns the caller in ctx, or nil.
func CallerFrom(ctx context.Context) *Caller {
	c, _ := ctx.Value(callerKey{}).(*Caller)
	return c
}

// MayUse reports whether c may call model.
func (c *Caller) MayUse(model string) bool {
	return allowed(c.Models, model) && allowed(c.TeamModels, model)
}

func allowed(list []string, model string) bool {
	if len(list) == 0 {
		return true
	}
	for _, m := range list {
		switch {
		case m == model, m == "*", m == "all-proxy-models":
			return true
		case strings.HasSuffix(m, "/*") && strings.HasPrefix(model, strings.TrimSuffix(m, "*")):
			return true
		}
	}
	return false
}

// mergeTags merges tag lists, keeping first occurrences in order and dropping empties.
func mergeTags(lists ...[]string) []string {
	var out []string
	for _, l := range lists {
		for _, t := range l {
			t = strings.TrimSpace(t)
			if t != "" && !slices.Contains(out, t) {
				out = append(out, t)
			}
		}
	}
	return out
}
