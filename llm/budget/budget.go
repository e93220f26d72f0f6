package budget

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/toolgate/toolgate/store"
)

// Store is the persistence the budget core needs: the reservation and reset subset of
// store.BudgetStore. Implementations must be safe for concurrent use and must make Reserve
// atomic across processes sharing the database (see store.BudgetStore for the semantics).
type Store interface {
	Reserve(ctx context.Context, id string, refs []store.BudgetRef, amount float64, expiresAt time.Time) error
	Settle(ctx context.Context, id string, refs []store.BudgetRef, actual float64) error
	ReleaseExpired(ctx context.Context, now time.Time) (int, error)
	Budgets(ctx context.Context, refs []store.BudgetRef) ([]*store.Budget, error)
	DueBudgets(ctx context.Context, now time.Time) ([]*store.Budget, error)
	ResetBudget(ctx context.Context, ref store.BudgetRef, expect time.Time, next time.Time) (bool, error)
	AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
}

// ExceededError reports that a reservation did not fit a budget. Callers test for it with
// errors.As; its message names the budget in LiteLLM's words.
type ExceededError struct {
	Scope     store.BudgetScope
	ID        string
	MaxBudget float64
	Spend     float64
	Reserved  float64
}

func (e *ExceededError) Error() string {
	return fmt.Sprintf("Budget has been exceeded! %s=%s Current cost: %g, Max budget: %g",
		scopeLabel(e.Scope), e.ID, dollars(e.Spend+e.Reserved), dollars(e.MaxBudget))
}

// dollars rounds away float noise (0.8099999999999999) for messages, keeping nine
// decimals, far below any price.
func dollars(v float64) float64 { return math.Round(v*1e9) / 1e9 }

func scopeLabel(s store.BudgetScope) string {
	switch s {
	case store.BudgetKey:
		return "Key"
	case store.BudgetUser:
		return "User"
	case store.BudgetTeam:
		return "Team"
	case store.BudgetTeamMember:
		return "TeamMember"
	case store.BudgetOrg:
		return "Organization"
	case store.BudgetEndUser:
		return "EndUser"
	case store.BudgetTag:
		return "Tag"
	case store.BudgetKeyModel:
		return "KeyModel"
	case store.BudgetTeamModel:
		return "TeamModel"
	}
	return string(s)
}

// Config configures a Manager. Only Store is required.
type Config struct {
	// Store persists budgets and reservations. Required.
	Store Store
	// Logger receives background errors. If nil, logs are discarded.
	Logger *slog.Logger
	// ReservationTTL is how long an unsettled reservation holds budget before the sweeper
	// releases it (a crashed replica's reservations). If zero, 15 minutes.
	ReservationTTL time.Duration
	// SweepInterval is how often expired reservations are released. If zero, 1 minute.
	SweepInterval time.Duration
	// ResetInterval is how often due budgets are reset. If zero, 1 minute.
	ResetInterval time.Duration
	// Holder names this replica for the reset lease. If empty, a random ID.
	Holder string
	// AlertURL receives a POST with a JSON body when a budget's spend first crosses its
	// soft_budget in a budget period. If empty, no alerts are sent.
	AlertURL string
	// HTTPClient sends alerts. If nil, a client with a 10-second timeout.
	HTTPClient *http.Client
	// Now returns the current time. If nil, time.Now.
	Now func() time.Time
	// LeaseFor, when positive, turns on leases (see lease.go): calls are admitted in memory
	// against budget reserved in the store in larger amounts, and a lease settles at most
	// LeaseFor after it was taken, once its calls have ended. Spend then reaches the store
	// up to LeaseFor late. If zero, every call is reserved and settled in the store.
	LeaseFor time.Duration
	// OnExceeded, if not nil, is called with every refusal Reserve returns.
	OnExceeded func(*ExceededError)
}

// closeWait bounds how long Close waits for calls still running on leases.
const closeWait = time.Minute

// ResetLease is the lease name the reset loop holds while it runs.
const ResetLease = "budget-reset"

// Manager reserves, commits and releases spend against budgets, resets budgets when their
// period ends and sends soft-budget alerts. It is safe for concurrent use.
type Manager struct {
	cfg    Config
	st     Store
	log    *slog.Logger
	now    func() time.Time
	client *http.Client

	mu      sync.Mutex
	alerted map[string]bool // scope/id/period already alerted

	// limited remembers, for a while, chains of refs found to have a max budget, so that
	// their calls go straight to the store's reservation (see Reserve). Only that answer is
	// remembered: a stale entry costs one unneeded reservation, never an unchecked call.
	limited  sync.Map // refsKey -> time.Time (until)
	nlimited atomic.Int64
	cancel   context.CancelFunc
	wg       sync.WaitGroup

	lmu       sync.Mutex
	open      map[string]*lease        // chain -> the lease taking its calls
	taking    map[string]chan struct{} // chain -> closed when a lease being taken is ready
	all       map[*lease]struct{}      // leases not yet settled
	nextCalls map[string]int           // chain -> calls' worth its next lease holds
	settling  sync.WaitGroup
}

