package oauthtest

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
)

// PKCE returns a fresh code verifier and its S256 challenge.
func PKCE() (verifier, challenge string) {
	b := make([]byte, 32)
	rand.Read(b)
	verifier = base64.RawURLEncoding.EncodeToString(b)
	h := sha256.Sum256([]byte(verifier))
	return verifier, base64.RawURLEncoding.EncodeToString(h[:])
}

// Browser returns an http.Client that keeps cookies and does not follow redirects, like a
// browser whose next hop a test inspects.
func Browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

var hiddenRe = regexp.MustCompile(`<input type="hidden" name="([a-z_]+)" value="([^"]*)">`)
var actionRe = regexp.MustCompile(`<form method="post" action="([^"]*)">`)

// LoginPage is the gateway's login form as a test sees it.
type LoginPage struct {
	Action    string
	RequestID string
	CSRF      string
}

// OpenLogin GETs authorizeURL with browser and parses the gateway's login form. A response
// that is not the form (a redirect, an error page) is returned as an error with its status
// and Location.
func OpenLogin(browser *http.Client, authorizeURL string) (*LoginPage, error) {
	resp, err := browser.Get(authorizeURL)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("authorize: status %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	p := &LoginPage{}
	if m := actionRe.FindSubmatch(body); m != nil {
		p.Action = strings.ReplaceAll(string(m[1]), "&amp;", "&")
	}
	for _, m := range hiddenRe.FindAllSubmatch(body, -1) {
		switch string(m[1]) {
		case "request_id":
			p.RequestID = string(m[2])
		case "csrf":
			p.CSRF = string(m[2])
		}
	}
	if p.Action == "" || p.RequestID == "" || p.CSRF == "" {
		return nil, fmt.Errorf("authorize: no login form in the page")
	}
	return p, nil
}

// Submit posts the form with key and action ("approve" or "deny") and returns the
// response (the caller closes its body).
func (p *LoginPage) Submit(browser *http.Client, key, action string) (*http.Response, error) {
	return browser.PostForm(p.Action, url.Values{"request_id": {p.RequestID}, "csrf": {p.CSRF}, "key": {key}, "action": {action}})
}

// Login runs the gateway's login page with key and returns the redirect to the client's
// redirect URI (with code or error, state and iss).
func Login(browser *http.Client, authorizeURL, key string) (*url.URL, error) {
	p, err := OpenLogin(browser, authorizeURL)
	if err != nil {
		return nil, err
	}
	resp, err := p.Submit(browser, key, "approve")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		return nil, fmt.Errorf("login: status %d", resp.StatusCode)
	}
	return url.Parse(resp.Header.Get("Location"))
}
