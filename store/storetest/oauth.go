package storetest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/toolgate/toolgate/store"
)

func testOAuth(t *testing.T, newStore NewStore) {
	RunOAuth(t, func(t testing.TB) store.OAuthStore { return newStore(t) })
}

// RunOAuth runs the OAuthStore part of the suite alone, against stores made by newStore
// (a fresh, open, empty store that registers its own cleanup).
func RunOAuth(t *testing.T, newStore func(t testing.TB) store.OAuthStore) {
	t.Run("Clients", func(t *testing.T) { testOAuthClients(t, newStore(t)) })
	t.Run("Codes", func(t *testing.T) { testOAuthCodes(t, newStore(t)) })
	t.Run("Tokens", func(t *testing.T) { testOAuthTokens(t, newStore(t)) })
	t.Run("States", func(t *testing.T) { testOAuthStates(t, newStore(t)) })
	t.Run("UpstreamTokens", func(t *testing.T) { testUpstreamTokens(t, newStore(t)) })
	t.Run("DeleteExpired", func(t *testing.T) { testDeleteExpiredOAuth(t, newStore(t)) })
}

// oauthTimes compares times at the precision every backend keeps (microseconds).
var oauthTimes = cmpopts.EquateApproxTime(time.Millisecond)

func testOAuthClients(t *testing.T, s store.OAuthStore) {
	ctx := context.Background()
	c := &store.OAuthClient{
		ID: "c1", SecretHash: "ab", Name: "Claude Code (gw)",
		RedirectURIs:  []string{"http://localhost/callback", "https://app.example/cb"},
		GrantTypes:    []string{"authorization_code", "refresh_token"},
		ResponseTypes: []string{"code"}, TokenEndpointAuthMethod: "none",
		ApplicationType: "native", Scope: "mcp", ClientURI: "https://app.example",
	}
	if err := s.CreateOAuthClient(ctx, c); err != nil {
		t.Fatalf("CreateOAuthClient: %v", err)
	}
	if c.CreatedAt.IsZero() {
		t.Errorf("CreatedAt not set")
	}
	got, err := s.OAuthClient(ctx, "c1")
	if err != nil {
		t.Fatalf("OAuthClient: %v", err)
	}
	if diff := cmp.Diff(c, got, oauthTimes); diff != "" {
		t.Errorf("OAuthClient mismatch (-want +got):\n%s", diff)
	}
	if err := s.CreateOAuthClient(ctx, &store.OAuthClient{ID: "c1"}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("duplicate CreateOAuthClient: got %v, want ErrConflict", err)
	}
	empty := &store.OAuthClient{ID: "c2"}
	if err := s.CreateOAuthClient(ctx, empty); err != nil {
		t.Fatalf("CreateOAuthClient(empty): %v", err)
	}
	got, err = s.OAuthClient(ctx, "c2")
	if err != nil {
		t.Fatalf("OAuthClient(c2): %v", err)
	}
	if len(got.RedirectURIs) != 0 || len(got.GrantTypes) != 0 {
		t.Errorf("empty client lists: got %v %v, want empty", got.RedirectURIs, got.GrantTypes)
	}
	if _, err := s.OAuthClient(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("OAuthClient(missing): got %v, want ErrNotFound", err)
	}

	// Deleting a client takes its tokens with it.
	tok := &store.OAuthToken{TokenHash: "h1", Kind: store.TokenAccess, FamilyID: "f", ClientID: "c1",
		Subject: "key:1", ExpiresAt: time.Now().Add(time.Hour)}
	if err := s.CreateOAuthToken(ctx, tok); err != nil {
		t.Fatalf("CreateOAuthToken: %v", err)
	}
	if err := s.DeleteOAuthClient(ctx, "c1"); err != nil {
		t.Fatalf("DeleteOAuthClient: %v", err)
	}
	if _, err := s.OAuthToken(ctx, "h1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("token after client delete: got %v, want ErrNotFound", err)
	}
	if err := s.DeleteOAuthClient(ctx, "c1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteOAuthClient(missing): got %v, want ErrNotFound", err)
	}
}

