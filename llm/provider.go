package llm

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// Usage is the token usage of one call.
type Usage struct {
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	TotalTokens      int64 `json:"total_tokens"`
	// WebSearches counts the web searches the provider ran for the call (Anthropic's
	// server_tool_use, the Responses API's web_search_call items), charged per search.
	WebSearches int64 `json:"-"`
	// FileSearches and CodeSessions count the Responses API's file_search calls and code
	// interpreter containers, charged per call and per container.
	FileSearches int64 `json:"-"`
	CodeSessions int64 `json:"-"`
	// Prompt tokens read from the provider's prompt cache and written to it (for five
	// minutes, or for an hour), part of PromptTokens and priced apart.
	CacheReadTokens    int64 `json:"-"`
	CacheWriteTokens   int64 `json:"-"`
	CacheWrite1hTokens int64 `json:"-"`
	// ImageInputTokens are the prompt tokens of input images (image edits), part of
	// PromptTokens.
	ImageInputTokens int64 `json:"-"`
}

// valid is u with any negative count (a provider's bug, which would show as negative spend)
// read as zero, and its cached and image parts no larger than the prompt.
func (u Usage) valid() Usage {
	u.PromptTokens, u.CompletionTokens = max(u.PromptTokens, 0), max(u.CompletionTokens, 0)
	u.TotalTokens, u.WebSearches = max(u.TotalTokens, 0), max(u.WebSearches, 0)
	u.FileSearches, u.CodeSessions = max(u.FileSearches, 0), max(u.CodeSessions, 0)
	u.CacheReadTokens = min(max(u.CacheReadTokens, 0), u.PromptTokens) // part of the prompt: never more
	u.CacheWriteTokens = min(max(u.CacheWriteTokens, 0), u.PromptTokens-u.CacheReadTokens)
	u.CacheWrite1hTokens = min(max(u.CacheWrite1hTokens, 0), u.PromptTokens-u.CacheReadTokens-u.CacheWriteTokens)
	u.ImageInputTokens = min(max(u.ImageInputTokens, 0), u.PromptTokens)
	return u
}

// Kinds of call a provider answers.
const (
	callChat       = "chat"
	callEmbeddings = "embeddings"
	callImages     = "images"
	callImageEdits = "image_edits"
	// callMessages is Anthropic's Messages API, served natively by anthropic/* deployments:
	// the body and the answer pass through in Anthropic's wire format.
	callMessages = "messages"
	// callResponses is OpenAI's Responses API, served by OpenAI-compatible deployments: the
	// body and the answer pass through in its wire format.
	callResponses = "responses"
	// callCompletions is OpenAI's legacy text completions (/v1/completions), which
	// OpenAI-compatible servers still serve for instruct and fill-in-the-middle models.
	callCompletions = "text_completion"
)

// provider is one vendor's wire protocol. Implementations are safe for concurrent use.
type provider interface {
	// do sends body (OpenAI wire format, model already set to the deployment's) and returns
	// the answer translated to OpenAI's wire format. With stream, the result's stream is
	// open and the body is nil. Errors from the vendor are *UpstreamError.
	do(ctx context.Context, d *Deployment, kind string, body *reqBody, stream bool) (*result, error)
}

// result is a provider's answer.
type result struct {
	// native: body and stream are in the caller's wire format (a Messages API passthrough),
	// not OpenAI's; stream events are then whole SSE events, written as they are.
	native bool
	body   []byte // OpenAI JSON (non-streaming)
	usage  Usage
	images int // images returned (image generation)
	stream chunkStream
}

// chunkStream yields OpenAI chat.completion.chunk payloads.
type chunkStream interface {
	// next returns the next chunk's JSON, or io.EOF after the last.
	next() ([]byte, error)
	// usage returns the usage reported by the provider, if it reported any, and otherwise
	// an estimate from the content streamed so far (reported false).
	usage() (Usage, bool)
	// pending reports whether more of the stream is already buffered, so the caller may
	// write the next chunk before flushing.
	pending() bool
	// close closes the stream; data returned by next must not be used after.
	close() error
}

// errTruncated is a stream that ended without its end marker ([DONE], message_stop): the
// provider went away mid-answer.
var errTruncated = &UpstreamError{Status: http.StatusBadGateway, Message: "the provider's stream ended before its end"}

// UpstreamError is an error answer (or no answer) from a provider.
type UpstreamError struct {
	Status     int           // HTTP status; 0 when the request did not get an answer
	Message    string        // the provider's error message, if it sent one
	Code       string        // the provider's error code (error.code, else error.type), if it sent one
	RetryAfter time.Duration // from Retry-After, if sent
	Err        error         // transport error when Status is 0
}

