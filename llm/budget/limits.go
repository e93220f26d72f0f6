package budget

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/toolgate/toolgate/store"
)

// ScopeDeployment is the rate-limit scope of one LLM deployment (ID: model_info.id).
const ScopeDeployment store.BudgetScope = "deployment"

// Rule is the rate limits of one entity. Zero fields mean "no limit".
type Rule struct {
	Scope       store.BudgetScope
	ID          string
	RPM         int64 // requests per minute
	TPM         int64 // tokens per minute
	MaxParallel int64 // requests in flight
}

func (r Rule) empty() bool { return r.RPM <= 0 && r.TPM <= 0 && r.MaxParallel <= 0 }

// RuleFor builds the rule for one entity from its store.Limits. It reports false when l
// sets no rate limit.
func RuleFor(scope store.BudgetScope, id string, l store.Limits) (Rule, bool) {
	r := Rule{Scope: scope, ID: id}
	if l.RPMLimit != nil {
		r.RPM = *l.RPMLimit
	}
	if l.TPMLimit != nil {
		r.TPM = *l.TPMLimit
	}
	if l.MaxParallelRequests != nil {
		r.MaxParallel = *l.MaxParallelRequests
	}
	return r, id != "" && !r.empty()
}

// Limit kinds reported by LimitError.
const (
	LimitRPM      = "rpm"
	LimitTPM      = "tpm"
	LimitParallel = "max_parallel_requests"
)

// LimitError reports a request refused by a rate or parallel limit. It maps to 429 with
// Retry-After and the x-ratelimit-* headers (see SetHeaders).
type LimitError struct {
	Kind       string // LimitRPM, LimitTPM or LimitParallel
	Scope      store.BudgetScope
	ID         string
	Limit      int64
	RetryAfter time.Duration
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("Rate limit exceeded for %s %s: %s limit %d reached, retry after %ds",
		e.Scope, e.ID, e.Kind, e.Limit, retrySeconds(e.RetryAfter))
}

func retrySeconds(d time.Duration) int64 {
	s := int64(math.Ceil(d.Seconds()))
	if s < 1 {
		s = 1
	}
	return s
}

// SetHeaders sets Retry-After and the x-ratelimit-* headers for e on h.
func (e *LimitError) SetHeaders(h http.Header) {
	secs := strconv.FormatInt(retrySeconds(e.RetryAfter), 10)
	h.Set("Retry-After", secs)
	switch e.Kind {
	case LimitTPM:
		h.Set("x-ratelimit-limit-tokens", strconv.FormatInt(e.Limit, 10))
		h.Set("x-ratelimit-remaining-tokens", "0")
		h.Set("x-ratelimit-reset-tokens", secs+"s")
	default:
		h.Set("x-ratelimit-limit-requests", strconv.FormatInt(e.Limit, 10))
		h.Set("x-ratelimit-remaining-requests", "0")
		h.Set("x-ratelimit-reset-requests", secs+"s")
	}
}

// Limiter admits requests against rate rules. Implementations are safe for concurrent use;
// the in-process one counts per replica, the Redis one across replicas.
type Limiter interface {
	// Admit counts one request against every rule at once, or none of them: if any rule
	// refuses, the error is a *LimitError and nothing is counted. The returned Admission
	// must be finished with Done.
	Admit(ctx context.Context, rules []Rule) (*Admission, error)
}

// Admission is one admitted request. Done records its tokens (for tpm) and frees its
// parallel slot; only the first call has an effect.
type Admission struct {
	once sync.Once
	done func(tokens int64)

	// Headroom of the tightest rpm and tpm rules after this request, for the
	// x-ratelimit-* headers of a successful answer. Zero limits mean "no such rule".
	LimitRequests, RemainingRequests int64
	LimitTokens, RemainingTokens     int64
}

// note records the headroom of one rule given its counts after this request.
func (a *Admission) note(r Rule, requests, tokens int64) {
	if r.RPM > 0 {
		if rem := max(r.RPM-requests, 0); a.LimitRequests == 0 || rem < a.RemainingRequests {
			a.LimitRequests, a.RemainingRequests = r.RPM, rem
		}
	}
	if r.TPM > 0 {
		if rem := max(r.TPM-tokens, 0); a.LimitTokens == 0 || rem < a.RemainingTokens {
			a.LimitTokens, a.RemainingTokens = r.TPM, rem
		}
	}
}

