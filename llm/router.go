package llm

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/toolgate/toolgate/llm/budget"
	"go.opentelemetry.io/otel/trace"
)

// Routing strategies, in LiteLLM's spelling.
const (
	SimpleShuffle = "simple-shuffle"        // random, weighted by weight, else rpm, else tpm
	LeastBusy     = "least-busy"            // fewest requests in flight
	LowestLatency = "latency-based-routing" // lowest moving-average latency ("lowest-latency" also accepted)
	LowestCost    = "cost-based-routing"    // cheapest per token
)

// RouterSettings are LiteLLM's router_settings.
type RouterSettings struct {
	// RoutingStrategy picks among a model's deployments. If empty, SimpleShuffle.
	RoutingStrategy string `json:"routing_strategy" yaml:"routing_strategy"`
	// NumRetries is how many more attempts a failed call gets (429, 5xx, timeouts, transport
	// errors), each on the best deployment not yet tried when there is one. If nil, 2.
	NumRetries *int `json:"num_retries" yaml:"num_retries"`
	// Timeout bounds one attempt of a non-streaming call, in seconds (litellm_params.timeout
	// overrides it per deployment). If zero, 600.
	Timeout float64 `json:"timeout" yaml:"timeout"`
	// StreamTimeout bounds, per attempt, the wait for a streaming answer to start; once it
	// has started, a stream runs until it ends or the client leaves. If zero, Timeout.
	StreamTimeout float64 `json:"stream_timeout" yaml:"stream_timeout"`
	// Fallbacks lists, per model name, the model names tried in order when every attempt on
	// the model failed: [{"gpt-4o": ["gpt-4o-mini", "claude"]}]. A "*" entry applies to
	// model names without one of their own.
	Fallbacks []map[string][]string `json:"fallbacks" yaml:"fallbacks"`
	// DefaultFallbacks are the "*" entry of Fallbacks, when it has none.
	DefaultFallbacks []string `json:"default_fallbacks" yaml:"default_fallbacks"`
	// ContextWindowFallbacks lists, per model name, the model names tried in order when the
	// provider refuses a call as longer than the model's context window, which retries and
	// Fallbacks do not mend: [{"gpt-4o-mini": ["gpt-4.1"]}].
	ContextWindowFallbacks []map[string][]string `json:"context_window_fallbacks" yaml:"context_window_fallbacks"`
	// ContentPolicyFallbacks lists, per model name, the model names tried in order when the
	// provider refuses a call by its content policy.
	ContentPolicyFallbacks []map[string][]string `json:"content_policy_fallbacks" yaml:"content_policy_fallbacks"`
	// ModelGroupAlias maps other names to model names: {"gpt-4": "gpt-4o"}, or
	// {"gpt-4": {"model": "gpt-4o", "hidden": true}} to leave the alias out of /v1/models.
	// A call to an alias is the model's call (its deployments, fallbacks, spend log);
	// a key may make it when it may use either name. A model name is never an alias.
	ModelGroupAlias map[string]any `json:"model_group_alias" yaml:"model_group_alias"`
	// CooldownTime is how long, in seconds, a failing deployment is skipped. If zero, 5.
	CooldownTime float64 `json:"cooldown_time" yaml:"cooldown_time"`
	// AllowedFails is how many consecutive failures put a deployment in cooldown; a 429
	// does at once when its model name has other deployments. If zero, 3.
	AllowedFails int `json:"allowed_fails" yaml:"allowed_fails"`
	// RetryAfter is the base backoff, in seconds, between attempts (doubled each time, and
	// at least the provider's Retry-After when the same deployment is retried). If zero, 0.1.
	RetryAfter float64 `json:"retry_after" yaml:"retry_after"`
}

// ErrUnknownModel is returned for a model name with no deployment.
var ErrUnknownModel = errors.New("unknown model")

// ErrNoDeployment is returned when every deployment of a model is cooling down or at its
// rate limit.
var ErrNoDeployment = errors.New("no deployments available")

// Router holds the deployments and picks one per call. It is safe for concurrent use; Set
// replaces the deployments atomically.
type Router struct {
	settings  RouterSettings
	retries   int
	timeout   time.Duration
	streamTO  time.Duration
	cooldown  time.Duration
	allowed   int64
	backoff   time.Duration
	fallbacks map[string][]string
	// special are the fallbacks for refusals of a class (errContextWindow,
	// errContentPolicy), per model name.
	special map[errClass]map[string][]string
	aliases map[string]modelAlias
	limiter budget.Limiter
	now     func() time.Time
	tracer  trace.Tracer // nil: attempts are not traced

	mu     sync.RWMutex
	byName map[string][]*Deployment
	byID   map[string]*Deployment
	names  []string
}

