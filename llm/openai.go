package llm

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/url"
	"strings"
)

// defaultBases are the API bases of OpenAI-compatible providers known by prefix.
var defaultBases = map[string]string{
	"openai":       "https://api.openai.com/v1",
	"groq":         "https://api.groq.com/openai/v1",
	"mistral":      "https://api.mistral.ai/v1",
	"deepseek":     "https://api.deepseek.com/v1",
	"together_ai":  "https://api.together.xyz/v1",
	"fireworks_ai": "https://api.fireworks.ai/inference/v1",
	"openrouter":   "https://openrouter.ai/api/v1",
	"xai":          "https://api.x.ai/v1",
	"perplexity":   "https://api.perplexity.ai",
	"deepinfra":    "https://api.deepinfra.com/v1/openai",
	"ollama":       "http://localhost:11434/v1",
	"ollama_chat":  "http://localhost:11434/v1",
}

// defaultAzureAPIVersion is used for azure/ deployments that set no api_version.
const defaultAzureAPIVersion = "2024-10-21"

// defaultAzureResponsesVersion is the api-version of Azure's Responses API for azure/
// deployments that set none (the general one predates it).
const defaultAzureResponsesVersion = "2025-04-01-preview"

// openAI speaks OpenAI's wire format: OpenAI itself, Azure OpenAI (deployment URLs and
// api-version) and any OpenAI-compatible server (vLLM, Ollama, Groq, Mistral, DeepSeek...).
type openAI struct {
	tr *transport
}

func (p *openAI) endpoint(d *Deployment, kind string) string {
	var path string
	switch kind {
	case callChat:
		path = "/chat/completions"
	case callCompletions:
		path = "/completions"
	case callEmbeddings:
		path = "/embeddings"
	case callImages:
		path = "/images/generations"
	case callImageEdits:
		path = "/images/edits"
	case callResponses:
		path = "/responses"
	}
	base := strings.TrimRight(d.APIBase, "/")
	if d.Provider == "azure" && kind == callResponses {
		// The Responses API is not under a deployment: the body's model names it.
		base, _, _ = strings.Cut(base, "/openai/deployments/")
		return base + "/openai/responses?api-version=" + url.QueryEscape(cmp.Or(d.APIVersion, defaultAzureResponsesVersion))
	}
	if d.Provider == "azure" {
		v := d.APIVersion
		if v == "" {
			v = defaultAzureAPIVersion
		}
		if !strings.Contains(base, "/openai/deployments/") {
			base += "/openai/deployments/" + url.PathEscape(d.Model)
		}
		return base + path + "?api-version=" + url.QueryEscape(v)
	}
	if base == "" {
		base = defaultBases[d.Provider]
		if base == "" {
			base = defaultBases["openai"]
		}
	}
	return base + path
}

func (p *openAI) do(ctx context.Context, d *Deployment, kind string, body *reqBody, stream bool) (*result, error) {
	if kind == callMessages {
		return nil, notNative(d)
	}
	b, contentType := body.encode()
	auth := d.credentials()
	h := make(http.Header, len(auth)+3)
	maps.Copy(h, auth)
	if stream {
		h.Set("Accept", "text/event-stream")
		resp, err := post(ctx, p.tr.client, p.endpoint(d, kind), h, contentType, b)
		if err != nil {
			return nil, err
		}
		if kind == callResponses {
			return &result{native: true, stream: &responsesStream{sseBody: newSSEBody(resp.Body)}}, nil
		}
		st := &openAIStream{sseBody: newSSEBody(resp.Body), keys: contentKeys}
		if kind == callCompletions {
			st.keys = textKeys
		}
		return &result{stream: st}, nil
	}
	out, err := p.tr.call(ctx, d, p.endpoint(d, kind), h, contentType, b)
	if err != nil {
		return nil, err
	}
	r := &result{body: out, usage: usageOf(out)} // token-priced image models report usage too
	if kind == callImages || kind == callImageEdits {
		var v struct {
			Data []json.RawMessage `json:"data"`
		}
		_ = json.Unmarshal(out, &v)
		r.images = len(v.Data)
	} else if kind == callResponses {
		responseTools(&r.usage, out)
	}
	return r, nil
}

// credentials is the credential header of d's calls, built once for the router's
// deployments and here for a copy with client-side credentials. Callers must not change it.
func (d *Deployment) credentials() http.Header {
	if d.auth != nil {
		return d.auth
	}
	return authHeader(d)
}

// authHeader is the credential header of d's calls to an OpenAI-compatible provider.
func authHeader(d *Deployment) http.Header {
	h := http.Header{}
	if d.APIKey != "" {
		if d.Provider == "azure" {
			h.Set("api-key", d.APIKey)
		} else {
			h.Set("Authorization", "Bearer "+d.APIKey)
		}
	}
	if d.Organization != "" {
		h.Set("OpenAI-Organization", d.Organization)
	}
	return h
}

