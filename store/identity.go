package store

import (
	"context"
	"time"
)

// User roles, in LiteLLM's spelling.
const (
	RoleProxyAdmin         = "proxy_admin"
	RoleProxyAdminViewer   = "proxy_admin_viewer"
	RoleInternalUser       = "internal_user"
	RoleInternalUserViewer = "internal_user_viewer"
)

// Team member roles.
const (
	TeamRoleAdmin = "admin"
	TeamRoleUser  = "user"
)

// ObjectPermission is LiteLLM's object_permission: what an identity may reach. An empty
// field means "inherit" (see toolsets for the exact rule); it never means "nothing".
type ObjectPermission struct {
	MCPServers         []string            `json:"mcp_servers,omitempty"`          // server IDs or names
	MCPAccessGroups    []string            `json:"mcp_access_groups,omitempty"`    // access group names
	MCPToolPermissions map[string][]string `json:"mcp_tool_permissions,omitempty"` // server ID or name -> tool names
	BlockedTools       []string            `json:"blocked_tools,omitempty"`        // "tool" or "server-tool"; always wins
	MCPToolsets        []string            `json:"mcp_toolsets,omitempty"`         // toolset IDs
	Models             []string            `json:"models,omitempty"`               // LLM model names
}

// Limits are the budget and rate fields of a key, user, team, team member or org. Nil
// pointers mean "no limit". The budget fields are mirrored in the identity's Budget row
// (see BudgetStore), which is the source of truth for spend.
type Limits struct {
	MaxBudget           *float64 `json:"max_budget,omitempty"`
	SoftBudget          *float64 `json:"soft_budget,omitempty"`
	BudgetDuration      string   `json:"budget_duration,omitempty"` // e.g. "30d", "1h"; empty: never resets
	RPMLimit            *int64   `json:"rpm_limit,omitempty"`
	TPMLimit            *int64   `json:"tpm_limit,omitempty"`
	MaxParallelRequests *int64   `json:"max_parallel_requests,omitempty"`
	// ModelMaxBudget caps, per model name or pattern, what a key or team spends on that
	// model (LiteLLM's model_max_budget; not read for users, orgs and team members). Each
	// cap is mirrored in a Budget row of scope BudgetKeyModel or BudgetTeamModel.
	ModelMaxBudget map[string]ModelBudget `json:"model_max_budget,omitempty"`
}

// ModelBudget is one model's cap in Limits.ModelMaxBudget, in LiteLLM's shape.
type ModelBudget struct {
	MaxBudget float64 `json:"budget_limit"`
	Duration  string  `json:"time_period,omitempty"` // e.g. "1d", "30d"; empty: never resets
}

// Key is a virtual key. The secret itself is never stored: only its SHA-256 (TokenHash).
type Key struct {
	ID         string // stable ID; assigned by CreateKey when empty. Budgets are keyed by it.
	TokenHash  string // hex SHA-256 of the secret; unique. Changes on regenerate.
	KeyName    string // display form of the secret, e.g. "sk-...a1b2"
	KeyAlias   string // unique when non-empty
	UserID     string
	TeamID     string
	OrgID      string
	Models     []string
	Expires    *time.Time
	Blocked    bool
	Metadata   map[string]any
	Tags       []string
	Permission ObjectPermission
	Limits     Limits

	// AllowClientSideCredentials lets this key send api_base/api_key in LLM requests.
	AllowClientSideCredentials bool

	Spend float64 // read-only: committed spend from the key's Budget row

	CreatedBy string // principal that created it; non-admins may edit only keys they created
	CreatedAt time.Time
	UpdatedAt time.Time
}

// KeyFilter selects keys. Zero fields match everything.
type KeyFilter struct {
	UserID    string
	TeamID    string
	OrgID     string
	CreatedBy string
	KeyAlias  string
	Limit     int // 0 means no limit
	Offset    int
}

