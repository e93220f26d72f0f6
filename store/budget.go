package store

import (
	"context"
	"encoding/json"
	"net/url"
	"time"
)

// BudgetScope names the kind of entity a budget belongs to.
type BudgetScope string

// Budget scopes.
const (
	BudgetKey        BudgetScope = "key"         // ID: Key.ID
	BudgetUser       BudgetScope = "user"        // ID: User.ID
	BudgetTeam       BudgetScope = "team"        // ID: Team.ID
	BudgetTeamMember BudgetScope = "team_member" // ID: TeamID + "/" + UserID
	BudgetOrg        BudgetScope = "org"         // ID: Org.ID
	BudgetEndUser    BudgetScope = "end_user"    // ID: the request's "user" field
	BudgetTag        BudgetScope = "tag"         // ID: the tag
	BudgetKeyModel   BudgetScope = "key_model"   // ID: ModelCapID(Key.ID, model name or pattern)
	BudgetTeamModel  BudgetScope = "team_model"  // ID: ModelCapID(Team.ID, model name or pattern)
)

// ModelCapID is the budget ID of a key's or team's cap on one model (Limits.ModelMaxBudget).
// The owner's ID is escaped, so that its first "/" ends it: the caps of team "a" are never
// mistaken for those of team "a/b".
func ModelCapID(ownerID, model string) string { return url.PathEscape(ownerID) + "/" + model }

// BudgetRef identifies one budget.
type BudgetRef struct {
	Scope BudgetScope
	ID    string
}

// Budget is the spend state of one entity. Spend and Reserved are in US dollars.
type Budget struct {
	BudgetRef
	MaxBudget  *float64   // nil: no limit (spend is still tracked)
	SoftBudget *float64   // nil: no alert
	Duration   string     // e.g. "30d"; empty: never resets
	ResetAt    *time.Time // when the next reset is due; nil when Duration is empty
	Spend      float64    // committed spend since the last reset
	Reserved   float64    // sum of open reservations
	UpdatedAt  time.Time
}

// BudgetStore is the persistence side of llm/budget: atomic reservations against several
// budgets at once, settled after the call. It must hold across several gateway processes
// sharing one database.
type BudgetStore interface {
	// Budget returns one budget, or ErrNotFound.
	Budget(ctx context.Context, ref BudgetRef) (*Budget, error)
	// Budgets returns the budgets that exist among refs, in refs order; missing ones are omitted.
	Budgets(ctx context.Context, refs []BudgetRef) ([]*Budget, error)
	// UpsertBudgetLimits creates b's row if absent and sets MaxBudget, SoftBudget, Duration and
	// ResetAt. Spend and Reserved are left as they are.
	UpsertBudgetLimits(ctx context.Context, b *Budget) error
	// DeleteBudget removes a budget row. Missing: ErrNotFound.
	DeleteBudget(ctx context.Context, ref BudgetRef) error

	// Reserve atomically adds amount to Reserved on every ref (creating missing rows with no
	// limit) and records the reservation under id, expiring at expiresAt. If any ref has a
	// MaxBudget and Spend+Reserved+amount would exceed it, nothing changes and the error is a
	// *BudgetExceededError naming the first such budget in refs order. Two concurrent Reserve
	// calls never both succeed when only one fits. A duplicate id: ErrConflict.
	Reserve(ctx context.Context, id string, refs []BudgetRef, amount float64, expiresAt time.Time) error
	// Settle closes reservation id: subtracts its amount from Reserved and adds actual to Spend
	// on each of its refs, in one transaction. If the reservation no longer exists (it expired
	// and was released), actual is still added to Spend on refs; refs is ignored otherwise.
	Settle(ctx context.Context, id string, refs []BudgetRef, actual float64) error
	// ReleaseExpired releases reservations whose expiry is before now and returns how many.
	ReleaseExpired(ctx context.Context, now time.Time) (int, error)

	// DueBudgets returns budgets whose ResetAt is not after now.
	DueBudgets(ctx context.Context, now time.Time) ([]*Budget, error)
	// ResetBudget sets Spend to 0 and ResetAt to next, but only if ResetAt still equals
	// expect (compare-and-set). It reports whether it reset; a missing budget is not reset.
	ResetBudget(ctx context.Context, ref BudgetRef, expect time.Time, next time.Time) (bool, error)

	// AcquireLease takes or renews the named lease for holder until now+ttl. It succeeds when
	// the lease is free, expired or already held by holder, and reports whether holder has it.
	AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
}

// Call types recorded in the spend log.
const (
	CallCompletion      = "completion"
	CallEmbedding       = "embedding"
	CallImageGeneration = "image_generation"
	CallImageEdit       = "image_edit"
	// CallAnthropicMessages is a call to /v1/messages (Anthropic's Messages API), LiteLLM's
	// "anthropic_messages".
	CallAnthropicMessages = "anthropic_messages"
	// CallResponses is a call to /v1/responses (OpenAI's Responses API).
	CallResponses = "responses"
	// CallTextCompletion is a call to /v1/completions (legacy text completions), LiteLLM's
	// "text_completion".
	CallTextCompletion = "text_completion"
	CallMCPTool        = "mcp_tool_call"
)

// SpendLog is one row per LLM request or MCP tool call.
type SpendLog struct {
	RequestID        string // unique
	CallType         string // one of the Call* constants
	KeyID            string
	KeyHash          string
	KeyAlias         string
	UserID           string
	TeamID           string
	OrgID            string
	EndUser          string
	Model            string // LLM model name, or the namespaced tool for MCP calls
	MCPServer        string
	MCPTool          string
	PromptTokens     int64
	CompletionTokens int64
	TotalTokens      int64
	Spend            float64
	StartTime        time.Time
	EndTime          time.Time
	Status           string // "success" or "failure"
	Tags             []string
	Metadata         json.RawMessage
}

// SpendFilter selects spend logs. Zero fields match everything.
type SpendFilter struct {
	RequestID string
	KeyID     string
	UserID    string
	TeamID    string
	OrgID     string
	Start     time.Time // StartTime >= Start
	End       time.Time // StartTime < End
	Limit     int       // 0 means 1000
}

// SpendStore persists the spend log.
type SpendStore interface {
	// InsertSpendLogs writes logs in one transaction. Rows whose RequestID already exists are
	// skipped, so a retried batch never double-logs.
	InsertSpendLogs(ctx context.Context, logs []*SpendLog) error
	// SpendLogs returns matching rows, newest StartTime first.
	SpendLogs(ctx context.Context, f SpendFilter) ([]*SpendLog, error)
}

// Model is an LLM deployment added through the API (/model/new) in LiteLLM's model_list shape.
type Model struct {
	ID        string          // model_info.id; assigned by CreateModel when empty
	ModelName string          // the public name callers ask for; several deployments may share it
	Params    json.RawMessage // litellm_params without secrets
	// Credentials is the sealed JSON of the secret params (api_key and the like).
	Credentials []byte
	ModelInfo   json.RawMessage
	CreatedBy   string
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// ModelStore persists API-added LLM deployments.
type ModelStore interface {
	CreateModel(ctx context.Context, m *Model) error      // assigns ID when empty; duplicate ID: ErrConflict
	Model(ctx context.Context, id string) (*Model, error) // or ErrNotFound
	Models(ctx context.Context) ([]*Model, error)         // ordered by ModelName, then ID
	UpdateModel(ctx context.Context, m *Model) error      // all fields but CreatedBy, CreatedAt; unknown: ErrNotFound
	DeleteModel(ctx context.Context, id string) error     // unknown: ErrNotFound
}
