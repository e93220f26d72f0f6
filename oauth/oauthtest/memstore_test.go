package oauthtest_test

import (
	"testing"

	"github.com/toolgate/toolgate/oauth/oauthtest"
	"github.com/toolgate/toolgate/store"
	"github.com/toolgate/toolgate/store/storetest"
)

func TestMemStore(t *testing.T) {
	storetest.RunOAuth(t, func(testing.TB) store.OAuthStore { return oauthtest.NewMemStore() })
}
