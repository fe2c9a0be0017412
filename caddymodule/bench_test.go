package caddymodule_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/caddymodule/catalog"
	"github.com/mcpgate/mcpgate/caddymodule/mcphttp"
	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
	"github.com/mcpgate/mcpgate/caddymodule/policy"
)

// The benchmarks decide with a realistic policy: a 1,000-entry tool table
// in data plus an argument rule, which echo is subject to.
const benchPolicy = "testdata/benchpolicy"

// benchText is what the benchmarks ask echo to repeat.
const benchText = "Summarise the open issues labelled p1 in the widgets repository, oldest first, with their owners and the date of their last activity"

// benchToolCall returns the n-th tools/call the benchmarks make, of about
// 300 bytes, that the benchmark policy allows: echo, with a repo its
// argument rule accepts. Each call asks for a text of its own, as real
// calls do, so that no cache sees the same call twice; the policy reads
// only the tool's name and repo.
func benchToolCall(n int64) string {
	return `{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"echo","arguments":{"text":"` +
		benchText + ` (call ` + strconv.FormatInt(n, 10) + `)","repo":"acme/widgets"},"_meta":{"progressToken":"bench-7f3a9c21"}}}`
}

// benchResult is part of every answer echo gives to a benchToolCall, and
// of no refusal.
var benchResult = []byte(`"text":"echo:` + benchText + ` (call `)

// What BenchmarkEndToEnd runs: rounds, each of benchSequentialCalls calls to
// every site one after the other, then benchConcurrentCalls calls to each
// site from benchClients concurrent clients, in benchSlices slices that
// alternate between the sites. The slices share out evenly among the
// clients.
const (
	benchRounds          = 7
	benchSequentialCalls = 2000
	benchConcurrentCalls = 4000
	benchSlices          = 10
	benchClients         = 16
	benchWarmUpCalls     = 800
)

// BenchmarkMessagePath measures what the gateway does for each message
// before forwarding it: the strict parse, building the policy input, and
// deciding, with the decision cache (each call has a text of its own, which
// the policy does not read, so all but the first are found in the cache)
// and without it (every call evaluated).
func BenchmarkMessagePath(b *testing.B) {
	for _, bc := range []struct {
		name      string
		cacheSize int
	}{{"cached", 0}, {"uncached", -1}} {
		b.Run(bc.name, func(b *testing.B) {
			benchmarkMessagePath(b, bc.cacheSize)
		})
	}
}

