package federation

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// Federated names.
//
// On aggregate routes (/mcp, /mcp/a,b, REST) a tool or prompt is shown as
// "{server}-{name}". The name is built from its own server and tool only, so
// it is the same whether one or fifty servers are registered, and it is
// resolved through a lookup table, never by splitting on the separator.
//
// Every federated name matches ^[A-Za-z0-9_-]{1,64}$. The server part keeps
// only [A-Za-z0-9_] (anything else becomes "_"), so the first "-" always ends
// it; the tool part keeps [A-Za-z0-9_-]. When either part had to be changed,
// or the whole would exceed 64 characters, the name is cut to 55 characters
// and "_" plus the first 8 hex digits of SHA-256(server "\x00" tool) is
// appended, which keeps names of different (server, tool) pairs apart.
//
// Resource URIs on aggregate routes are "toolgate://{server}/{original URI}"
// (templates likewise: "toolgate://{server}/{original template}"). Server
// names never contain "/", so the server is everything between the scheme
// and the next "/" and the rest is the upstream URI, byte for byte.

const (
	maxNameLen = 64
	hashLen    = 8
	uriScheme  = "toolgate://"
)

// federatedName returns the aggregate-route name of tool on server.
func federatedName(server, tool string) string {
	s, sChanged := sanitize(server, false)
	t, tChanged := sanitize(tool, true)
	if s == "" {
		s, sChanged = "_", true
	}
	if t == "" {
		t, tChanged = "_", true
	}
	name := s + "-" + t
	if !sChanged && !tChanged && len(name) <= maxNameLen {
		return name
	}
	sum := sha256.Sum256([]byte(server + "\x00" + tool))
	suffix := hex.EncodeToString(sum[:])[:hashLen]
	if keep := maxNameLen - hashLen - 1; len(name) > keep {
		name = name[:keep]
	}
	return name + "_" + suffix
}

// sanitize maps s to the allowed charset ([A-Za-z0-9_], plus "-" when dash)
// and reports whether anything changed.
func sanitize(s string, dash bool) (string, bool) {
	ok := true
	for i := 0; i < len(s); i++ {
		if !nameByte(s[i], dash) {
			ok = false
			break
		}
	}
	if ok {
		return s, false
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if nameByte(c, dash) {
			b.WriteByte(c)
		} else if c < 0x80 || c >= 0xC0 { // one "_" per rune, not per byte
			b.WriteByte('_')
		}
	}
	return b.String(), true
}

func nameByte(c byte, dash bool) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || dash && c == '-'
}

// validName reports whether s matches ^[A-Za-z0-9_-]{1,64}$.
func validName(s string) bool {
	if len(s) == 0 || len(s) > maxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !nameByte(s[i], true) {
			return false
		}
	}
	return true
}

// federatedURI returns the aggregate-route form of an upstream URI or URI
// template.
func federatedURI(server, uri string) string { return uriScheme + server + "/" + uri }

// splitFederatedURI reverses federatedURI. ok is false when uri is not in
// that form.
func splitFederatedURI(uri string) (server, original string, ok bool) {
	rest, found := strings.CutPrefix(uri, uriScheme)
	if !found {
		return "", "", false
	}
	server, original, found = strings.Cut(rest, "/")
	if !found || server == "" {
		return "", "", false
	}
	return server, original, true
}