// usageOf finds the top-level "usage" object of an OpenAI answer without decoding the
// whole answer: usage comes last in OpenAI's answers, so the last "usage" key is tried
// first, and the full decode is the fallback.
func usageOf(body []byte) Usage {
	if i := bytes.LastIndex(body, []byte(`"usage"`)); i >= 0 {
		rest := bytes.TrimLeft(body[i+len(`"usage"`):], " \t\r\n")
		if len(rest) > 0 && rest[0] == ':' {
			if obj := leadingObject(rest[1:]); obj != nil {
				if u, err := usageFrom(obj); err == nil {
					return u
				}
			}
		}
	}
	var v struct {
		Usage *Usage `json:"usage"`
	}
	if json.Unmarshal(body, &v) == nil && v.Usage != nil {
		return v.Usage.valid()
	}
	return Usage{}
}

// usageFrom reads the token counts of an OpenAI usage object (chat completions' or the
// Responses API's), the last of repeated names winning as in encoding/json.
func usageFrom(obj []byte) (Usage, error) {
	var u Usage
	err := eachField(obj, func(f bodyField) {
		switch string(f.name) {
		case "prompt_tokens", "input_tokens": // chat completions' names, then the Responses API's
			if n, ok := integer(f.val); ok {
				u.PromptTokens = n
			}
		case "completion_tokens", "output_tokens":
			if n, ok := integer(f.val); ok {
				u.CompletionTokens = n
			}
		case "total_tokens":
			if n, ok := integer(f.val); ok {
				u.TotalTokens = n
			}
		case "prompt_tokens_details", "input_tokens_details": // the part of the prompt read from the cache
			_ = eachField(f.val, func(d bodyField) {
				n, ok := integer(d.val)
				switch {
				case !ok:
				case string(d.name) == "cached_tokens":
					u.CacheReadTokens = n
				case string(d.name) == "image_tokens": // image models: the input images' part
					u.ImageInputTokens = n
				}
			})
		}
	})
	return u.valid(), err
}

// leadingObject returns the JSON object b starts with (after white space), or nil when b
// does not start with a complete one. It only matches braces outside strings; json.Unmarshal
// validates the rest.
func leadingObject(b []byte) []byte {
	b = bytes.TrimLeft(b, " \t\r\n")
	if len(b) == 0 || b[0] != '{' {
		return nil
	}
	depth, inString := 0, false
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case inString && c == '\\':
			i++
		case c == '"':
			inString = !inString
		case inString:
		case c == '{':
			depth++
		case c == '}':
			if depth--; depth == 0 {
				return b[:i+1]
			}
		}
	}
	return nil
}

// openAIStream passes OpenAI chunks through unchanged, noting usage when a chunk carries it
// and counting content bytes for the fallback estimate.
type openAIStream struct {
	sseBody
	keys      [][]byte // the chunk fields whose string values are generated text
	finished  bool     // a choice has had its finish_reason
	got       Usage
	hasUsage  bool
	contentSz int
}

// openAIChunk is the part of a chunk read for usage.
type openAIChunk struct {
	Usage json.RawMessage `json:"usage"`
}

func (s *openAIStream) next() ([]byte, error) {
	// Some OpenAI-compatible servers end without [DONE]; that is a normal end once a
	// choice has finished, and a provider gone mid-answer before.
	_, data, err := s.event(s.finished)
	if err != nil {
		return nil, err
	}
	if string(data) == "[DONE]" {
		return nil, io.EOF
	}
	if !s.finished && (bytes.Contains(data, []byte(`"finish_reason":"`)) || bytes.Contains(data, []byte(`"finish_reason": "`))) {
		s.finished = true
	}
	if bytes.Contains(data, []byte(`"usage":{`)) || bytes.Contains(data, []byte(`"usage": {`)) {
		var c openAIChunk
		if json.Unmarshal(data, &c) == nil && len(c.Usage) > 0 && c.Usage[0] == '{' {
			if u, err := usageFrom(c.Usage); err == nil && (u.PromptTokens > 0 || u.CompletionTokens > 0) {
				s.got, s.hasUsage = u, true
			}
		}
	}
	s.contentSz += contentBytes(data, s.keys)
	return data, nil
}

// contentKeys are a chat chunk's fields whose string values are generated text; textKeys
// a text completion chunk's.
var (
	contentKeys = [][]byte{[]byte(`"content":`), []byte(`"reasoning_content":`), []byte(`"arguments":`), []byte(`"name":`)}
	textKeys    = [][]byte{[]byte(`"text":`)}
)

// contentBytes sums the lengths of the string values of keys in a chunk, without decoding
// it: the fallback estimate needs only their size.
func contentBytes(data []byte, keys [][]byte) int {
	n := 0
	for _, k := range keys {
		rest := data
		for {
			i := bytes.Index(rest, k)
			if i < 0 {
				break
			}
			rest = bytes.TrimLeft(rest[i+len(k):], " ")
			if len(rest) == 0 || rest[0] != '"' {
				continue
			}
			j := 1
			for j < len(rest) && rest[j] != '"' {
				if rest[j] == '\\' {
					j++
				}
				j++
			}
			n += j - 1
			if j >= len(rest) {
				break
			}
			rest = rest[j+1:]
		}
	}
	return n
}

func (s *openAIStream) usage() (Usage, bool) {
	if s.hasUsage {
		return s.got, true
	}
	return Usage{CompletionTokens: estimateTokens(s.contentSz)}, false
}