func (e *UpstreamError) Error() string {
	if e.Status == 0 {
		return fmt.Sprintf("provider unreachable: %v", e.Err)
	}
	return fmt.Sprintf("provider answered %d: %s", e.Status, e.Message)
}

func (e *UpstreamError) Unwrap() error { return e.Err }

// retryable reports whether another attempt (on this or another deployment) may succeed:
// rate limits, server errors, timeouts and transport failures.
func retryable(err error) bool {
	var ue *UpstreamError
	if errors.As(err, &ue) {
		return ue.Status == 0 || ue.Status == http.StatusTooManyRequests || ue.Status == http.StatusRequestTimeout ||
			ue.Status == http.StatusConflict || ue.Status >= 500
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded)
}

// upstreamError builds an *UpstreamError from a non-2xx response, reading its body.
func upstreamError(resp *http.Response) *UpstreamError {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return upstreamErrorOf(resp.StatusCode, resp.Header.Get("Retry-After"), b)
}

// upstreamErrorOf builds an *UpstreamError from an error answer's status, Retry-After
// header and body.
func upstreamErrorOf(status int, retryAfter string, body []byte) *UpstreamError {
	e := &UpstreamError{Status: status}
	e.Message, e.Code = errorDetails(body)
	if retryAfter != "" {
		if n, err := strconv.Atoi(retryAfter); err == nil {
			e.RetryAfter = time.Duration(n) * time.Second
		}
	}
	return e
}

// errorDetails extracts error.message (OpenAI, Anthropic), else the body itself, and
// error.code (OpenAI), else error.type (Anthropic, and OpenAI's broader class), from an
// error body, decoding it once.
func errorDetails(b []byte) (msg, code string) {
	var v struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(b, &v) == nil && len(v.Error) > 0 {
		var inner struct {
			Message string `json:"message"`
			Code    any    `json:"code"`
			Type    any    `json:"type"`
		}
		if json.Unmarshal(v.Error, &inner) == nil {
			if c, ok := inner.Code.(string); ok && c != "" {
				code = c
			} else if t, ok := inner.Type.(string); ok {
				code = t
			}
			if inner.Message != "" {
				return inner.Message, code
			}
		}
		var s string
		if json.Unmarshal(v.Error, &s) == nil {
			return s, code
		}
	}
	s := strings.TrimSpace(string(b))
	if len(s) > 500 {
		s = s[:500]
	}
	return s, code
}

// errClass sorts the refusals that have fallbacks of their own.
type errClass int

const (
	errOther         errClass = iota
	errContextWindow          // the call is longer than the model's context window
	errContentPolicy          // the provider's content policy refused the call
)

// classOf returns the class of a provider's refusal, from its code or, for providers that
// send none, its message (OpenAI, Azure, Anthropic, vLLM and others word them so).
func classOf(err error) errClass {
	var ue *UpstreamError
	if !errors.As(err, &ue) || (ue.Status != http.StatusBadRequest && ue.Status != http.StatusRequestEntityTooLarge &&
		ue.Status != http.StatusUnprocessableEntity) {
		return errOther
	}
	switch ue.Code {
	case "context_length_exceeded":
		return errContextWindow
	case "content_policy_violation", "content_filter":
		return errContentPolicy
	}
	msg := strings.ToLower(ue.Message)
	for _, s := range []string{"context length", "context window", "context_length_exceeded", "prompt is too long",
		"input is too long", "too many tokens", "maximum number of tokens"} {
		if strings.Contains(msg, s) {
			return errContextWindow
		}
	}
	for _, s := range []string{"content policy", "content management policy", "content_policy_violation", "content filter"} {
		if strings.Contains(msg, s) {
			return errContentPolicy
		}
	}
	return errOther
}

// post sends a JSON body and returns the response, or an *UpstreamError for transport
// failures and non-2xx answers.
func post(ctx context.Context, client *http.Client, url string, header http.Header, contentType string, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	injectTrace(ctx, header)
	req.Header = header
	req.Header["Content-Type"] = []string{contentType}
	resp, err := client.Do(req)
	if err != nil {
		return nil, &UpstreamError{Err: err}
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, upstreamError(resp)
	}
	return resp, nil
}

