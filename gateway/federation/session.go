package federation

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/server"
)

// Session IDs (2025-era streamable HTTP and legacy SSE) are
//
//	"tg1." base64url(16 random bytes | 8-byte issue time, unix seconds) "." base64url(mac)
//
// where mac is the first 18 bytes of HMAC-SHA256(key, "tg1" 0 body 0
// principal 0 route). Any replica holding the key can check that an ID was
// issued by the gateway, to this principal, for this route, and is younger
// than the maximum age; no session-only state is needed. A session presented
// by another principal (or on another route) is answered 404. Terminations
// (DELETE, idle expiry) are remembered locally until the ID's maximum age.

var (
	errBadSession     = errors.New("invalid session ID")
	b64               = base64.RawURLEncoding
	sessionIDPrefix   = "tg1."
	sessionMACLen     = 18
	sessionBodyLen    = 24
	sessionIDLen      = len(sessionIDPrefix) + 32 + 1 + 24 // base64 of 24 and 18 bytes
	errSessionExpired = errors.New("session expired")
)

type sessions struct {
	key        []byte
	maxAge     time.Duration
	principal  func(context.Context) string
	terminated sync.Map        // id -> time.Time (issue time)
	onEnd      func(id string) // called when a session is terminated (DELETE or idle expiry); may be nil
	lastPrune  time.Time
	mu         sync.Mutex
}

func newSessions(key []byte, maxAge time.Duration, principal func(context.Context) string) *sessions {
	return &sessions{key: key, maxAge: maxAge, principal: principal}
}

func (s *sessions) mac(body []byte, binding string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte("tg1\x00"))
	m.Write(body)
	m.Write([]byte{0})
	m.Write([]byte(binding))
	return m.Sum(nil)[:sessionMACLen]
}

// binding is what a session is bound to: the principal and the route.
func (s *sessions) binding(ctx context.Context) string {
	return s.principal(ctx) + "\x00" + stateFrom(ctx).scope.key
}

func (s *sessions) generate(binding string) string {
	body := make([]byte, sessionBodyLen)
	_, _ = rand.Read(body[:16])
	binary.BigEndian.PutUint64(body[16:], uint64(time.Now().Unix()))
	return sessionIDPrefix + b64.EncodeToString(body) + "." + b64.EncodeToString(s.mac(body, binding))
}

// check verifies id for binding. It returns the issue time.
func (s *sessions) check(id, binding string) (time.Time, error) {
	if len(id) != sessionIDLen || !strings.HasPrefix(id, sessionIDPrefix) {
		return time.Time{}, errBadSession
	}
	bodyPart, macPart, ok := strings.Cut(id[len(sessionIDPrefix):], ".")
	if !ok {
		return time.Time{}, errBadSession
	}
	body, err1 := b64.DecodeString(bodyPart)
	mac, err2 := b64.DecodeString(macPart)
	if err1 != nil || err2 != nil || len(body) != sessionBodyLen || !hmac.Equal(mac, s.mac(body, binding)) {
		return time.Time{}, errBadSession
	}
	issued := time.Unix(int64(binary.BigEndian.Uint64(body[16:])), 0)
	if time.Since(issued) > s.maxAge {
		return time.Time{}, errSessionExpired
	}
	return issued, nil
}

// validate reports whether id is a live session of binding.
func (s *sessions) validate(id, binding string) (terminated bool, err error) {
	if _, err := s.check(id, binding); err != nil {
		return false, err
	}
	_, terminated = s.terminated.Load(id)
	return terminated, nil
}

func (s *sessions) terminate(id string) {
	// The ID is not verified here: only IDs that passed check reach this
	// (Handler checks DELETE; the sweeper only knows IDs that were in use).
	if len(id) != sessionIDLen {
		return
	}
	body, err := b64.DecodeString(id[len(sessionIDPrefix) : len(sessionIDPrefix)+32])
	if err != nil || len(body) != sessionBodyLen {
		return
	}
	s.terminated.Store(id, time.Unix(int64(binary.BigEndian.Uint64(body[16:])), 0))
	s.prune()
	if s.onEnd != nil {
		s.onEnd(id)
	}
}

// prune forgets terminations of IDs past their maximum age (they fail check).
func (s *sessions) prune() {
	s.mu.Lock()
	if time.Since(s.lastPrune) < time.Minute {
		s.mu.Unlock()
		return
	}
	s.lastPrune = time.Now()
	s.mu.Unlock()
	s.terminated.Range(func(k, v any) bool {
		if time.Since(v.(time.Time)) > s.maxAge {
			s.terminated.Delete(k)
		}
		return true
	})
}

// ResolveSessionIdManager implements server.SessionIdManagerResolver: a
// manager bound to the request's principal and route. r is nil for the idle
// sweeper, which only terminates.
func (s *sessions) ResolveSessionIdManager(r *http.Request) server.SessionIdManager {
	if r == nil {
		return boundSessions{s: s, sweeper: true}
	}
	return boundSessions{s: s, binding: s.binding(r.Context())}
}

type boundSessions struct {
	s       *sessions
	binding string
	sweeper bool
}

func (b boundSessions) Generate() string {
	if b.sweeper {
		return ""
	}
	return b.s.generate(b.binding)
}

func (b boundSessions) Validate(id string) (bool, error) {
	if b.sweeper {
		return false, errBadSession
	}
	return b.s.validate(id, b.binding)
}

func (b boundSessions) Terminate(id string) (bool, error) {
	if !b.sweeper {
		if _, err := b.s.check(id, b.binding); err != nil {
			return false, err
		}
	}
	b.s.terminate(id)
	return false, nil
}
