package llm

import "testing"

// TestPriceFor: the embedded map's long-prompt and service-tier rates apply to the calls
// they are for, and only to them.
func TestPriceFor(t *testing.T) {
	m := DefaultCostMap()
	get := func(name string) Price {
		p, ok := m.Lookup(name)
		if !ok {
			t.Fatalf("%s is not in the map", name)
		}
		return p
	}
	f := func(v *float64) float64 {
		if v == nil {
			return -1
		}
		return *v
	}
	sonnet := get("claude-sonnet-4-5")
	if p := sonnet.For(200_000, ""); p.InputCostPerToken != 3e-6 || p.OutputCostPerToken != 1.5e-5 || f(p.CacheReadCostPerToken) != 3e-7 {
		t.Errorf("sonnet at 200k tokens: %v / %v / %v, want the standard 3e-6 / 1.5e-5 / 3e-7", p.InputCostPerToken, p.OutputCostPerToken, f(p.CacheReadCostPerToken))
	}
	if p := sonnet.For(200_001, ""); p.InputCostPerToken != 6e-6 || p.OutputCostPerToken != 2.25e-5 || f(p.CacheReadCostPerToken) != 6e-7 ||
		f(p.CacheWriteCostPerToken) != 7.5e-6 || f(p.CacheWrite1hCostPerToken) != 1.2e-5 {
		t.Errorf("sonnet past 200k tokens: %+v, want the long-prompt rates", p)
	}
	gpt5 := get("gpt-5")
	for tier, want := range map[string][3]float64{"": {1.25e-6, 1e-5, 1.25e-7}, "auto": {1.25e-6, 1e-5, 1.25e-7},
		"priority": {2.5e-6, 2e-5, 2.5e-7}, "flex": {6.25e-7, 5e-6, 6.25e-8}} {
		if p := gpt5.For(1000, tier); p.InputCostPerToken != want[0] || p.OutputCostPerToken != want[1] || f(p.CacheReadCostPerToken) != want[2] {
			t.Errorf("gpt-5 tier %q: %v / %v / %v, want %v", tier, p.InputCostPerToken, p.OutputCostPerToken, f(p.CacheReadCostPerToken), want)
		}
	}
	if p := get("gpt-5.4").For(300_000, "flex"); p.InputCostPerToken != 5e-6 {
		t.Errorf("gpt-5.4 past 272k tokens: input %v, want 5e-6", p.InputCostPerToken)
	}

	// An override of a variant is the deployment's own: the map's entry keeps its rate.
	over, err := sonnet.withOverrides(map[string]any{"input_cost_per_token_above_200k_tokens": 1.0})
	if err != nil {
		t.Fatal(err)
	}
	if p := over.For(300_000, ""); p.InputCostPerToken != 1 || p.OutputCostPerToken != 2.25e-5 {
		t.Errorf("overridden: %v / %v, want 1 and the map's output rate", p.InputCostPerToken, p.OutputCostPerToken)
	}
	if p := get("claude-sonnet-4-5").For(300_000, ""); p.InputCostPerToken != 6e-6 {
		t.Errorf("the override changed the cost map's entry: %v", p.InputCostPerToken)
	}
}

// TestImagePricing: gpt-image-1 is priced by tokens in the map (and so reserves by them),
// DALL-E 3 per image.
func TestImagePricing(t *testing.T) {
	gi, _ := DefaultCostMap().Lookup("gpt-image-1")
	dalle, _ := DefaultCostMap().Lookup("dall-e-3")
	if !gi.TokenPricedImages() || dalle.TokenPricedImages() {
		t.Fatalf("token-priced: gpt-image-1 %v, dall-e-3 %v; want true, false", gi.TokenPricedImages(), dalle.TokenPricedImages())
	}
	// 6240 tokens (high quality, 1024x1536) at 4e-5, two images, no prompt.
	if got := gi.ImageReserve(2, 0, "", ""); got < 2*6240*4e-5-1e-12 || got > 2*6240*4e-5+1e-12 {
		t.Errorf("reserve for two images %v, want %v", got, 2*6240*4e-5)
	}
	if got := gi.ImageReserve(1, 0, "low", "1024x1024"); got < 272*4e-5-1e-12 || got > 272*4e-5+1e-12 {
		t.Errorf("reserve for a low-quality square image %v, want %v", got, 272*4e-5)
	}
}