func benchmarkMessagePath(b *testing.B, cacheSize int) {
	ctx := context.Background()
	engine, err := policy.New(ctx, policy.Options{Paths: []string{benchPolicy}, CacheSize: cacheSize})
	if err != nil {
		b.Fatalf("loading %s: %v", benchPolicy, err)
	}
	b.Cleanup(func() {
		if err := engine.Close(); err != nil {
			b.Errorf("closing the policy engine: %v", err)
		}
	})
	calls := make([][]byte, 1024)
	for i := range calls {
		calls[i] = []byte(benchToolCall(int64(i)))
	}
	// What the catalog knows of echo, as the gateway would pass it on.
	annotations := map[string]any{"readOnlyHint": true}
	request := policy.Request{
		RemoteIP: "127.0.0.1",
		Host:     "127.0.0.1:8080",
		Path:     "/mcp",
		Headers: map[string]string{
			"accept":               "application/json, text/event-stream",
			"accept-encoding":      "gzip",
			"content-length":       strconv.Itoa(len(calls[0])),
			"content-type":         "application/json",
			"mcp-protocol-version": mcphttp.Version20250618,
			"user-agent":           "Go-http-client/1.1",
		},
	}
	decide := func(data []byte) (policy.Decision, error) {
		body, err := mcpmsg.Parse(data, mcpmsg.Limits{})
		if err != nil {
			return policy.Decision{}, err
		}
		m := &body.Messages[0]
		input := &policy.Input{
			Kind:            m.Kind.String(),
			Method:          m.Method,
			Params:          m.Params,
			Direction:       policy.DirectionClientToServer,
			Server:          "127.0.0.1",
			ProtocolVersion: mcphttp.Version20250618,
			Request:         request,
		}
		if m.Tool != nil {
			input.Tool = &policy.Tool{
				Name:        m.Tool.Name,
				Arguments:   m.Tool.Arguments,
				Annotations: annotations,
				Category:    string(catalog.ReadOnly),
			}
		}
		return engine.Decide(ctx, input)
	}
	if d, err := decide(calls[0]); err != nil || d.Action != policy.ActionAllow {
		b.Fatalf("decision on the benchmark's echo call = %+v (error %v), want allow", d, err)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := decide(calls[i%len(calls)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkEndToEnd compares the gateway with bare reverse_proxy, all in
// one Caddy config in front of one go-sdk server, on allowed tools/calls:
// the gateway as configured by default ("gateway", with its decision
// cache) and with decision_cache off ("uncached", every call evaluated).
// The sites are measured side by side in every round (sequential calls
// alternate between them call by call, concurrent ones slice by slice), so
// that noise falls on all alike. One op is the whole comparison; the
// figures are its metrics: the median latency of each and, for each
// gateway, the difference (added-µs), and the median calls per second of
// each at benchClients concurrent clients and the median of the rounds'
// gateway/bare ratios (throughput-ratio).
func BenchmarkEndToEnd(b *testing.B) {
	bare, gateway, uncached := startBenchSites(b, startBenchUpstream(b))
	sites := []*benchSite{bare, gateway, uncached}
	client := newBenchClient(b)
	for _, site := range sites {
		if err := client.call(site.url); err != nil {
			b.Fatalf("first call through %s: %v", site.name, err)
		}
	}
	// Open every keep-alive connection and warm both paths up.
	for _, site := range sites {
		if _, err := client.concurrently(site.url, benchWarmUpCalls); err != nil {
			b.Fatalf("warming up %s: %v", site.name, err)
		}
	}

	for b.Loop() {
		for round := range benchRounds {
			firsts := make([]int, len(sites))
			for i, site := range sites {
				firsts[i] = len(site.latencies)
			}
			if err := client.alternate(sites, benchSequentialCalls); err != nil {
				b.Fatal(err)
			}
			if err := client.throughput(sites, round); err != nil {
				b.Fatal(err)
			}
			line := fmt.Sprintf("round %d:", round)
			for i, site := range sites {
				rate := site.rates[len(site.rates)-1]
				site.ratios = append(site.ratios, rate/bare.rates[len(bare.rates)-1])
				line += fmt.Sprintf(" %s median %.0f µs, %.0f calls/s;", site.name, median(site.latencies[firsts[i]:]), rate)
			}
			b.Log(line)
		}
	}

	bareMedian := median(bare.latencies)
	b.ReportMetric(bareMedian, "bare-µs/median")
	b.ReportMetric(median(bare.rates), "bare-calls/s")
	for _, site := range []*benchSite{gateway, uncached} {
		b.ReportMetric(median(site.latencies), site.name+"-µs/median")
		b.ReportMetric(median(site.latencies)-bareMedian, site.name+"-added-µs")
		b.ReportMetric(median(site.rates), site.name+"-calls/s")
		b.ReportMetric(median(site.ratios), site.name+"-throughput-ratio")
	}
}

// benchSite is one of the sites BenchmarkEndToEnd compares, with what was
// measured through it.
type benchSite struct {
	name string
	url  string
	// latencies are the sequential calls' durations in µs.
	latencies []float64
	// rates are the concurrent runs' calls per second, one per round.
	rates []float64
	// ratios are the rates over bare reverse_proxy's of the same round.
	ratios []float64
}

// benchInput is echo's arguments; repo is there for the policy's argument
// rule.
type benchInput struct {
	Text string `json:"text"`
	Repo string `json:"repo"`
}

// benchUpstreamEnv, when set, makes the test binary run the benchmark's
// upstream instead of its tests (see TestMain).
const benchUpstreamEnv = "MCPGATE_BENCH_UPSTREAM"

// TestMain runs the tests, or, in the process startBenchUpstream starts,
// the benchmark's upstream.
func TestMain(m *testing.M) {
	if os.Getenv(benchUpstreamEnv) != "" {
		serveBenchUpstream()
		return
	}
	os.Exit(m.Run())
}

// serveBenchUpstream serves a stateless go-sdk MCP server that answers in
// JSON and has an echo tool on a free loopback port, writes its URL as the
// first line of standard output, and serves until its standard input
// closes (when the benchmark ends, or dies).
func serveBenchUpstream() {
	server := mcp.NewServer(&mcp.Implementation{Name: "bench-upstream", Version: "1"}, nil)
	mcp.AddTool(server, &mcp.Tool{Name: "echo"}, func(_ context.Context, _ *mcp.CallToolRequest, in benchInput) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "echo:" + in.Text}}}, nil, nil
	})
	handler := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server },
		&mcp.StreamableHTTPOptions{Stateless: true, JSONResponse: true})
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchmark upstream:", err)
		os.Exit(1)
	}
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	fmt.Printf("http://%s\n", listener.Addr())
	err = http.Serve(listener, handler)
	fmt.Fprintln(os.Stderr, "benchmark upstream:", err)
	os.Exit(1)
}