func testOAuthCodes(t *testing.T, s store.OAuthStore) {
	ctx := context.Background()
	c := &store.OAuthCode{CodeHash: "code1", ClientID: "c", RedirectURI: "http://localhost:1/cb",
		Subject: "key:1", Scope: "mcp", Resource: "https://gw/mcp", CodeChallenge: "chal",
		ExpiresAt: time.Now().Add(time.Minute).UTC()}
	if err := s.CreateOAuthCode(ctx, c); err != nil {
		t.Fatalf("CreateOAuthCode: %v", err)
	}
	if err := s.CreateOAuthCode(ctx, &store.OAuthCode{CodeHash: "code1", ExpiresAt: time.Now()}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("duplicate CreateOAuthCode: got %v, want ErrConflict", err)
	}

	// Of many concurrent consumers exactly one gets the code.
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := s.ConsumeOAuthCode(ctx, "code1")
			if err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
				if diff := cmp.Diff(c, got, oauthTimes); diff != "" {
					t.Errorf("ConsumeOAuthCode mismatch (-want +got):\n%s", diff)
				}
			} else if !errors.Is(err, store.ErrNotFound) {
				t.Errorf("ConsumeOAuthCode: got %v, want nil or ErrNotFound", err)
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Errorf("ConsumeOAuthCode winners: got %d, want 1", wins)
	}
	if _, err := s.ConsumeOAuthCode(ctx, "code1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("replayed ConsumeOAuthCode: got %v, want ErrNotFound", err)
	}
}

func testOAuthTokens(t *testing.T, s store.OAuthStore) {
	ctx := context.Background()
	exp := time.Now().Add(time.Hour).UTC()
	toks := []*store.OAuthToken{
		{TokenHash: "a1", Kind: store.TokenAccess, FamilyID: "f1", ClientID: "c", Subject: "key:1", Scope: "mcp", Resource: "https://gw/mcp", ExpiresAt: exp},
		{TokenHash: "r1", Kind: store.TokenRefresh, FamilyID: "f1", ClientID: "c", Subject: "key:1", ExpiresAt: exp},
		{TokenHash: "a2", Kind: store.TokenAccess, FamilyID: "f2", ClientID: "c", Subject: "key:1", ExpiresAt: exp},
		{TokenHash: "a3", Kind: store.TokenAccess, FamilyID: "f3", ClientID: "c", Subject: "key:2", ExpiresAt: exp},
	}
	for _, tok := range toks {
		if err := s.CreateOAuthToken(ctx, tok); err != nil {
			t.Fatalf("CreateOAuthToken(%s): %v", tok.TokenHash, err)
		}
	}
	if err := s.CreateOAuthToken(ctx, &store.OAuthToken{TokenHash: "a1", ExpiresAt: exp}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("duplicate CreateOAuthToken: got %v, want ErrConflict", err)
	}
	got, err := s.OAuthToken(ctx, "a1")
	if err != nil {
		t.Fatalf("OAuthToken: %v", err)
	}
	if diff := cmp.Diff(toks[0], got, oauthTimes); diff != "" {
		t.Errorf("OAuthToken mismatch (-want +got):\n%s", diff)
	}
	if _, err := s.OAuthToken(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("OAuthToken(missing): got %v, want ErrNotFound", err)
	}

	if err := s.RevokeOAuthToken(ctx, "r1"); err != nil {
		t.Fatalf("RevokeOAuthToken: %v", err)
	}
	if err := s.RevokeOAuthToken(ctx, "r1"); !errors.Is(err, store.ErrConflict) {
		t.Errorf("second RevokeOAuthToken: got %v, want ErrConflict", err)
	}
	if err := s.RevokeOAuthToken(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RevokeOAuthToken(missing): got %v, want ErrNotFound", err)
	}
	if got, _ := s.OAuthToken(ctx, "r1"); got == nil || !got.Revoked {
		t.Errorf("revoked token: got %+v, want Revoked", got)
	}
	if n, err := s.RevokeOAuthTokenFamily(ctx, "f1"); err != nil || n != 1 {
		t.Errorf("RevokeOAuthTokenFamily: got %d, %v, want 1, nil", n, err)
	}
	if got, _ := s.OAuthToken(ctx, "a1"); got == nil || !got.Revoked {
		t.Errorf("family token: got %+v, want Revoked", got)
	}
	if n, err := s.RevokeOAuthTokensBySubject(ctx, "key:1"); err != nil || n != 1 {
		t.Errorf("RevokeOAuthTokensBySubject: got %d, %v, want 1, nil", n, err)
	}
	if got, _ := s.OAuthToken(ctx, "a3"); got == nil || got.Revoked {
		t.Errorf("other subject's token: got %+v, want not revoked", got)
	}
}

