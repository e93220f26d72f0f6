package llm

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
)

//go:embed model_prices.json
var defaultPrices []byte

// DefaultOutputAllowance is the output-token allowance reserved for a chat request that sets
// no max_tokens, before clamping to the model's max_output_tokens.
const DefaultOutputAllowance = 16384

// Price is one model's entry in the cost map, in LiteLLM's model_prices_and_context_window
// field names. Costs are US dollars.
type Price struct {
	Mode               string  `json:"mode"`
	Provider           string  `json:"litellm_provider"`
	InputCostPerToken  float64 `json:"input_cost_per_token"`
	OutputCostPerToken float64 `json:"output_cost_per_token"`
	InputCostPerImage  float64 `json:"input_cost_per_image"`
	OutputCostPerImage float64 `json:"output_cost_per_image"`
	// Image models priced by tokens (gpt-image-1 and later): image tokens in the input
	// (edits) and the generated image's tokens. Their text input is input_cost_per_token.
	InputCostPerImageToken  float64 `json:"input_cost_per_image_token"`
	OutputCostPerImageToken float64 `json:"output_cost_per_image_token"`
	MaxInputTokens          int64   `json:"max_input_tokens"`
	MaxOutputTokens         int64   `json:"max_output_tokens"`
	MaxTokens               int64   `json:"max_tokens"`
	// SearchCostPerQuery prices a provider-run web search by search_context_size
	// ("search_context_size_low", "_medium", "_high"), as LiteLLM's map has it.
	SearchCostPerQuery map[string]float64 `json:"search_context_cost_per_query"`
	// Hosted tools of the Responses API: a code interpreter container, and a thousand
	// file_search calls. A deployment whose model has no container price takes its
	// provider's ("openai/container" in the map).
	CodeInterpreterCostPerSession float64 `json:"code_interpreter_cost_per_session"`
	FileSearchCostPer1kCalls      float64 `json:"file_search_cost_per_1k_calls"`
	// Prompt-cache prices: tokens read from the provider's cache, and written to it (for
	// Anthropic's one-hour cache, CacheWrite1hCostPerToken). Unset, such tokens cost the
	// input price.
	CacheReadCostPerToken    *float64 `json:"cache_read_input_token_cost"`
	CacheWriteCostPerToken   *float64 `json:"cache_creation_input_token_cost"`
	CacheWrite1hCostPerToken *float64 `json:"cache_creation_input_token_cost_above_1hr"`

	// variants are the rates of the token prices above for long prompts and service tiers,
	// from the map's input_cost_per_token_above_200k_tokens, output_cost_per_token_priority,
	// cache_read_input_token_cost_above_272k_tokens_flex... Parsed once, when the entry is
	// read: For runs on every call.
	variants []rateVariant
}

// rateVariant is one rate of tokenRates for long prompts, a service tier, or both.
type rateVariant struct {
	rate  int    // index in tokenRates
	above int64  // prompt tokens a call must pass for it; 0 for a tier's own rate
	tier  string // "", "priority" or "flex"
	value float64
}

// tokenRates are the price fields variants apply to.
var tokenRates = []string{"input_cost_per_token", "output_cost_per_token", "cache_read_input_token_cost",
	"cache_creation_input_token_cost", "cache_creation_input_token_cost_above_1hr"}

// parseVariant reads a variant's name: a token rate, then "_above_Nk_tokens" and optionally
// "_priority" or "_flex", or just the tier.
func parseVariant(name string) (rateVariant, bool) {
	for i, r := range tokenRates {
		rest, ok := strings.CutPrefix(name, r+"_")
		if !ok {
			continue
		}
		if rest == "priority" || rest == "flex" {
			return rateVariant{rate: i, tier: rest}, true
		}
		rest, ok = strings.CutPrefix(rest, "above_")
		if !ok {
			continue
		}
		num, tier, ok := strings.Cut(rest, "k_tokens")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(num, 10, 64)
		tier = strings.TrimPrefix(tier, "_")
		if err != nil || n <= 0 || (tier != "" && tier != "priority" && tier != "flex") {
			continue
		}
		return rateVariant{rate: i, above: n * 1000, tier: tier}, true
	}
	return rateVariant{}, false
}

// UnmarshalJSON decodes a price map entry, keeping the variant rates beside the fields.
func (p *Price) UnmarshalJSON(b []byte) error {
	type fields Price // without this method
	if err := json.Unmarshal(b, (*fields)(p)); err != nil {
		return err
	}
	if !bytes.Contains(b, []byte("_above_")) && !bytes.Contains(b, []byte("_priority")) && !bytes.Contains(b, []byte("_flex")) {
		return nil
	}
	own := false // p.variants may be a cost map entry's, shared: it is never written
	return eachField(b, func(fd bodyField) {
		v, ok := parseVariant(string(fd.name))
		if !ok {
			return
		}
		f, err := strconv.ParseFloat(string(fd.val), 64)
		if err != nil {
			return
		}
		if !own {
			p.variants, own = slices.Clone(p.variants), true
		}
		v.value = f
		for i, old := range p.variants {
			if old.rate == v.rate && old.above == v.above && old.tier == v.tier { // an override
				p.variants[i] = v
				return
			}
		}
		p.variants = append(p.variants, v)
	})
}