func newRouter(s RouterSettings, limiter budget.Limiter, now func() time.Time) (*Router, error) {
	r := &Router{settings: s, retries: 2, limiter: limiter, now: now, fallbacks: map[string][]string{},
		byName: map[string][]*Deployment{}, byID: map[string]*Deployment{}}
	switch s.RoutingStrategy {
	case "", SimpleShuffle:
		r.settings.RoutingStrategy = SimpleShuffle
	case LeastBusy:
	case LowestLatency, "lowest-latency":
		r.settings.RoutingStrategy = LowestLatency
	case LowestCost:
	case "usage-based-routing", "usage-based-routing-v2":
		// LiteLLM picks the deployment with the least usage this minute; the fewest
		// requests in flight is the closest signal kept here.
		r.settings.RoutingStrategy = LeastBusy
	default:
		return nil, fmt.Errorf("router_settings.routing_strategy %q: want %s, %s, %s, %s or usage-based-routing", s.RoutingStrategy, SimpleShuffle, LeastBusy, LowestLatency, LowestCost)
	}
	if s.NumRetries != nil {
		r.retries = max(*s.NumRetries, 0)
	}
	r.timeout = secs(s.Timeout, 600*time.Second)
	r.streamTO = secs(s.StreamTimeout, r.timeout)
	r.cooldown = secs(s.CooldownTime, 5*time.Second)
	r.backoff = secs(s.RetryAfter, 100*time.Millisecond)
	r.allowed = int64(s.AllowedFails)
	if r.allowed <= 0 {
		r.allowed = 3
	}
	lists := func(ms []map[string][]string) map[string][]string {
		out := map[string][]string{}
		for _, m := range ms {
			for k, v := range m {
				out[k] = append(out[k], v...)
			}
		}
		return out
	}
	r.fallbacks = lists(s.Fallbacks)
	if _, ok := r.fallbacks["*"]; !ok && len(s.DefaultFallbacks) > 0 {
		r.fallbacks["*"] = s.DefaultFallbacks
	}
	r.aliases = map[string]modelAlias{}
	for name, v := range s.ModelGroupAlias {
		var a modelAlias
		switch v := v.(type) {
		case string:
			a.model = v
		case map[string]any:
			a.model, _ = v["model"].(string)
			a.hidden, _ = v["hidden"].(bool)
		}
		if a.model == "" || a.model == name {
			return nil, fmt.Errorf("router_settings.model_group_alias.%s: want a model name, or {model: name, hidden: true}", name)
		}
		r.aliases[name] = a
	}
	r.special = map[errClass]map[string][]string{
		errContextWindow: lists(s.ContextWindowFallbacks),
		errContentPolicy: lists(s.ContentPolicyFallbacks),
	}
	return r, nil
}

func secs(f float64, def time.Duration) time.Duration {
	if f <= 0 {
		return def
	}
	return time.Duration(f * float64(time.Second))
}

// set replaces the deployments. Runtime state (cooldown, latency) carries over for
// deployments whose ID is unchanged.
func (r *Router) set(ds []*Deployment) {
	byName := map[string][]*Deployment{}
	byID := map[string]*Deployment{}
	r.mu.RLock()
	for _, d := range ds {
		if old := r.byID[d.ID]; old != nil {
			d.latency.Store(old.latency.Load())
			d.coolUntil.Store(old.coolUntil.Load())
		}
		byName[d.ModelName] = append(byName[d.ModelName], d)
		byID[d.ID] = d
	}
	r.mu.RUnlock()
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	sort.Strings(names)
	r.mu.Lock()
	r.byName, r.byID, r.names = byName, byID, names
	r.mu.Unlock()
}

// deployments returns the deployments of a model name.
func (r *Router) deployments(model string) []*Deployment {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.byName[model]
}

// modelAlias is a model_group_alias entry.
type modelAlias struct {
	model  string
	hidden bool // not listed by /v1/models
}

// resolve returns the model name that name stands for: name itself when it has
// deployments or is no alias.
func (r *Router) resolve(name string) string {
	a, ok := r.aliases[name]
	if !ok || len(r.deployments(name)) > 0 {
		return name
	}
	return a.model
}

// listedAliases returns the aliases /v1/models lists, with the model each stands for.
func (r *Router) listedAliases() map[string]string {
	out := map[string]string{}
	for name, a := range r.aliases {
		if !a.hidden && len(r.deployments(name)) == 0 {
			out[name] = a.model
		}
	}
	return out
}

// deployment returns the deployment with ID id, or nil.
func (r *Router) deployment(id string) *Deployment {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.byID[id]
}