// User is a person or service known to the gateway.
type User struct {
	ID         string // user_id; assigned by CreateUser when empty
	Email      string
	Role       string // one of the Role* constants; empty means RoleInternalUser
	OrgID      string
	Models     []string
	Metadata   map[string]any
	Permission ObjectPermission
	Limits     Limits
	Spend      float64 // read-only, from the Budget row
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// Team groups users and keys under shared permissions and budgets.
type Team struct {
	ID         string // team_id; assigned by CreateTeam when empty
	Alias      string
	OrgID      string
	Models     []string
	Blocked    bool
	Metadata   map[string]any
	Permission ObjectPermission
	Limits     Limits
	Spend      float64 // read-only, from the Budget row
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// TeamMember is a user's membership of a team.
type TeamMember struct {
	TeamID string
	UserID string
	Role   string // TeamRoleAdmin or TeamRoleUser
	Limits Limits // per-member budget inside the team (budget scope BudgetTeamMember)
	Spend  float64
}

// Org is an organization: the outermost grouping of teams.
type Org struct {
	ID         string // organization_id; assigned by CreateOrg when empty
	Alias      string
	Models     []string
	Metadata   map[string]any
	Permission ObjectPermission
	Limits     Limits
	Spend      float64 // read-only, from the Budget row
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// IdentityStore persists keys, users, teams, team members and orgs. Writes that carry Limits
// also create or update the identity's Budget row (same transaction); deletes remove it.
type IdentityStore interface {
	// CreateKey inserts k, assigning ID, CreatedAt, UpdatedAt. Duplicate TokenHash or
	// KeyAlias: ErrConflict.
	CreateKey(ctx context.Context, k *Key) error
	// Key returns the key with the given ID, or ErrNotFound.
	Key(ctx context.Context, id string) (*Key, error)
	// KeyByHash returns the key whose current TokenHash is hash, or whose previous hash is
	// hash and still inside its regenerate grace period (at now), or ErrNotFound.
	KeyByHash(ctx context.Context, hash string, now time.Time) (*Key, error)
	// KeyByAlias returns the key with that alias, or ErrNotFound.
	KeyByAlias(ctx context.Context, alias string) (*Key, error)
	// Keys returns matching keys ordered by CreatedAt, then ID.
	Keys(ctx context.Context, f KeyFilter) ([]*Key, error)
	// UpdateKey replaces the key with ID k.ID (all fields but TokenHash, KeyName, CreatedBy,
	// CreatedAt, Spend). Unknown: ErrNotFound; alias taken: ErrConflict.
	UpdateKey(ctx context.Context, k *Key) error
	// RegenerateKey sets a new TokenHash and KeyName on key id. The old hash keeps working
	// until graceUntil (no grace when graceUntil is not after now). Returns the updated key.
	RegenerateKey(ctx context.Context, id, newHash, newKeyName string, graceUntil time.Time) (*Key, error)
	// DeleteKey removes the key, its grace hashes and its Budget row. Unknown: ErrNotFound.
	DeleteKey(ctx context.Context, id string) error

	// CreateUser inserts u, assigning ID (when empty), CreatedAt and UpdatedAt, and setting an
	// empty Role to RoleInternalUser. Duplicate ID or non-empty Email: ErrConflict.
	CreateUser(ctx context.Context, u *User) error
	User(ctx context.Context, id string) (*User, error)            // or ErrNotFound
	Users(ctx context.Context, limit, offset int) ([]*User, error) // ordered by ID; limit 0: all
	// UpdateUser replaces the user with ID u.ID (all fields but CreatedAt and Spend).
	// Unknown: ErrNotFound; Email taken: ErrConflict.
	UpdateUser(ctx context.Context, u *User) error
	// DeleteUser removes the user, their team memberships, their keys and Budget rows.
	// Unknown: ErrNotFound.
	DeleteUser(ctx context.Context, id string) error

	CreateTeam(ctx context.Context, t *Team) error            // assigns ID when empty; duplicate ID: ErrConflict
	Team(ctx context.Context, id string) (*Team, error)       // or ErrNotFound
	Teams(ctx context.Context, orgID string) ([]*Team, error) // orgID "" means all; ordered by ID
	UpdateTeam(ctx context.Context, t *Team) error            // all fields but CreatedAt, Spend; unknown: ErrNotFound
	// DeleteTeam removes the team, its memberships, its keys and their Budget rows.
	// Unknown: ErrNotFound.
	DeleteTeam(ctx context.Context, id string) error

	// AddTeamMember adds m. Unknown team or user: ErrNotFound; already a member: ErrConflict.
	AddTeamMember(ctx context.Context, m *TeamMember) error
	// UpdateTeamMember replaces role and limits. Not a member: ErrNotFound.
	UpdateTeamMember(ctx context.Context, m *TeamMember) error
	// RemoveTeamMember removes the membership. Not a member: ErrNotFound.
	RemoveTeamMember(ctx context.Context, teamID, userID string) error
	// TeamMembers returns the members of a team ordered by UserID.
	TeamMembers(ctx context.Context, teamID string) ([]*TeamMember, error)
	// Memberships returns the teams a user belongs to, ordered by TeamID.
	Memberships(ctx context.Context, userID string) ([]*TeamMember, error)

	CreateOrg(ctx context.Context, o *Org) error      // assigns ID when empty; duplicate ID: ErrConflict
	Org(ctx context.Context, id string) (*Org, error) // or ErrNotFound
	Orgs(ctx context.Context) ([]*Org, error)         // ordered by ID
	UpdateOrg(ctx context.Context, o *Org) error      // all fields but CreatedAt, Spend; unknown: ErrNotFound
	// DeleteOrg removes the org and its Budget row. Unknown: ErrNotFound; teams still in it:
	// ErrConflict.
	DeleteOrg(ctx context.Context, id string) error
}

// ToolRef names one tool of one upstream server.
type ToolRef struct {
	ServerID string `json:"server_id"`
	ToolName string `json:"tool_name"`
}

// Toolset is a named set of server+tool pairs, granted through ObjectPermission.MCPToolsets.
type Toolset struct {
	ID          string // toolset_id; assigned by CreateToolset when empty
	Name        string // unique
	Description string
	Tools       []ToolRef
	CreatedBy   string
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// ToolsetStore persists toolsets.
type ToolsetStore interface {
	CreateToolset(ctx context.Context, t *Toolset) error              // assigns ID when empty; duplicate ID or Name: ErrConflict
	Toolset(ctx context.Context, id string) (*Toolset, error)         // or ErrNotFound
	ToolsetByName(ctx context.Context, name string) (*Toolset, error) // or ErrNotFound
	Toolsets(ctx context.Context) ([]*Toolset, error)                 // ordered by Name
	// UpdateToolset replaces Name, Description and Tools. Unknown: ErrNotFound; name taken:
	// ErrConflict.
	UpdateToolset(ctx context.Context, t *Toolset) error
	DeleteToolset(ctx context.Context, id string) error // unknown: ErrNotFound
}