// For returns p with the token rates of a call whose prompt has promptTokens tokens and
// that asked for service tier tier ("priority", "flex"; others are the standard rates):
// for each rate, the long-prompt rate of the highest threshold the prompt passes (in the
// tier when the map has it), else the tier's rate, else the standard one. Providers
// price a whole call at its long-prompt rates once its prompt passes the threshold.
func (p Price) For(promptTokens int64, tier string) Price {
	if len(p.variants) == 0 {
		return p
	}
	if tier != "priority" && tier != "flex" {
		tier = ""
	}
	out := p
	for rate := range tokenRates {
		best, bestAbove := -1, int64(-1)
		for i, v := range p.variants {
			if v.rate != rate || (v.tier != "" && v.tier != tier) || (v.above > 0 && promptTokens <= v.above) {
				continue
			}
			// The highest threshold passed wins; at the same one, the tier's own rate.
			if v.above > bestAbove || (v.above == bestAbove && v.tier != "") {
				best, bestAbove = i, v.above
			}
		}
		if best < 0 {
			continue
		}
		v := p.variants[best].value
		switch rate {
		case 0:
			out.InputCostPerToken = v
		case 1:
			out.OutputCostPerToken = v
		case 2:
			out.CacheReadCostPerToken = &v
		case 3:
			out.CacheWriteCostPerToken = &v
		case 4:
			out.CacheWrite1hCostPerToken = &v
		}
	}
	return out
}

// HostedToolCost is the price of u's file searches and code interpreter containers.
func (p Price) HostedToolCost(u Usage) float64 {
	return float64(u.FileSearches)*p.FileSearchCostPer1kCalls/1000 + float64(u.CodeSessions)*p.CodeInterpreterCostPerSession
}

// SearchCost is the price of one provider-run web search at size ("low", "medium" or
// "high"; "" is medium, the providers' default), or 0 when the model has no search price.
func (p Price) SearchCost(size string) float64 {
	if size == "" {
		size = "medium"
	}
	if c, ok := p.SearchCostPerQuery["search_context_size_"+size]; ok {
		return c
	}
	return p.SearchCostPerQuery["search_context_size_medium"]
}

// IsImage reports whether the model is priced per image (mode image_generation or
// image_edit). Chat models that carry image fields are priced by tokens.
func (p Price) IsImage() bool { return p.Mode == "image_generation" || p.Mode == "image_edit" }

// OutputAllowance clamps a request's max_tokens (0 when absent) to what the model can
// produce: absent means DefaultOutputAllowance; the cap is max_output_tokens, else
// max_tokens.
func (p Price) OutputAllowance(requested int64) int64 {
	a := requested
	if a <= 0 {
		a = DefaultOutputAllowance
	}
	limit := p.MaxOutputTokens
	if limit <= 0 {
		limit = p.MaxTokens
	}
	if limit > 0 && a > limit {
		a = limit
	}
	return a
}

// ChatReserve is the amount to reserve for a chat call: the prompt estimate at the input
// price plus the output allowance at the output price.
func (p Price) ChatReserve(promptTokens, maxTokens int64) float64 {
	return float64(promptTokens)*p.InputCostPerToken + float64(p.OutputAllowance(maxTokens))*p.OutputCostPerToken
}

// TokenPricedImages reports whether an image model is priced by the tokens of its images
// rather than per image.
func (p Price) TokenPricedImages() bool {
	return p.InputCostPerImage == 0 && p.OutputCostPerImage == 0 && p.OutputCostPerImageToken > 0
}

// imageTokenTable is OpenAI's output tokens per image by quality, for the sizes 1024x1024,
// 1024x1536 and 1536x1024.
var imageTokenTable = map[string][3]int64{"low": {272, 408, 400}, "medium": {1056, 1584, 1568}, "high": {4160, 6240, 6208}}

// imageTokens is how many output tokens OpenAI's token-priced image models spend on one
// image of quality and size (OpenAI's table); an unknown or "auto" quality or size counts
// as the dearest.
func imageTokens(quality, size string) int64 {
	row, ok := imageTokenTable[quality]
	if !ok {
		row = imageTokenTable["high"]
	}
	switch size {
	case "1024x1024":
		return row[0]
	case "1536x1024":
		return row[2]
	default: // 1024x1536, the dearest, and auto or sizes the table has not got
		return row[1]
	}
}

// ImageReserve is the amount to reserve for n images of quality and size from a
// token-priced image model, after a prompt of promptTokens text tokens.
func (p Price) ImageReserve(n int, promptTokens int64, quality, size string) float64 {
	return float64(promptTokens)*p.InputCostPerToken + float64(int64(max(n, 1))*imageTokens(quality, size))*p.OutputCostPerImageToken
}