// modelNames returns every public model name, sorted.
func (r *Router) modelNames() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.names
}

// all returns every deployment ordered by model name.
func (r *Router) all() []*Deployment {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []*Deployment
	for _, n := range r.names {
		out = append(out, r.byName[n]...)
	}
	return out
}

// fallbacksFor returns the model names to try after model failed: with a refusal of class
// (too long, content policy), its fallbacks for that class when it has some (as LiteLLM's
// router does), else its general fallbacks, else the "*" ones.
func (r *Router) fallbacksFor(model string, class errClass) []string {
	if fb, ok := r.special[class][model]; ok {
		return fb
	}
	if fb, ok := r.fallbacks[model]; ok {
		return fb
	}
	var out []string
	for _, n := range r.fallbacks["*"] {
		if n != model {
			out = append(out, n)
		}
	}
	return out
}

// firstOrder returns the deployments of pool with the lowest order (litellm_params.order;
// none comes last), all of pool when it sets no orders.
func firstOrder(pool []*Deployment) []*Deployment {
	rank := func(d *Deployment) int64 {
		if d.Order > 0 {
			return d.Order
		}
		return math.MaxInt64
	}
	best := int64(math.MaxInt64)
	for _, d := range pool {
		best = min(best, rank(d))
	}
	if best == math.MaxInt64 {
		return pool
	}
	out := make([]*Deployment, 0, len(pool))
	for _, d := range pool {
		if rank(d) == best {
			out = append(out, d)
		}
	}
	return out
}

// pick chooses a deployment among ds, preferring ones not in tried and skipping cooling
// ones. It returns nil when all are cooling.
func (r *Router) pick(ds []*Deployment, tried map[*Deployment]bool) *Deployment {
	now := r.now()
	if len(ds) == 1 { // the common case, without the bookkeeping below
		if ds[0].cooling(now) {
			return nil
		}
		return ds[0]
	}
	var fresh, seen []*Deployment
	for _, d := range ds {
		if d.cooling(now) {
			continue
		}
		if tried[d] {
			seen = append(seen, d)
		} else {
			fresh = append(fresh, d)
		}
	}
	pool := fresh
	if len(pool) == 0 {
		pool = seen
	}
	pool = firstOrder(pool)
	switch len(pool) {
	case 0:
		return nil
	case 1:
		return pool[0]
	}
	switch r.settings.RoutingStrategy {
	case LeastBusy:
		best := pool[0]
		for _, d := range pool[1:] {
			if d.inflight.Load() < best.inflight.Load() {
				best = d
			}
		}
		return best
	case LowestLatency:
		best := pool[0]
		for _, d := range pool[1:] {
			if d.latency.Load() < best.latency.Load() {
				best = d
			}
		}
		return best
	case LowestCost:
		best := pool[0]
		unit := func(d *Deployment) float64 { return d.Price.InputCostPerToken + d.Price.OutputCostPerToken }
		for _, d := range pool[1:] {
			if unit(d) < unit(best) {
				best = d
			}
		}
		return best
	}
	total := 0.0
	weights := make([]float64, len(pool))
	for i, d := range pool {
		w := d.Weight
		if w <= 0 {
			w = float64(d.RPM)
		}
		if w <= 0 {
			w = float64(d.TPM)
		}
		if w <= 0 {
			w = 1
		}
		weights[i] = w
		total += w
	}
	x := rand.Float64() * total
	for i, w := range weights {
		if x < w {
			return pool[i]
		}
		x -= w
	}
	return pool[len(pool)-1]
}

// attempt is one call in progress on a deployment, returned by route once the call
// succeeded (for streams: once the stream opened). finish must be called when it ends.
type attempt struct {
	d      *Deployment
	r      *Router
	start  time.Time
	adm    *budget.Admission
	cancel context.CancelFunc
	span   trace.Span // nil when tracing is off
	once   sync.Once
}

// finish records the outcome: tokens for tpm, latency on success.
func (a *attempt) finish(tokens int64, ok bool) {
	a.once.Do(func() {
		a.d.inflight.Add(-1)
		a.adm.Done(tokens)
		a.cancel()
		if ok {
			a.r.success(a.d, a.r.now().Sub(a.start))
		}
		if a.span != nil {
			a.span.End()
		}
	})
}

func (r *Router) success(d *Deployment, lat time.Duration) {
	d.fails.Store(0)
	old := d.latency.Load()
	if old == 0 {
		d.latency.Store(int64(lat))
		return
	}
	d.latency.Store(old + (int64(lat)-old)/5)
}

