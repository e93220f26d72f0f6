package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/toolgate/toolgate/store"
)

// reqBody is a decoded JSON object request body that remembers which fields were present,
// so handlers can tell "absent" from "null" from a value.
type reqBody map[string]json.RawMessage

// readObject decodes r's body as one JSON object and rejects fields not in allowed with a
// 400 that names every one of them.
func readObject(r *http.Request, allowed ...string) (reqBody, error) {
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, err
		}
		return nil, badRequest("", "read body: %v", err)
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		raw = []byte("{}")
	}
	var b reqBody
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&b); err != nil {
		return nil, badRequest("", "malformed JSON body: %v", err)
	}
	if dec.More() {
		return nil, badRequest("", "malformed JSON body: more than one value")
	}
	if b == nil {
		return nil, badRequest("", "malformed JSON body: want an object")
	}
	var unknown []string
	for k := range b {
		if !slices.Contains(allowed, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return nil, badRequest(unknown[0], "unknown field(s): %s", strings.Join(unknown, ", "))
	}
	return b, nil
}

// has reports whether field was sent (null included).
func (b reqBody) has(field string) bool {
	_, ok := b[field]
	return ok
}

// isNull reports whether field was sent as null.
func (b reqBody) isNull(field string) bool {
	v, ok := b[field]
	return ok && string(bytes.TrimSpace(v)) == "null"
}

// set reports whether field was sent with a non-null value.
func (b reqBody) set(field string) bool {
	return b.has(field) && !b.isNull(field)
}

// get decodes field into dst when it is present and not null. It reports whether it did.
func (b reqBody) get(field string, dst any) (bool, error) {
	if !b.set(field) {
		return false, nil
	}
	dec := json.NewDecoder(bytes.NewReader(b[field]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) {
			return false, badRequest(field, "%s: want %s, got %s", field, ute.Type, ute.Value)
		}
		return false, badRequest(field, "%s: %v", field, err)
	}
	return true, nil
}

// str decodes a string field; absent and null give "".
func (b reqBody) str(field string) (string, error) {
	var s string
	_, err := b.get(field, &s)
	return s, err
}

// strings decodes a []string field.
func (b reqBody) strings(field string) ([]string, error) {
	var s []string
	_, err := b.get(field, &s)
	return s, err
}

// limitFields are the budget and rate fields of an identity; setting them needs an admin.
var limitFields = []string{"max_budget", "soft_budget", "budget_duration", "rpm_limit", "tpm_limit", "max_parallel_requests"}

// limits applies the limit fields present in b onto l (null clears).
func (b reqBody) limits(l *store.Limits) error {
	floats := map[string]**float64{"max_budget": &l.MaxBudget, "soft_budget": &l.SoftBudget}
	for f, dst := range floats {
		if b.has(f) {
			*dst = nil
			var v float64
			if ok, err := b.get(f, &v); err != nil {
				return err
			} else if ok {
				if v < 0 {
					return badRequest(f, "%s must not be negative", f)
				}
				*dst = &v
			}
		}
	}
	ints := map[string]**int64{"rpm_limit": &l.RPMLimit, "tpm_limit": &l.TPMLimit, "max_parallel_requests": &l.MaxParallelRequests}
	for f, dst := range ints {
		if b.has(f) {
			*dst = nil
			var v int64
			if ok, err := b.get(f, &v); err != nil {
				return err
			} else if ok {
				if v < 0 {
					return badRequest(f, "%s must not be negative", f)
				}
				*dst = &v
			}
		}
	}
	if b.has("budget_duration") {
		d, err := b.str("budget_duration")
		if err != nil {
			return err
		}
		if d != "" {
			if _, err := parseLiteLLMDuration(d); err != nil {
				return badRequest("budget_duration", "budget_duration: %v", err)
			}
		}
		l.BudgetDuration = d
	}
	return nil
}

// maxModelBudgets bounds the models one key may cap.
const maxModelBudgets = 100