// transport sends provider requests. Non-streaming calls to a deployment reachable without
// a proxy go through fast (fasthttp: the caller's goroutine does the I/O, where net/http
// hands each request to two more goroutines per connection, which costs more than the
// rest of a completion's handling); streams, proxied providers and calls with a
// Config.HTTPClient go through client.
type transport struct {
	client *http.Client
	fast   *fasthttp.Client // nil: every call through client
}

// fastMaxWait bounds a fast call whose context has no deadline.
const fastMaxWait = 10 * time.Minute

// newFastClient is the fasthttp client for providers: connections kept per host like
// net/http's pool, waiting (not failing) when all are busy.
//
// Providers close idle keep-alive connections on their own schedule (uvicorn, in front of
// vLLM, after 5 seconds). net/http notices such a close while the connection is idle;
// fasthttp notices when it next sends on it, and the send fails before any answer. Such a
// failure is retried on another connection. After an idle close the provider never read
// the request; only a provider that drops a connection in the middle of a request (before
// answering a byte) may see that request twice.
func newFastClient() *fasthttp.Client {
	c := &fasthttp.Client{
		Name:                      "toolgate",
		MaxConnsPerHost:           4096,
		MaxConnWaitTimeout:        time.Minute,
		MaxIdleConnDuration:       30 * time.Second,
		ReadBufferSize:            16 << 10, // a response's headers must fit
		DialDualStack:             true,
		MaxIdemponentCallAttempts: 4,
	}
	c.RetryIfErr = func(_ *fasthttp.Request, _ int, err error) (resetTimeout, retry bool) {
		if !closedBeforeAnswer(err) {
			return false, false
		}
		// The other connections that sat idle as long are likely closed too: drop them, so
		// the retry (and the calls after it) dial afresh.
		c.CloseIdleConnections()
		return false, true
	}
	return c
}

// closedBeforeAnswer reports whether err means the connection was closed or reset before
// any of the answer arrived.
func closedBeforeAnswer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, fasthttp.ErrConnectionClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// call sends a non-streaming request and returns the answer's body, or an *UpstreamError.
func (t *transport) call(ctx context.Context, d *Deployment, url string, header http.Header, contentType string, body []byte) ([]byte, error) {
	if t.fast != nil && d.direct {
		return fastPost(ctx, t.fast, url, header, contentType, body)
	}
	resp, err := post(ctx, t.client, url, header, contentType, body)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, err := readAll(resp)
	if err != nil {
		return nil, &UpstreamError{Err: err}
	}
	return out, nil
}

// fastPost sends a request with fasthttp, in the caller's goroutine, until ctx's deadline.
// fasthttp takes no context: a caller that goes away is noticed when the provider has
// answered (or the deadline passed), and the call then counts as cancelled, as with
// net/http. Until then the call holds its place in the caller's parallel-request limit,
// so going away early cannot be used to run more calls at once than the limit allows.
func fastPost(ctx context.Context, c *fasthttp.Client, url string, header http.Header, contentType string, body []byte) ([]byte, error) {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(url)
	req.Header.SetMethod(http.MethodPost)
	req.Header.SetContentType(contentType)
	injectTrace(ctx, header)
	for k, v := range header {
		if len(v) > 0 {
			req.Header.Set(k, v[0])
		}
	}
	req.SetBodyRaw(body)
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(fastMaxWait)
	}
	err := c.DoDeadline(req, resp, deadline)
	if cerr := ctx.Err(); cerr != nil {
		return nil, &UpstreamError{Err: cerr}
	}
	if err != nil {
		return nil, &UpstreamError{Err: err}
	}
	if st := resp.StatusCode(); st/100 != 2 {
		b := resp.Body()
		if len(b) > 64<<10 {
			b = b[:64<<10]
		}
		return nil, upstreamErrorOf(st, string(resp.Header.Peek("Retry-After")), b)
	}
	return append([]byte(nil), resp.Body()...), nil
}

// reachableDirectly reports whether calls to rawURL go to the provider itself: no
// HTTP_PROXY, HTTPS_PROXY or NO_PROXY setting sends them through a proxy.
func reachableDirectly(proxy func(*url.URL) (*url.URL, error), rawURL string) bool {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return false
	}
	p, err := proxy(u)
	return err == nil && p == nil
}

// readAll reads a response body whole, into one buffer of the announced length when there
// is one (io.ReadAll would grow its buffer step by step).
func readAll(resp *http.Response) ([]byte, error) {
	n := resp.ContentLength
	if n < 0 || n >= 64<<20 {
		return io.ReadAll(resp.Body)
	}
	b := make([]byte, n+1) // one byte over, to see the end without a second buffer
	m, err := io.ReadFull(resp.Body, b)
	switch {
	case int64(m) == n && (err == io.ErrUnexpectedEOF || err == io.EOF):
		return b[:m], nil // exactly as announced
	case err == nil: // more than announced
		rest, err := io.ReadAll(resp.Body)
		return append(b, rest...), err
	case err == io.EOF:
		return nil, io.ErrUnexpectedEOF
	default:
		return nil, err
	}
}