// failure counts a failed attempt on d and cools d down after allowed_fails in a row, or at
// once when the provider rate-limited it and its model name has other deployments to take
// the load (as LiteLLM does: with one deployment, cooling it down would only turn the
// retry the provider's Retry-After asks for into an error).
func (r *Router) failure(d *Deployment, err error) {
	n := d.fails.Add(1)
	var ue *UpstreamError
	rateLimited := errors.As(err, &ue) && ue.Status == http.StatusTooManyRequests && len(r.deployments(d.ModelName)) > 1
	if rateLimited || n >= r.allowed {
		d.coolUntil.Store(r.now().Add(r.cooldown).UnixNano())
		d.fails.Store(0)
	}
}

// route calls call on deployments of model (then of its fallbacks) until one succeeds,
// retrying retryable failures with backoff. call gets a per-attempt context that stays
// valid until the returned attempt is finished. override, when not nil, replaces each
// picked deployment (client-side credentials). pin, when not nil, is the only deployment
// tried, without fallbacks: the one that holds a previous response.
func (r *Router) route(ctx context.Context, model, kind string, stream bool, pin *Deployment, override func(*Deployment) *Deployment,
	call func(ctx context.Context, d *Deployment) error) (*attempt, error) {
	var lastErr error
	known := false
	names := []string{model} // then the fallbacks that the model's failure chose
	for i := 0; i < len(names); i++ {
		name := names[i]
		class := errOther
		ds := r.deployments(r.resolve(name)) // a fallback may name an alias
		if pin != nil {
			ds = []*Deployment{pin}
		}
		if len(ds) == 0 {
			if i == 0 {
				names = append(names, r.fallbacksFor(model, errOther)...)
			}
			continue
		}
		known = true
		tried := map[*Deployment]bool{}
		for try := 0; try <= r.retries; try++ {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			d := pin // called even while cooling down: no other deployment can answer
			if d == nil {
				d = r.pick(ds, tried)
			}
			if d == nil {
				if lastErr == nil {
					lastErr = fmt.Errorf("%w for model %s", ErrNoDeployment, name)
				}
				break
			}
			tried[d] = true
			var adm *budget.Admission
			if r.limiter != nil && (d.RPM > 0 || d.TPM > 0 || d.MaxParallel > 0) {
				a, err := r.limiter.Admit(ctx, []budget.Rule{{Scope: budget.ScopeDeployment, ID: d.ID, RPM: d.RPM, TPM: d.TPM, MaxParallel: d.MaxParallel}})
				if err != nil {
					lastErr = err
					if len(tried) < len(ds) {
						try-- // another deployment may have room; this was not an attempt
					}
					continue
				}
				adm = a
			}
			target := d
			if override != nil {
				target = override(d)
			}
			to := r.timeout
			if stream {
				to = r.streamTO
			} else if d.Timeout > 0 {
				to = d.Timeout
			}
			var actx context.Context
			var cancel context.CancelFunc
			var timer *time.Timer
			if stream {
				// The timeout is for the answer to start: a stream may run on past it.
				actx, cancel = context.WithCancel(ctx)
				timer = time.AfterFunc(to, cancel)
			} else {
				actx, cancel = context.WithTimeout(ctx, to)
			}
			at := &attempt{d: d, r: r, start: r.now(), adm: adm, cancel: cancel}
			actx, at.span = r.startAttempt(actx, kind, target)
			d.inflight.Add(1)
			err := call(actx, target)
			var timedOut bool
			if timer != nil {
				timedOut = !timer.Stop()
			} else {
				timedOut = errors.Is(actx.Err(), context.DeadlineExceeded)
			}
			if err == nil {
				return at, nil
			}
			if timedOut && ctx.Err() == nil {
				err = &UpstreamError{Status: http.StatusRequestTimeout, Message: fmt.Sprintf("timed out after %s", to), Err: err}
			}
			spanFailed(at.span, err)
			at.finish(0, false)
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if !retryable(err) {
				if class = classOf(err); class == errOther || pin != nil { // a bad request: no model mends it
					return nil, err
				}
				lastErr = err // refused as too long or by content policy: on to its fallbacks
				break
			}
			lastErr = err
			r.failure(d, err)
			if try < r.retries {
				wait := r.backoff << try
				var ue *UpstreamError
				if errors.As(err, &ue) && ue.RetryAfter > wait && len(tried) >= len(ds) {
					wait = min(ue.RetryAfter, 10*time.Second)
				}
				select {
				case <-ctx.Done():
					return nil, ctx.Err()
				case <-time.After(wait):
				}
			}
		}
		if i == 0 && pin == nil {
			names = append(names, r.fallbacksFor(model, class)...)
		}
	}
	if !known {
		return nil, fmt.Errorf("%w: %s", ErrUnknownModel, model)
	}
	return nil, lastErr
}