// modelMaxBudget decodes model_max_budget (null: no caps), in LiteLLM's shape,
// {"gpt-4o": {"budget_limit": 10, "time_period": "30d"}}, where budget_limit may also be a
// numeric string, or its older one, {"gpt-4o": 10}.
func (b reqBody) modelMaxBudget() (map[string]store.ModelBudget, error) {
	const f = "model_max_budget"
	var raw map[string]json.RawMessage
	if _, err := b.get(f, &raw); err != nil {
		return nil, err
	}
	if len(raw) > maxModelBudgets {
		return nil, badRequest(f, "%s: at most %d models", f, maxModelBudgets)
	}
	if len(raw) == 0 {
		return nil, nil
	}
	out := make(map[string]store.ModelBudget, len(raw))
	for model, v := range raw {
		if strings.TrimSpace(model) == "" {
			return nil, badRequest(f, "%s: a model name is empty", f)
		}
		var c struct {
			Limit  json.RawMessage `json:"budget_limit"`
			Period string          `json:"time_period"`
		}
		limit := v
		if t := bytes.TrimSpace(v); len(t) > 0 && t[0] == '{' {
			dec := json.NewDecoder(bytes.NewReader(t))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&c); err != nil {
				return nil, badRequest(f, "%s.%s: want {\"budget_limit\": dollars, \"time_period\": \"30d\"}: %v", f, model, err)
			}
			limit = c.Limit
		}
		var n json.Number
		if s := bytes.TrimSpace(limit); len(s) > 0 && s[0] == '"' { // "0.5", as LiteLLM's docs send it
			var str string
			_ = json.Unmarshal(s, &str)
			n = json.Number(strings.TrimSpace(str))
		} else if err := json.Unmarshal(limit, &n); err != nil {
			n = ""
		}
		dollars, err := n.Float64()
		if err != nil || dollars < 0 || math.IsInf(dollars, 0) {
			return nil, badRequest(f, "%s.%s: budget_limit must be a number of dollars, not negative", f, model)
		}
		if c.Period != "" {
			if _, err := parseLiteLLMDuration(c.Period); err != nil {
				return nil, badRequest(f, "%s.%s.time_period: %v", f, model, err)
			}
		}
		out[model] = store.ModelBudget{MaxBudget: dollars, Duration: c.Period}
	}
	return out, nil
}

// permission decodes object_permission (null or absent: the zero value).
func (b reqBody) permission() (store.ObjectPermission, error) {
	var p store.ObjectPermission
	_, err := b.get("object_permission", &p)
	return p, err
}

// parseDuration parses LiteLLM's durations: a positive integer followed by s, m, h, d, w or
// mo ("30s", "15m", "24h", "30d", "1mo"), or a Go duration ("1h30m").
func parseLiteLLMDuration(s string) (time.Duration, error) {
	units := []struct {
		suffix string
		d      time.Duration
	}{{"mo", 30 * 24 * time.Hour}, {"s", time.Second}, {"m", time.Minute}, {"h", time.Hour}, {"d", 24 * time.Hour}, {"w", 7 * 24 * time.Hour}}
	for _, u := range units {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			if v, err := strconv.ParseInt(n, 10, 64); err == nil {
				if v <= 0 || v > int64(math.MaxInt64/u.d) {
					return 0, fmt.Errorf("duration %q out of range", s)
				}
				return time.Duration(v) * u.d, nil
			}
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("invalid duration %q (want e.g. 30s, 15m, 24h, 30d, 1mo)", s)
	}
	return d, nil
}

// audit appends an audit entry for a mutation. before and after are views without
// secrets; nil means none. A failure is logged: the change itself has been made.
func (s *Server) audit(ctx context.Context, p *Principal, action, objType, objID string, before, after any) {
	e := &store.AuditEntry{At: s.now(), Actor: p.subject(), Action: action, ObjectType: objType, ObjectID: objID}
	if before != nil {
		e.Before, _ = json.Marshal(before)
	}
	if after != nil {
		e.After, _ = json.Marshal(after)
	}
	if err := s.store.AppendAudit(ctx, e); err != nil {
		s.log.ErrorContext(ctx, "audit log append failed", "action", action, "object_type", objType, "object_id", objID, "err", err)
	}
}

// forbidden returns a 403 with a message.
func permDenied(format string, args ...any) *Error {
	return errorf(http.StatusForbidden, "permission_error", "", format, args...)
}

// notFound returns a 404 naming param.
func idNotFound(param, format string, args ...any) *Error {
	return errorf(http.StatusNotFound, "not_found_error", param, format, args...)
}

// queryInt parses an optional positive integer query parameter.
func queryPositive(r *http.Request, name string, def int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, badRequest(name, "%s must be a positive integer", name)
	}
	return n, nil
}
