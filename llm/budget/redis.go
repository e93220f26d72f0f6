package budget

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisLimiter shares rate counters between replicas through Redis: one Lua script checks
// and counts every rule atomically. Keys live under Prefix and expire on their own.
type RedisLimiter struct {
	rdb    redis.UniversalClient
	prefix string
	now    func() time.Time
}

// NewRedisLimiter returns a Limiter over a Redis server URL (redis://host:port/db). It does
// no I/O; a server that is down makes Admit fail.
func NewRedisLimiter(url, prefix string) (*RedisLimiter, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("parse redis_url: %w", err)
	}
	if prefix == "" {
		prefix = "toolgate:rl:"
	}
	return &RedisLimiter{rdb: redis.NewClient(opt), prefix: prefix, now: time.Now}, nil
}

// Ping reports whether Redis answers.
func (l *RedisLimiter) Ping(ctx context.Context) error { return l.rdb.Ping(ctx).Err() }

// Close closes the Redis connection pool.
func (l *RedisLimiter) Close() error { return l.rdb.Close() }

// admitScript: KEYS come in triples (requests, tokens, inflight) per rule; ARGV[1] is the
// window TTL in seconds, then rpm, tpm, parallel per rule. Returns {0, requests1, tokens1,
// requests2, tokens2, ...} (the counts after this request) when admitted, or {the 1-based
// rule index times 10 plus the kind (1 rpm, 2 tpm, 3 parallel)} when refused.
var admitScript = redis.NewScript(`
local n = #KEYS / 3
for i = 1, n do
  local rpm = tonumber(ARGV[3*i-1])
  local tpm = tonumber(ARGV[3*i])
  local par = tonumber(ARGV[3*i+1])
  if rpm > 0 and tonumber(redis.call('GET', KEYS[3*i-2]) or '0') >= rpm then return {i*10+1} end
  if tpm > 0 and tonumber(redis.call('GET', KEYS[3*i-1]) or '0') >= tpm then return {i*10+2} end
  if par > 0 and tonumber(redis.call('GET', KEYS[3*i]) or '0') >= par then return {i*10+3} end
end
local out = {0}
for i = 1, n do
  out[#out+1] = redis.call('INCR', KEYS[3*i-2])
  redis.call('EXPIRE', KEYS[3*i-2], ARGV[1])
  out[#out+1] = tonumber(redis.call('GET', KEYS[3*i-1]) or '0')
  redis.call('INCR', KEYS[3*i])
  redis.call('EXPIRE', KEYS[3*i], 600)
end
return out
`)

// Admit implements Limiter.
func (l *RedisLimiter) Admit(ctx context.Context, rules []Rule) (*Admission, error) {
	win, left := window(l.now())
	w := strconv.FormatInt(win, 10)
	keys := make([]string, 0, 3*len(rules))
	args := []any{120}
	active := make([]Rule, 0, len(rules))
	for _, r := range rules {
		if r.empty() {
			continue
		}
		base := l.prefix + string(r.Scope) + ":" + r.ID + ":"
		keys = append(keys, base+"r:"+w, base+"t:"+w, base+"p")
		args = append(args, r.RPM, r.TPM, r.MaxParallel)
		active = append(active, r)
	}
	if len(active) == 0 {
		return &Admission{}, nil
	}
	out, err := admitScript.Run(ctx, l.rdb, keys, args...).Int64Slice()
	if err != nil {
		return nil, fmt.Errorf("redis rate limit: %w", err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("redis rate limit: empty script answer")
	}
	if res := out[0]; res != 0 {
		r := active[res/10-1]
		switch res % 10 {
		case 1:
			return nil, &LimitError{Kind: LimitRPM, Scope: r.Scope, ID: r.ID, Limit: r.RPM, RetryAfter: left}
		case 2:
			return nil, &LimitError{Kind: LimitTPM, Scope: r.Scope, ID: r.ID, Limit: r.TPM, RetryAfter: left}
		default:
			return nil, &LimitError{Kind: LimitParallel, Scope: r.Scope, ID: r.ID, Limit: r.MaxParallel, RetryAfter: time.Second}
		}
	}
	a := &Admission{}
	for i, r := range active {
		if 2+2*i < len(out) {
			a.note(r, out[1+2*i], out[2+2*i])
		}
	}
	a.done = func(tokens int64) {
		ctx := context.WithoutCancel(ctx)
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		win, _ := window(l.now())
		tw := strconv.FormatInt(win, 10)
		pipe := l.rdb.Pipeline()
		for _, r := range active {
			base := l.prefix + string(r.Scope) + ":" + r.ID + ":"
			pipe.Decr(ctx, base+"p")
			if tokens > 0 && r.TPM > 0 {
				pipe.IncrBy(ctx, base+"t:"+tw, tokens)
				pipe.Expire(ctx, base+"t:"+tw, 120*time.Second)
			}
		}
		_, _ = pipe.Exec(ctx)
	}
	return a, nil
}