// New validates cfg and returns a Manager. It does no I/O; call Start to run the background
// loops.
func New(cfg Config) (*Manager, error) {
	if cfg.Store == nil {
		return nil, errors.New("budget: Config.Store is required")
	}
	if cfg.ReservationTTL <= 0 {
		cfg.ReservationTTL = 15 * time.Minute
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = time.Minute
	}
	if cfg.ResetInterval <= 0 {
		cfg.ResetInterval = time.Minute
	}
	if cfg.Holder == "" {
		cfg.Holder = NewID()
	}
	m := &Manager{cfg: cfg, st: cfg.Store, log: cfg.Logger, now: cfg.Now, client: cfg.HTTPClient, alerted: map[string]bool{},
		open: map[string]*lease{}, taking: map[string]chan struct{}{}, all: map[*lease]struct{}{}, nextCalls: map[string]int{}}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if m.now == nil {
		m.now = time.Now
	}
	if m.client == nil {
		m.client = &http.Client{Timeout: 10 * time.Second}
	}
	return m, nil
}

// Start runs the expired-reservation sweeper and the reset loop until Close. The reset loop
// acts only while this replica holds the ResetLease, so one replica resets at a time.
func (m *Manager) Start() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	m.wg.Add(2)
	go m.loop(ctx, m.cfg.SweepInterval, m.Sweep)
	go m.loop(ctx, m.cfg.ResetInterval, m.ResetDue)
}

// Close settles every lease (waiting up to a minute for the calls still running on them), stops the
// background loops and waits for them and for pending alerts. Calls must not be admitted
// during or after Close.
func (m *Manager) Close() error {
	ctx, stop := context.WithTimeout(context.Background(), closeWait)
	defer stop()
	err := m.Flush(ctx)
	if err != nil {
		m.log.Error("budget leases still had calls running at close; their spend is not recorded", "err", err)
	}
	m.settling.Wait()
	m.mu.Lock()
	cancel := m.cancel
	m.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	m.wg.Wait()
	return err
}

