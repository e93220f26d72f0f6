package gateway

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/toolgate/toolgate/llm/budget"
	"github.com/toolgate/toolgate/store"
)

// budgetRoutes serves LiteLLM's admin routes for the budgets that belong to no identity
// record: end users (the request's "user" field; /customer/...) and tags (/tag/...). Both
// are admin-only (unclassified routes are). A call naming an end user or a tag with no
// budget row is tracked without a limit; these routes set one.
//
//	POST /customer/new     {"user_id": "alice", "max_budget": 10, "soft_budget": 8, "budget_duration": "30d"}
//	GET  /customer/info?end_user_id=alice
//	POST /customer/update  {"user_id": "alice", "max_budget": 20}
//	POST /customer/delete  {"user_ids": ["alice"]}
//	POST /tag/new          {"name": "prod", "max_budget": 100, "budget_duration": "1mo"}
//	GET  /tag/info?name=prod
//	POST /tag/update       {"name": "prod", "max_budget": 200}
//	POST /tag/delete       {"name": "prod"}
func (s *Server) budgetRoutes(mux *http.ServeMux) {
	for _, k := range []struct {
		prefix, idField string
		scope           store.BudgetScope
	}{{"/customer", "user_id", store.BudgetEndUser}, {"/end_user", "user_id", store.BudgetEndUser}, {"/tag", "name", store.BudgetTag}} {
		mux.HandleFunc("POST "+k.prefix+"/new", s.handle(func(w http.ResponseWriter, r *http.Request) error {
			return s.setBudget(w, r, k.scope, k.idField, true)
		}))
		mux.HandleFunc("POST "+k.prefix+"/update", s.handle(func(w http.ResponseWriter, r *http.Request) error {
			return s.setBudget(w, r, k.scope, k.idField, false)
		}))
		mux.HandleFunc("GET "+k.prefix+"/info", s.handle(func(w http.ResponseWriter, r *http.Request) error {
			q := r.URL.Query()
			id := q.Get("end_user_id")
			if k.scope == store.BudgetTag {
				id = q.Get("name")
			} else if id == "" {
				id = q.Get("user_id")
			}
			if id == "" {
				return badRequest(k.idField, "%s is required", k.idField)
			}
			ref := store.BudgetRef{Scope: k.scope, ID: id}
			s.settleSpend(r.Context(), ref)
			b, err := s.store.Budget(r.Context(), ref)
			if err != nil {
				return err
			}
			writeJSON(w, http.StatusOK, budgetView(b, k.idField))
			return nil
		}))
		mux.HandleFunc("POST "+k.prefix+"/delete", s.handle(func(w http.ResponseWriter, r *http.Request) error {
			var body struct {
				UserIDs []string `json:"user_ids"`
				Name    string   `json:"name"`
			}
			if err := decodeJSON(r, &body); err != nil {
				return err
			}
			ids := body.UserIDs
			if k.scope == store.BudgetTag {
				ids = []string{body.Name}
			}
			if len(ids) == 0 || ids[0] == "" {
				return badRequest(map[bool]string{true: "name", false: "user_ids"}[k.scope == store.BudgetTag], "nothing to delete")
			}
			for _, id := range ids {
				if err := s.store.DeleteBudget(r.Context(), store.BudgetRef{Scope: k.scope, ID: id}); err != nil {
					return err
				}
			}
			writeJSON(w, http.StatusOK, map[string]any{"deleted": ids})
			return nil
		}))
	}
}

// setBudget creates (create) or changes an end-user or tag budget. Fields absent from an
// update keep their value; null clears max_budget, soft_budget or budget_duration.
func (s *Server) setBudget(w http.ResponseWriter, r *http.Request, scope store.BudgetScope, idField string, create bool) error {
	var body map[string]json.RawMessage
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	var id string
	if err := json.Unmarshal(body[idField], &id); err != nil || strings.TrimSpace(id) == "" {
		return badRequest(idField, "%s is required", idField)
	}
	ref := store.BudgetRef{Scope: scope, ID: id}
	b, err := s.store.Budget(r.Context(), ref)
	switch {
	case errors.Is(err, store.ErrNotFound):
		if !create {
			return err
		}
		b = &store.Budget{BudgetRef: ref}
	case err != nil:
		return err
	case create && (b.MaxBudget != nil || b.SoftBudget != nil || b.Duration != ""):
		return errorf(http.StatusConflict, "conflict_error", idField, "%s %q already has a budget; use update", idField, id)
	}
	money := func(field string, dst **float64) error {
		raw, ok := body[field]
		if !ok {
			return nil
		}
		var v *float64
		if err := json.Unmarshal(raw, &v); err != nil || (v != nil && *v < 0) {
			return badRequest(field, "%s must be a non-negative number or null", field)
		}
		*dst = v
		return nil
	}
	if err := errors.Join(money("max_budget", &b.MaxBudget), money("soft_budget", &b.SoftBudget)); err != nil {
		return err
	}
	if raw, ok := body["budget_duration"]; ok {
		var d *string
		if err := json.Unmarshal(raw, &d); err != nil {
			return badRequest("budget_duration", "budget_duration must be a string such as 30d or null")
		}
		b.Duration, b.ResetAt = "", nil
		if d != nil && *d != "" {
			now := s.now()
			next, err := budget.NextReset(*d, now, now)
			if err != nil {
				return badRequest("budget_duration", "%v", err)
			}
			b.Duration, b.ResetAt = *d, &next
		}
	}
	if err := s.store.UpsertBudgetLimits(r.Context(), b); err != nil {
		return err
	}
	if b, err = s.store.Budget(r.Context(), ref); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, budgetView(b, idField))
	return nil
}

func budgetView(b *store.Budget, idField string) map[string]any {
	var reset *string
	if b.ResetAt != nil {
		v := b.ResetAt.UTC().Format(time.RFC3339)
		reset = &v
	}
	var dur *string
	if b.Duration != "" {
		dur = &b.Duration
	}
	return map[string]any{idField: b.ID, "max_budget": b.MaxBudget, "soft_budget": b.SoftBudget, "budget_duration": dur,
		"budget_reset_at": reset, "spend": b.Spend}
}