// ImageUsageCost is the cost of a token-priced image call that used u: text input at the
// input price, image input at the image input price, and the generated images' tokens.
func (p Price) ImageUsageCost(u Usage) float64 {
	text := max(u.PromptTokens-u.ImageInputTokens, 0)
	return float64(text)*p.InputCostPerToken + float64(u.ImageInputTokens)*p.InputCostPerImageToken +
		float64(u.CompletionTokens)*p.OutputCostPerImageToken
}

// ImageCost is the cost of n images: n x (input_cost_per_image + output_cost_per_image).
func (p Price) ImageCost(n int) float64 {
	if n <= 0 {
		n = 1
	}
	return float64(n) * (p.InputCostPerImage + p.OutputCostPerImage)
}

// TokenCost is the cost of a call that used the given tokens, none of them cached.
func (p Price) TokenCost(prompt, completion int64) float64 {
	return float64(prompt)*p.InputCostPerToken + float64(completion)*p.OutputCostPerToken
}

// UsageCost is the cost of the tokens of u: its prompt tokens at the input price, except
// those read from or written to the provider's prompt cache, at the model's cache prices.
func (p Price) UsageCost(u Usage) float64 {
	in := p.InputCostPerToken
	orIn := func(c *float64) float64 {
		if c == nil {
			return in
		}
		return *c
	}
	write1h := p.CacheWrite1hCostPerToken
	if write1h == nil {
		write1h = p.CacheWriteCostPerToken
	}
	plain := max(u.PromptTokens-u.CacheReadTokens-u.CacheWriteTokens-u.CacheWrite1hTokens, 0)
	return float64(plain)*in + float64(u.CacheReadTokens)*orIn(p.CacheReadCostPerToken) +
		float64(u.CacheWriteTokens)*orIn(p.CacheWriteCostPerToken) + float64(u.CacheWrite1hTokens)*orIn(write1h) +
		float64(u.CompletionTokens)*p.OutputCostPerToken
}

// CostMap maps model names to prices. It is read-only after construction and safe for
// concurrent use.
type CostMap struct {
	m map[string]Price
}

// ParseCostMap parses a cost map in LiteLLM's JSON format. Entries that do not decode (the
// documentation entry sample_spec) are skipped.
func ParseCostMap(data []byte) (*CostMap, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("parse cost map: %w", err)
	}
	c := &CostMap{m: make(map[string]Price, len(raw))}
	for name, v := range raw {
		var p Price
		if json.Unmarshal(v, &p) == nil {
			c.m[name] = p
		}
	}
	return c, nil
}

var (
	defaultOnce sync.Once
	defaultMap  *CostMap
)

// DefaultCostMap returns the embedded cost map (LiteLLM's public price list).
func DefaultCostMap() *CostMap {
	defaultOnce.Do(func() {
		c, err := ParseCostMap(defaultPrices)
		if err != nil {
			panic(err) // the embedded file is checked by tests
		}
		defaultMap = c
	})
	return defaultMap
}

// Len reports how many models the map prices.
func (c *CostMap) Len() int { return len(c.m) }

// Lookup returns the price of the first name found, trying each name as given and then
// without its "provider/" prefix.
func (c *CostMap) Lookup(names ...string) (Price, bool) {
	for _, n := range names {
		if n == "" {
			continue
		}
		if p, ok := c.m[n]; ok {
			return p, true
		}
	}
	for _, n := range names {
		if _, rest, ok := strings.Cut(n, "/"); ok {
			if p, ok := c.m[rest]; ok {
				return p, true
			}
		}
	}
	return Price{}, false
}

// withOverrides returns p with the price fields set in modelInfo (LiteLLM model_info or
// litellm_params cost fields) replacing the map's.
func (p Price) withOverrides(fields map[string]any) (Price, error) {
	over := map[string]any{}
	for _, k := range []string{"mode", "input_cost_per_token", "output_cost_per_token", "input_cost_per_image",
		"output_cost_per_image", "max_input_tokens", "max_output_tokens", "max_tokens", "search_context_cost_per_query",
		"cache_read_input_token_cost", "cache_creation_input_token_cost", "cache_creation_input_token_cost_above_1hr",
		"input_cost_per_image_token", "output_cost_per_image_token", "code_interpreter_cost_per_session",
		"file_search_cost_per_1k_calls"} {
		if v, ok := fields[k]; ok && v != nil {
			over[k] = v
		}
	}
	for k, v := range fields {
		if _, ok := parseVariant(k); ok && v != nil {
			over[k] = v
		}
	}
	if len(over) == 0 {
		return p, nil
	}
	b, err := json.Marshal(over)
	if err != nil {
		return p, err
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("price override: %w", err)
	}
	return p, nil
}