func (m *Manager) loop(ctx context.Context, every time.Duration, f func(context.Context) error) {
	defer m.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := f(ctx); err != nil && ctx.Err() == nil {
			m.log.Warn("budget background task", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Sweep releases reservations that expired without being settled.
func (m *Manager) Sweep(ctx context.Context) error {
	n, err := m.st.ReleaseExpired(ctx, m.now())
	if err != nil {
		return fmt.Errorf("release expired reservations: %w", err)
	}
	if n > 0 {
		m.log.Info("released expired budget reservations", "count", n)
	}
	return nil
}

// ResetDue resets every budget whose period has ended, if this replica holds the reset
// lease. Each reset is a compare-and-set, so a replica that lost the lease mid-run cannot
// reset a budget twice.
func (m *Manager) ResetDue(ctx context.Context) error {
	ok, err := m.st.AcquireLease(ctx, ResetLease, m.cfg.Holder, 2*m.cfg.ResetInterval+30*time.Second)
	if err != nil {
		return fmt.Errorf("acquire reset lease: %w", err)
	}
	if !ok {
		return nil
	}
	now := m.now()
	due, err := m.st.DueBudgets(ctx, now)
	if err != nil {
		return fmt.Errorf("list due budgets: %w", err)
	}
	var errs []error
	for _, b := range due {
		if b.ResetAt == nil || b.Duration == "" {
			continue
		}
		next, err := NextReset(b.Duration, *b.ResetAt, now)
		if err != nil {
			errs = append(errs, fmt.Errorf("budget %s %s: %w", b.Scope, b.ID, err))
			continue
		}
		if _, err := m.st.ResetBudget(ctx, b.BudgetRef, *b.ResetAt, next); err != nil {
			errs = append(errs, fmt.Errorf("reset budget %s %s: %w", b.Scope, b.ID, err))
		}
	}
	return errors.Join(errs...)
}

// Reservation is budget held for one call. Exactly one of Commit or Release takes effect;
// later calls are no-ops. It is safe for concurrent use.
type Reservation struct {
	m      *Manager
	ID     string
	Refs   []store.BudgetRef
	Amount float64
	// Held reports whether the amount is held in the store. It is false when no budget in
	// Refs had a max budget: nothing could be refused, so nothing was held, and Commit only
	// adds the spend.
	Held  bool
	once  sync.Once
	lease *lease // the lease holding Amount, if any
}

// maxLimited bounds the chains Manager remembers.
const maxLimited = 4096

// limitedFor is how long a chain found to have a max budget skips the read in Reserve.
const limitedFor = time.Minute

// Reserve holds amount on every budget in refs at once. If any of them cannot take it,
// nothing is held and the error is an *ExceededError naming the first such budget. With no
// refs it returns a Reservation that does nothing.
//
// When no budget in refs has a max budget, nothing is held (Held is false): a read of the
// budgets replaces the store's reservation, which is a write. A max budget set after that
// read applies from the next call on, as if the call had been admitted just before.
//
// With Config.LeaseFor set, amount is held in memory against a lease the Manager holds in
// the store for refs (see lease.go), and Held is true.
func (m *Manager) Reserve(ctx context.Context, refs []store.BudgetRef, amount float64) (*Reservation, error) {
	if amount < 0 {
		amount = 0
	}
	r := &Reservation{m: m, ID: NewID(), Refs: dedupe(refs), Amount: amount}
	if len(r.Refs) == 0 {
		return r, nil
	}
	key := refsKey(r.Refs)
	if m.cfg.LeaseFor > 0 {
		return m.reserveLeased(ctx, r, key)
	}
	now := m.now()
	if until, ok := m.limited.Load(key); !ok || now.After(until.(time.Time)) {
		bs, err := m.st.Budgets(ctx, r.Refs)
		if err != nil {
			return nil, fmt.Errorf("read budgets: %w", err)
		}
		if !anyLimit(bs) {
			m.limited.Delete(key)
			return r, nil
		}
		if m.nlimited.Add(1) > maxLimited {
			m.limited.Clear() // many distinct chains (end users, tags): start over
			m.nlimited.Store(0)
		}
		m.limited.Store(key, now.Add(limitedFor))
	}
	if err := m.storeReserve(ctx, r); err != nil {
		return nil, err
	}
	return r, nil
}

// Commit settles the reservation at actual: the held amount is released and actual is
// added to spend on every budget. Committing a reservation with no refs does nothing.
func (r *Reservation) Commit(ctx context.Context, actual float64) error {
	if actual < 0 {
		actual = 0
	}
	var err error
	r.once.Do(func() {
		if len(r.Refs) == 0 || (!r.Held && actual == 0) {
			return
		}
		if r.lease != nil {
			r.m.commitLeased(r, actual)
			return
		}
		// Settle must happen even if the caller's context is gone (client disconnect).
		ctx = context.WithoutCancel(ctx)
		if e := r.m.st.Settle(ctx, r.ID, r.Refs, actual); e != nil {
			err = fmt.Errorf("settle budget reservation: %w", e)
			return
		}
		if actual > 0 && r.m.cfg.AlertURL != "" {
			r.m.wg.Add(1)
			go func() {
				defer r.m.wg.Done()
				r.m.checkSoft(ctx, r.Refs)
			}()
		}
	})
	return err
}

// Release gives the held amount back without charging anything.
func (r *Reservation) Release(ctx context.Context) error { return r.Commit(ctx, 0) }

// Alert is the JSON body POSTed to Config.AlertURL when spend crosses a soft budget. Its
// event, event_group, event_message, spend, max_budget, user_id and team_id fields are
// those of LiteLLM's budget webhook, so a receiver written for LiteLLM reads it too.
type Alert struct {
	Event        string            `json:"event"`       // "soft_budget_crossed"
	EventGroup   string            `json:"event_group"` // the scope: key, user, team, team_member, org, end_user, tag
	EventMessage string            `json:"event_message"`
	Scope        store.BudgetScope `json:"scope"`
	ID           string            `json:"id"`
	UserID       string            `json:"user_id,omitempty"` // for a user budget
	TeamID       string            `json:"team_id,omitempty"` // for a team budget
	Spend        float64           `json:"spend"`
	SoftBudget   float64           `json:"soft_budget"`
	MaxBudget    *float64          `json:"max_budget"`
	ResetAt      *time.Time        `json:"reset_at,omitempty"`
}

// scopeLabels name budget scopes in alert messages.
var scopeLabels = map[store.BudgetScope]string{
	store.BudgetKey: "Key", store.BudgetUser: "User", store.BudgetTeam: "Team", store.BudgetTeamMember: "Team Member",
	store.BudgetOrg: "Organization", store.BudgetEndUser: "End User", store.BudgetTag: "Tag",
}

// softAlert is the alert for b crossing its soft budget.
func softAlert(b *store.Budget) Alert {
	label := scopeLabels[b.Scope]
	if label == "" {
		label = string(b.Scope)
	}
	a := Alert{Event: "soft_budget_crossed", EventGroup: string(b.Scope), EventMessage: label + " Budget: Soft Budget Crossed",
		Scope: b.Scope, ID: b.ID, Spend: b.Spend, SoftBudget: *b.SoftBudget, MaxBudget: b.MaxBudget, ResetAt: b.ResetAt}
	switch b.Scope {
	case store.BudgetUser:
		a.UserID = b.ID
	case store.BudgetTeam:
		a.TeamID = b.ID
	}
	return a
}

func (m *Manager) checkSoft(ctx context.Context, refs []store.BudgetRef) {
	bs, err := m.st.Budgets(ctx, refs)
	if err != nil {
		m.log.Warn("read budgets for soft alert", "err", err)
		return
	}
	for _, b := range bs {
		if b.SoftBudget == nil || b.Spend < *b.SoftBudget {
			continue
		}
		period := "never"
		if b.ResetAt != nil {
			period = b.ResetAt.UTC().Format(time.RFC3339)
		}
		k := string(b.Scope) + "\x00" + b.ID + "\x00" + period
		m.mu.Lock()
		done := m.alerted[k]
		m.alerted[k] = true
		m.mu.Unlock()
		if done {
			continue
		}
		if err := m.post(ctx, softAlert(b)); err != nil {
			m.log.Warn("soft budget alert", "scope", b.Scope, "id", b.ID, "err", err)
		}
	}
}

func (m *Manager) post(ctx context.Context, a Alert) error {
	body, err := json.Marshal(a)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.cfg.AlertURL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := m.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("alert webhook answered %s", resp.Status)
	}
	return nil
}

func anyLimit(bs []*store.Budget) bool {
	for _, b := range bs {
		if b.MaxBudget != nil {
			return true
		}
	}
	return false
}

func refsKey(refs []store.BudgetRef) string {
	var sb strings.Builder
	for _, r := range refs {
		sb.WriteString(string(r.Scope))
		sb.WriteByte(0)
		sb.WriteString(r.ID)
		sb.WriteByte(0)
	}
	return sb.String()
}

func dedupe(refs []store.BudgetRef) []store.BudgetRef {
	out := make([]store.BudgetRef, 0, len(refs))
	for _, r := range refs {
		if r.ID == "" || r.Scope == "" {
			continue
		}
		dup := false
		for _, o := range out {
			if o == r {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, r)
		}
	}
	return out
}

// NewID returns a new request or reservation ID: a time-ordered UUID (version 7), so that
// rows keyed by it are appended to their index rather than scattered through it.
func NewID() string { return uuid.Must(uuid.NewV7()).String() }

// ParseDuration parses a LiteLLM budget_duration: a positive integer followed by s, m, h,
// d, w or mo ("30s", "30m", "24h", "30d", "1w", "1mo"). Months are calendar months and are
// reported with months > 0 and d == 0.
func ParseDuration(s string) (d time.Duration, months int, err error) {
	s = strings.TrimSpace(s)
	unit := strings.TrimLeft(s, "0123456789")
	n, err := strconv.Atoi(s[:len(s)-len(unit)])
	if err != nil || n <= 0 {
		return 0, 0, fmt.Errorf("budget duration %q: want a positive number and a unit (s, m, h, d, w, mo)", s)
	}
	switch unit {
	case "s":
		return time.Duration(n) * time.Second, 0, nil
	case "m":
		return time.Duration(n) * time.Minute, 0, nil
	case "h":
		return time.Duration(n) * time.Hour, 0, nil
	case "d":
		return time.Duration(n) * 24 * time.Hour, 0, nil
	case "w":
		return time.Duration(n) * 7 * 24 * time.Hour, 0, nil
	case "mo":
		return 0, n, nil
	}
	return 0, 0, fmt.Errorf("budget duration %q: unknown unit %q", s, unit)
}

// NextReset returns the first reset time after now in the series that starts at from and
// steps by duration. Identity code uses NextReset(duration, now, now) for a new budget.
func NextReset(duration string, from, now time.Time) (time.Time, error) {
	d, months, err := ParseDuration(duration)
	if err != nil {
		return time.Time{}, err
	}
	next := from
	if months > 0 {
		for !next.After(now) {
			next = next.AddDate(0, months, 0)
		}
		return next, nil
	}
	if !next.After(now) {
		steps := now.Sub(next)/d + 1
		next = next.Add(steps * d)
	}
	return next, nil
}
