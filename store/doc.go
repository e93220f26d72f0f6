// Package store defines toolgate's persisted records and the Store contract that every
// storage backend implements.
//
// Records are plain structs. Behaviour lives with the package that owns it: the permission
// decision in toolsets, budgets in llm/budget, tokens in oauth. Two implementations exist,
// store/sqlite (the embedded default) and store/postgres; both pass the behavioural suite in
// store/storetest, which pins the semantics documented on each method here.
//
// Unless a method says otherwise:
//   - every method is safe for concurrent use by multiple goroutines and by several
//     gateway processes sharing one database;
//   - a lookup of a missing record returns an error wrapping ErrNotFound;
//   - a write that would break a uniqueness rule returns an error wrapping ErrConflict;
//   - a write either happens completely or not at all;
//   - returned slices and maps are owned by the caller.
package store
