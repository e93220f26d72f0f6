package llm

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
)

// A Responses API answer from an OpenAI-compatible deployment is stored by that provider
// account, under an ID only it knows. The gateway hands callers its own ID for it instead:
// the deployment and the provider's ID, bound to the caller by an HMAC. With it:
//   - a call with previous_response_id goes to the deployment that holds the previous
//     response (a model name with several deployments would otherwise send it to one that
//     answers "not found");
//   - GET and DELETE /v1/responses/{id} and its input_items know where to go;
//   - one caller cannot continue, read or delete another's responses by learning an ID:
//     the provider sees one account for all callers, so its IDs alone would be bearer
//     capabilities across every key of the gateway.
//
// The ID is "resp_tg1_" + base64url(deployment ID, NUL, provider ID, tag), where tag is the
// first 16 bytes of HMAC-SHA256 over the owner, the deployment ID and the provider ID.

const responseIDPrefix = "resp_tg1_"

const responseTagLen = 16

// responseIDs issues and reads the gateway's response IDs.
type responseIDs struct {
	key []byte
}

func newResponseIDs(key []byte) responseIDs {
	if len(key) == 0 {
		key = make([]byte, 32)
		_, _ = rand.Read(key)
	}
	return responseIDs{key: key}
}

func (r responseIDs) tag(owner, deployment, upstream string) []byte {
	m := hmac.New(sha256.New, r.key)
	for _, s := range []string{owner, deployment, upstream} {
		m.Write([]byte(s))
		m.Write([]byte{0})
	}
	return m.Sum(nil)[:responseTagLen]
}

// issue returns the caller's ID for the response upstream made by deployment.
func (r responseIDs) issue(owner, deployment, upstream string) string {
	raw := make([]byte, 0, len(deployment)+1+len(upstream)+responseTagLen)
	raw = append(append(append(raw, deployment...), 0), upstream...)
	raw = append(raw, r.tag(owner, deployment, upstream)...)
	return responseIDPrefix + base64.RawURLEncoding.EncodeToString(raw)
}

// read returns the deployment and provider ID of an ID issued to owner. ok is false for
// anything else: not an ID of the gateway's, altered, or issued to another caller.
func (r responseIDs) read(owner, id string) (deployment, upstream string, ok bool) {
	enc, found := strings.CutPrefix(id, responseIDPrefix)
	if !found {
		return "", "", false
	}
	raw, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil || len(raw) < responseTagLen+1 {
		return "", "", false
	}
	body, tag := raw[:len(raw)-responseTagLen], raw[len(raw)-responseTagLen:]
	d, u, found := strings.Cut(string(body), "\x00")
	if !found || d == "" || u == "" {
		return "", "", false
	}
	if !hmac.Equal(tag, r.tag(owner, d, u)) {
		return "", "", false
	}
	return d, u, true
}

// owner names whose response IDs a caller may use: its key, else its user, else its team
// (a token with neither), else admins share one and other callers another.
func (c *Caller) owner() string {
	switch {
	case c.KeyID != "":
		return "key:" + c.KeyID
	case c.UserID != "":
		return "user:" + c.UserID
	case c.TeamID != "":
		return "team:" + c.TeamID
	case c.Admin:
		return "admin"
	}
	return "caller"
}

// withID returns the JSON object obj with its top-level "id" replaced by the string id.
// obj is returned unchanged when it is not an object or has no string id.
func withID(obj []byte, rename func(string) string) []byte {
	b, err := parseBody(obj)
	if err != nil {
		return obj
	}
	old, ok := b.text("id")
	if !ok || old == "" {
		return obj
	}
	v, _ := json.Marshal(rename(old))
	b.set("id", v)
	return b.encodeJSON()
}

// withResponseID returns a Responses API stream event with the id of its "response"
// object renamed; events without one are returned unchanged.
func withResponseID(event []byte, rename func(string) string) []byte {
	b, err := parseBody(event)
	if err != nil {
		return event
	}
	resp := b.get("response")
	if len(resp) == 0 || resp[0] != '{' {
		return event
	}
	b.set("response", withID(resp, rename))
	return b.encodeJSON()
}
