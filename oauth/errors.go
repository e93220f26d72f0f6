package oauth

import (
	"errors"
	"fmt"
	"net/http"
)

// Sentinel causes. Every error the package returns to a caller that decides an HTTP
// response is an *Error wrapping one of these (or another cause), so callers branch with
// errors.Is and map to the wire with errors.As.
var (
	// ErrNoToken means the request carried no bearer token.
	ErrNoToken = errors.New("no bearer token")
	// ErrMalformedToken means the token is not a well-formed compact JWS.
	ErrMalformedToken = errors.New("malformed token")
	// ErrUnknownIssuer means the token's iss is not configured and there is no global key set.
	ErrUnknownIssuer = errors.New("unknown issuer")
	// ErrIssuerMismatch means the token's iss is not the issuer whose keys verified it.
	ErrIssuerMismatch = errors.New("issuer mismatch")
	// ErrAlgorithm means the token's alg is not allowed (none, HMAC, or outside the allow-list).
	ErrAlgorithm = errors.New("algorithm not allowed")
	// ErrUnknownKey means no key of the issuer's key set has the token's kid.
	ErrUnknownKey = errors.New("unknown signing key")
	// ErrSignature means the signature does not verify.
	ErrSignature = errors.New("invalid signature")
	// ErrExpired means exp is in the past (beyond the leeway).
	ErrExpired = errors.New("token expired")
	// ErrNotYetValid means nbf (or iat) is in the future (beyond the leeway).
	ErrNotYetValid = errors.New("token not yet valid")
	// ErrAudience means the token's aud does not contain the expected audience.
	ErrAudience = errors.New("audience mismatch")
	// ErrKeySet means the issuer's key set could not be fetched or parsed.
	ErrKeySet = errors.New("key set unavailable")
	// ErrRevoked means a gateway-issued token was revoked, or the key it stands for is gone.
	ErrRevoked = errors.New("token revoked")
	// ErrInsufficientScope means the token lacks a scope the request needs.
	ErrInsufficientScope = errors.New("insufficient scope")
)

// OAuth error codes (RFC 6749 §5.2, RFC 6750 §3.1).
const (
	CodeInvalidRequest       = "invalid_request"
	CodeInvalidClient        = "invalid_client"
	CodeInvalidGrant         = "invalid_grant"
	CodeUnauthorizedClient   = "unauthorized_client"
	CodeUnsupportedGrantType = "unsupported_grant_type"
	CodeInvalidScope         = "invalid_scope"
	CodeInvalidTarget        = "invalid_target" // RFC 8707
	CodeAccessDenied         = "access_denied"
	CodeServerError          = "server_error"
	CodeInvalidToken         = "invalid_token"
	CodeInsufficientScope    = "insufficient_scope"
	CodeInvalidRedirectURI   = "invalid_redirect_uri"    // RFC 7591
	CodeInvalidClientMeta    = "invalid_client_metadata" // RFC 7591
	CodeTemporarilyUnavail   = "temporarily_unavailable"
)

// Error is an OAuth error as it goes on the wire: an HTTP status, an RFC 6749/6750 error
// code and a description safe to show clients. Err is the cause, for logs and errors.Is.
type Error struct {
	Status      int    // HTTP status, e.g. 401
	Code        string // e.g. CodeInvalidToken
	Description string // safe for clients
	Err         error  // cause; never shown to clients
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("oauth %s: %s: %v", e.Code, e.Description, e.Err)
	}
	return fmt.Sprintf("oauth %s: %s", e.Code, e.Description)
}

func (e *Error) Unwrap() error { return e.Err }

// invalidToken is a 401 invalid_token error.
func invalidToken(cause error, desc string) *Error {
	return &Error{Status: http.StatusUnauthorized, Code: CodeInvalidToken, Description: desc, Err: cause}
}

// ErrorStatus returns the HTTP status and the wire error for err: err itself when it is
// an *Error, else a 500 server_error with a generic description.
func ErrorStatus(err error) (int, *Error) {
	var e *Error
	if errors.As(err, &e) {
		return e.Status, e
	}
	return http.StatusInternalServerError, &Error{Status: http.StatusInternalServerError,
		Code: CodeServerError, Description: "internal error", Err: err}
}