func testOAuthStates(t *testing.T, s store.OAuthStore) {
	ctx := context.Background()
	st := &store.OAuthState{ID: "s1", Kind: "authorize", Data: []byte(`{"x":1}`), ExpiresAt: time.Now().Add(time.Minute).UTC()}
	if err := s.CreateOAuthState(ctx, st); err != nil {
		t.Fatalf("CreateOAuthState: %v", err)
	}
	if err := s.CreateOAuthState(ctx, &store.OAuthState{ID: "s1", Kind: "x", ExpiresAt: time.Now()}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("duplicate CreateOAuthState: got %v, want ErrConflict", err)
	}
	if _, err := s.ConsumeOAuthState(ctx, "s1", "upstream"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ConsumeOAuthState(wrong kind): got %v, want ErrNotFound", err)
	}
	got, err := s.ConsumeOAuthState(ctx, "s1", "authorize")
	if err != nil {
		t.Fatalf("ConsumeOAuthState: %v", err)
	}
	if diff := cmp.Diff(st, got, oauthTimes); diff != "" {
		t.Errorf("ConsumeOAuthState mismatch (-want +got):\n%s", diff)
	}
	if _, err := s.ConsumeOAuthState(ctx, "s1", "authorize"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("replayed ConsumeOAuthState: got %v, want ErrNotFound", err)
	}
}

func testUpstreamTokens(t *testing.T, s store.OAuthStore) {
	ctx := context.Background()
	if _, err := s.UpstreamToken(ctx, "srv", "u1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpstreamToken(missing): got %v, want ErrNotFound", err)
	}
	tok := &store.UpstreamToken{ServerID: "srv", Subject: "u1", Sealed: []byte{1, 2, 3}, ExpiresAt: time.Now().Add(time.Hour).UTC()}
	if err := s.PutUpstreamToken(ctx, tok); err != nil {
		t.Fatalf("PutUpstreamToken: %v", err)
	}
	tok2 := &store.UpstreamToken{ServerID: "srv", Subject: "u1", Sealed: []byte{4}}
	if err := s.PutUpstreamToken(ctx, tok2); err != nil {
		t.Fatalf("PutUpstreamToken(replace): %v", err)
	}
	got, err := s.UpstreamToken(ctx, "srv", "u1")
	if err != nil {
		t.Fatalf("UpstreamToken: %v", err)
	}
	if diff := cmp.Diff(tok2, got, oauthTimes); diff != "" {
		t.Errorf("UpstreamToken mismatch (-want +got):\n%s", diff)
	}
	if err := s.DeleteUpstreamToken(ctx, "srv", "u1"); err != nil {
		t.Fatalf("DeleteUpstreamToken: %v", err)
	}
	if err := s.DeleteUpstreamToken(ctx, "srv", "u1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteUpstreamToken(missing): got %v, want ErrNotFound", err)
	}
}

func testDeleteExpiredOAuth(t *testing.T, s store.OAuthStore) {
	ctx := context.Background()
	now := time.Now().UTC()
	past, future := now.Add(-time.Minute), now.Add(time.Hour)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.CreateOAuthCode(ctx, &store.OAuthCode{CodeHash: "old", ExpiresAt: past}))
	must(s.CreateOAuthCode(ctx, &store.OAuthCode{CodeHash: "new", ExpiresAt: future}))
	must(s.CreateOAuthState(ctx, &store.OAuthState{ID: "old", Kind: "k", ExpiresAt: past}))
	must(s.CreateOAuthToken(ctx, &store.OAuthToken{TokenHash: "old", Kind: store.TokenAccess, ExpiresAt: past}))
	must(s.CreateOAuthToken(ctx, &store.OAuthToken{TokenHash: "new", Kind: store.TokenAccess, ExpiresAt: future}))
	n, err := s.DeleteExpiredOAuth(ctx, now)
	if err != nil || n != 3 {
		t.Errorf("DeleteExpiredOAuth: got %d, %v, want 3, nil", n, err)
	}
	if _, err := s.OAuthToken(ctx, "new"); err != nil {
		t.Errorf("live token after DeleteExpiredOAuth: %v", err)
	}
	if _, err := s.ConsumeOAuthCode(ctx, "new"); err != nil {
		t.Errorf("live code after DeleteExpiredOAuth: %v", err)
	}
}