// SetHeaders sets the x-ratelimit-* headers of a successful answer on h.
func (a *Admission) SetHeaders(h http.Header) {
	if a == nil {
		return
	}
	// Canonical keys, set directly: canonicalizing lower-case keys allocates on every call.
	if a.LimitRequests > 0 {
		h["X-Ratelimit-Limit-Requests"] = []string{strconv.FormatInt(a.LimitRequests, 10)}
		h["X-Ratelimit-Remaining-Requests"] = []string{strconv.FormatInt(a.RemainingRequests, 10)}
	}
	if a.LimitTokens > 0 {
		h["X-Ratelimit-Limit-Tokens"] = []string{strconv.FormatInt(a.LimitTokens, 10)}
		h["X-Ratelimit-Remaining-Tokens"] = []string{strconv.FormatInt(a.RemainingTokens, 10)}
	}
}

// Done finishes the admission, charging tokens to the rules' tpm windows.
func (a *Admission) Done(tokens int64) {
	if a == nil {
		return
	}
	a.once.Do(func() {
		if a.done != nil {
			a.done(tokens)
		}
	})
}

// window returns the index of the minute t falls in and the time left in it.
func window(t time.Time) (int64, time.Duration) {
	w := t.Unix() / 60
	left := time.Unix((w+1)*60, 0).Sub(t)
	return w, left
}

// MemoryLimiter counts in process: fixed one-minute windows for rpm and tpm, a gauge for
// parallel requests.
type MemoryLimiter struct {
	now func() time.Time

	mu sync.Mutex
	c  map[string]*memCounter
}

type memCounter struct {
	win      int64
	requests int64
	tokens   int64
	inflight int64
}

// NewMemoryLimiter returns an in-process Limiter. now may be nil (time.Now).
func NewMemoryLimiter(now func() time.Time) *MemoryLimiter {
	if now == nil {
		now = time.Now
	}
	return &MemoryLimiter{now: now, c: map[string]*memCounter{}}
}

func ruleKey(r Rule) string { return string(r.Scope) + "\x00" + r.ID }

// Admit implements Limiter.
func (l *MemoryLimiter) Admit(ctx context.Context, rules []Rule) (*Admission, error) {
	win, left := window(l.now())
	l.mu.Lock()
	defer l.mu.Unlock()
	cs := make([]*memCounter, 0, len(rules))
	active := make([]Rule, 0, len(rules))
	for _, r := range rules {
		if r.empty() {
			continue
		}
		c := l.c[ruleKey(r)]
		if c == nil {
			c = &memCounter{win: win}
			l.c[ruleKey(r)] = c
		}
		if c.win != win {
			c.win, c.requests, c.tokens = win, 0, 0
		}
		switch {
		case r.RPM > 0 && c.requests >= r.RPM:
			return nil, &LimitError{Kind: LimitRPM, Scope: r.Scope, ID: r.ID, Limit: r.RPM, RetryAfter: left}
		case r.TPM > 0 && c.tokens >= r.TPM:
			return nil, &LimitError{Kind: LimitTPM, Scope: r.Scope, ID: r.ID, Limit: r.TPM, RetryAfter: left}
		case r.MaxParallel > 0 && c.inflight >= r.MaxParallel:
			return nil, &LimitError{Kind: LimitParallel, Scope: r.Scope, ID: r.ID, Limit: r.MaxParallel, RetryAfter: time.Second}
		}
		cs = append(cs, c)
		active = append(active, r)
	}
	a := &Admission{}
	for i, c := range cs {
		c.requests++
		c.inflight++
		a.note(active[i], c.requests, c.tokens)
	}
	if len(cs) == 0 {
		return a, nil
	}
	a.done = func(tokens int64) {
		w, _ := window(l.now())
		l.mu.Lock()
		defer l.mu.Unlock()
		for i, c := range cs {
			c.inflight--
			if c.win == w {
				c.tokens += tokens
			}
			if c.inflight == 0 && c.win < w-1 {
				delete(l.c, ruleKey(active[i]))
			}
		}
	}
	return a, nil
}