// startBenchUpstream runs the benchmark's upstream in a process of its own
// (this test binary, see TestMain) and returns its URL. In production the
// upstream never shares the gateway's process; sharing it here would charge
// the gateway for the upstream's garbage collection (the go-sdk server
// allocates hundreds of KiB per call), since one Go runtime collects for
// both.
func startBenchUpstream(b *testing.B) string {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), benchUpstreamEnv+"=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatalf("starting the benchmark upstream: %v", err)
	}
	b.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Wait()
	})
	url, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		b.Fatalf("reading the benchmark upstream's URL: %v", err)
	}
	return strings.TrimSpace(url)
}

// startBenchSites runs one Caddy config with three sites in front of
// upstream: bare reverse_proxy, and the gateway with the benchmark policy,
// with and without its decision cache.
func startBenchSites(b *testing.B, upstream string) (bare, gateway, uncached *benchSite) {
	b.Helper()
	barePort, uncachedPort := freePort(b), freePort(b)
	upstreamAddress := strings.TrimPrefix(upstream, "http://")
	gatewayURL := startGateway(b, upstream, gatewayOptions{
		policy: "policy " + benchPolicy,
		sites: fmt.Sprintf(`
:%d {
	bind 127.0.0.1
	reverse_proxy %s
}

:%d {
	bind 127.0.0.1
	mcp_policy {
		policy %s
		decision_cache off
	}
	reverse_proxy %s
}
`, barePort, upstreamAddress, uncachedPort, benchPolicy, upstreamAddress),
	})
	waitForListener(b, barePort)
	waitForListener(b, uncachedPort)
	return &benchSite{name: "bare", url: fmt.Sprintf("http://127.0.0.1:%d/mcp", barePort)},
		&benchSite{name: "gateway", url: gatewayURL},
		&benchSite{name: "uncached", url: fmt.Sprintf("http://127.0.0.1:%d/mcp", uncachedPort)}
}

// benchClient posts benchToolCalls over keep-alive connections, with room
// for one idle connection per concurrent client to each site.
type benchClient struct {
	client *http.Client
	// calls numbers the calls made, so that each asks for its own text.
	calls atomic.Int64
}

func newBenchClient(b *testing.B) *benchClient {
	transport := &http.Transport{
		MaxIdleConns:        4 * benchClients,
		MaxIdleConnsPerHost: 2 * benchClients,
		IdleConnTimeout:     time.Minute,
	}
	b.Cleanup(transport.CloseIdleConnections)
	return &benchClient{client: &http.Client{Transport: transport, Timeout: 10 * time.Second}}
}

// call makes one tools/call of echo and checks that echo answered it.
func (c *benchClient) call(url string) error {
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(benchToolCall(c.calls.Add(1))))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set(mcphttp.HeaderProtocolVersion, mcphttp.Version20250618)
	resp, err := c.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("reading the answer from %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, benchResult) {
		return fmt.Errorf("POST %s: status %d, body %s; want 200 with the echo result %s", url, resp.StatusCode, body, benchResult)
	}
	return nil
}

// alternate makes calls sequential calls to each site, switching site
// (and which goes first) call by call, and records each call's latency.
func (c *benchClient) alternate(sites []*benchSite, calls int) error {
	for i := range calls {
		for j := range sites {
			site := sites[(i+j)%len(sites)]
			start := time.Now()
			if err := c.call(site.url); err != nil {
				return err
			}
			site.latencies = append(site.latencies, float64(time.Since(start))/float64(time.Microsecond))
		}
	}
	return nil
}

// throughput makes benchConcurrentCalls calls to each site from
// benchClients concurrent clients, in slices that alternate between the
// sites (and which goes first), and records each site's calls per second.
func (c *benchClient) throughput(sites []*benchSite, round int) error {
	busy := make([]time.Duration, len(sites))
	for slice := range benchSlices {
		for i := range sites {
			j := (round + slice + i) % len(sites)
			elapsed, err := c.concurrently(sites[j].url, benchConcurrentCalls/benchSlices)
			if err != nil {
				return err
			}
			busy[j] += elapsed
		}
	}
	for i, site := range sites {
		site.rates = append(site.rates, benchConcurrentCalls/busy[i].Seconds())
	}
	return nil
}

// concurrently makes calls from benchClients concurrent clients, an equal
// share each, and returns how long they took.
func (c *benchClient) concurrently(url string, calls int) (time.Duration, error) {
	errs := make(chan error, benchClients)
	var wg sync.WaitGroup
	start := time.Now()
	for range benchClients {
		wg.Go(func() {
			for range calls / benchClients {
				if err := c.call(url); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	return elapsed, <-errs
}

// median returns the median of values, which must not be empty.
func median(values []float64) float64 {
	sorted := slices.Sorted(slices.Values(values))
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}
