// Package loadtest runs the load measurements behind the README's LLM performance table:
// latency with one client and throughput with 16 and 64, of several targets against a
// direct baseline measured in the same run, and the fake provider they call.
package loadtest

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Answer is the fake provider's chat completion: 12 prompt and 8 completion tokens.
const Answer = `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hello there, this is a short answer"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":8,"total_tokens":20}}`

// Body is the chat completion request sent in the load runs, for model "gpt".
var Body = []byte(`{"model":"gpt","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello in five words please."}],"max_tokens":64,"temperature":0.2}`)

// Provider answers every request with Answer.
func Provider() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, Answer)
	})
}

// StreamingProvider answers every request with a stream of 10 chunks, each flushed.
func StreamingProvider() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 10 {
			fmt.Fprintf(w, "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"word%d \"},\"finish_reason\":null}]}\n\n", i)
			w.(http.Flusher).Flush()
		}
		fmt.Fprint(w, "data: [DONE]\n\n")
	})
}

// ReverseProxy is the floor the gateway is compared against: httputil.ReverseProxy to
// upstream with the load client's connection pool and nothing else (no parsing, no budget,
// no logs). It returns the proxy's base URL; the proxy closes with tb.
func ReverseProxy(tb testing.TB, upstream string) string {
	u, err := url.Parse(upstream)
	if err != nil {
		tb.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = Client().Transport
	rp.FlushInterval = -1
	srv := httptest.NewServer(rp)
	tb.Cleanup(srv.Close)
	return srv.URL
}

// Target is one URL under load.
type Target struct {
	Name   string
	URL    string
	Header http.Header // sent with every request, such as Authorization; may be nil
}

// Client returns a client whose pool keeps a connection for each concurrent caller.
func Client() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 512
	return &http.Client{Transport: t}
}

// Post sends body to tg and reads the whole answer; a status other than 200 is an error.
func Post(c *http.Client, tg Target, body []byte) error {
	req, err := http.NewRequest(http.MethodPost, tg.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	for k, v := range tg.Header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: status %d", tg.Name, resp.StatusCode)
	}
	return nil
}

// Run logs the measurements of targets against targets[0], the direct baseline: latency
// with one client (p50 and p99 of 3,000 calls, after a warm-up round), then requests per
// second with 16 and 64 clients. If stream has targets, it also logs streams per second
// with 16 clients sending streamBody to them, against stream[0].
func Run(t *testing.T, body []byte, targets []Target, streamBody []byte, stream []Target) {
	t.Helper()
	c := Client()
	lat := make([][]time.Duration, len(targets))
	for range 2 { // the second round counts: warm pools and caches
		for i, tg := range targets {
			ds := make([]time.Duration, 0, 3000)
			for range 3000 {
				s := time.Now()
				if err := Post(c, tg, body); err != nil {
					t.Fatal(err)
				}
				ds = append(ds, time.Since(s))
			}
			lat[i] = ds
		}
	}
	d50, d99 := percentile(lat[0], .5), percentile(lat[0], .99)
	t.Logf("1 client: %s p50 %v p99 %v", targets[0].Name, d50, d99)
	for i, tg := range targets[1:] {
		g50, g99 := percentile(lat[i+1], .5), percentile(lat[i+1], .99)
		t.Logf("1 client, %s: p50 %v p99 %v; added p50 %v p99 %v", tg.Name, g50, g99, g50-d50, g99-d99)
	}
	for _, n := range []int{16, 64} {
		r, cpu := rates(t, c, n, body, targets)
		t.Log(report(fmt.Sprintf("%d clients", n), "req/s", targets, r, cpu))
	}
	if len(stream) > 0 {
		r, cpu := rates(t, c, 16, streamBody, stream)
		t.Log(report("streaming, 16 clients", "streams/s", stream, r, cpu))
	}
}

// rates returns each target's calls per second with clients concurrent callers, measured
// in 6 rounds of half a second per target, alternating, so that a busy neighbour on the
// machine weighs on all of them alike, and the process's CPU time per call (client,
// gateway and provider together: they share the process).
func rates(t *testing.T, c *http.Client, clients int, body []byte, targets []Target) (perSec []float64, cpuPerCall []time.Duration) {
	out := make([]float64, len(targets))
	cpu := make([]time.Duration, len(targets))
	calls := make([]int64, len(targets))
	const rounds, round = 6, 500 * time.Millisecond
	for range rounds {
		for i, tg := range targets {
			var count atomic.Int64
			var wg sync.WaitGroup
			stop := time.Now().Add(round)
			cpu0 := cpuTime()
			for range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for time.Now().Before(stop) {
						if err := Post(c, tg, body); err != nil {
							t.Error(err)
							return
						}
						count.Add(1)
					}
				}()
			}
			wg.Wait()
			cpu[i] += cpuTime() - cpu0
			calls[i] += count.Load()
			out[i] += float64(count.Load()) / (rounds * round.Seconds())
		}
	}
	for i := range cpu {
		cpu[i] /= time.Duration(max(calls[i], 1))
	}
	return out, cpu
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func report(what, unit string, targets []Target, r []float64, cpu []time.Duration) string {
	line := fmt.Sprintf("%s: %s %.0f %s, %.1f µs CPU each", what, targets[0].Name, r[0], unit, us(cpu[0]))
	for i, tg := range targets[1:] {
		line += fmt.Sprintf("; %s %.0f %s (%.0f%%), %.1f µs CPU each", tg.Name, r[i+1], unit, 100*r[i+1]/r[0], us(cpu[i+1]))
	}
	return line
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func percentile(ds []time.Duration, p float64) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(float64(len(s)-1)*p)]
}