// sseReader reads Server-Sent Events, returning each event's type and data.
type sseReader struct {
	r    *bufio.Reader
	data []byte // the last event's data, reused by the next event
}

// sseBuffers holds the 16 KiB read buffers of finished streams for the next ones: a
// stream is short-lived, and a fresh buffer for each would be most of what it allocates.
var sseBuffers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 16<<10) }}

func newSSEReader(r io.Reader) *sseReader {
	br := sseBuffers.Get().(*bufio.Reader)
	br.Reset(r)
	return &sseReader{r: br}
}

// release returns the reader's buffer to the pool. Data returned by event before must not
// be used after, nor may event be called again.
func (s *sseReader) release() {
	if s.r != nil {
		s.r.Reset(nil)
		sseBuffers.Put(s.r)
		s.r = nil
	}
}

// event returns the next event with a data field. At the end of the stream it returns
// io.EOF. data is valid until the next call.
func (s *sseReader) event() (typ string, data []byte, err error) {
	data = s.data[:0]
	defer func() { s.data = data[:0] }()
	for {
		line, err := s.r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// A long line: collect it whole.
			rest, err2 := s.r.ReadBytes('\n')
			line = append(append([]byte(nil), line...), rest...)
			err = err2
		}
		if len(line) == 0 && err != nil {
			if err == io.EOF && len(data) > 0 {
				return typ, data, nil
			}
			return "", nil, err
		}
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case len(line) == 0:
			if len(data) > 0 {
				return typ, data, nil
			}
		case bytes.HasPrefix(line, []byte("data:")):
			d := bytes.TrimPrefix(bytes.TrimPrefix(line, []byte("data:")), []byte(" "))
			if len(data) > 0 {
				data = append(data, '\n')
			}
			data = append(data, d...)
		case bytes.HasPrefix(line, []byte("event:")):
			typ = string(bytes.TrimSpace(bytes.TrimPrefix(line, []byte("event:"))))
		}
		if err != nil {
			if len(data) > 0 {
				return typ, data, nil
			}
			return "", nil, err
		}
	}
}

// sseBody is a provider's event stream: the response body and its reader. Embedded in
// the chunkStreams, it gives them pending and close.
type sseBody struct {
	body io.ReadCloser
	sse  *sseReader
}

func newSSEBody(body io.ReadCloser) sseBody { return sseBody{body: body, sse: newSSEReader(body)} }

// event returns the next event. The end of the body is io.EOF when the stream may end
// there (ended), and errTruncated when it may not: the provider went away mid-answer.
func (b *sseBody) event(ended bool) (typ string, data []byte, err error) {
	typ, data, err = b.sse.event()
	if errors.Is(err, io.EOF) && !ended {
		err = errTruncated
	}
	return typ, data, err
}

func (b *sseBody) pending() bool { return b.sse.buffered() }

func (b *sseBody) close() error {
	err := b.body.Close()
	b.sse.release()
	return err
}

// appendEvent appends a Server-Sent Event to buf: its type line when typ is set, then data,
// each of its lines on a data line of its own (the reader joined an event's data lines
// with newlines: written on one line, the later ones would be lost), and the blank line.
func appendEvent(buf []byte, typ string, data []byte) []byte {
	if typ != "" {
		buf = append(append(append(buf, "event: "...), typ...), '\n')
	}
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		buf = append(append(append(buf, "data: "...), data[:i]...), '\n')
		data = data[i+1:]
	}
	return append(append(append(buf, "data: "...), data...), "\n\n"...)
}

// buffered reports whether unread bytes are buffered.
func (s *sseReader) buffered() bool { return s.r.Buffered() > 0 }

// promptTokens is the prompt-token estimate used for reservations: one token per three
// bytes of the request's messages (JSON included), on the high side of real tokenizers
// for English and close for CJK text, so that a reservation rarely falls short.
func promptTokens(n int) int64 {
	if n <= 0 {
		return 0
	}
	return int64((n + 2) / 3)
}

// estimateTokens is a rough token count of text: one token per four bytes, at least one
// for non-empty text.
func estimateTokens(n int) int64 {
	if n <= 0 {
		return 0
	}
	return int64((n + 3) / 4)
}
