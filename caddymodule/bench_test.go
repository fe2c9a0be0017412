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

// benchToolCall is a tools/call of about 300 bytes that the benchmark
// policy allows: echo, with a repo its argument rule accepts.
const benchToolCall = `{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"echo","arguments":{"text":"` +
	benchText + `","repo":"acme/widgets"},"_meta":{"progressToken":"bench-7f3a9c21"}}}`

// benchResult is part of every answer echo gives to benchToolCall, and of
// no refusal.
var benchResult = []byte(`"text":"echo:` + benchText + `"`)

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
// evaluating the policy.
func BenchmarkMessagePath(b *testing.B) {
	ctx := context.Background()
	engine, err := policy.New(ctx, policy.Options{Paths: []string{benchPolicy}})
	if err != nil {
		b.Fatalf("loading %s: %v", benchPolicy, err)
	}
	b.Cleanup(func() {
		if err := engine.Close(); err != nil {
			b.Errorf("closing the policy engine: %v", err)
		}
	})
	data := []byte(benchToolCall)
	// What the catalog knows of echo, as the gateway would pass it on.
	annotations := map[string]any{"readOnlyHint": true}
	request := policy.Request{
		RemoteIP: "127.0.0.1",
		Host:     "127.0.0.1:8080",
		Path:     "/mcp",
		Headers: map[string]string{
			"accept":               "application/json, text/event-stream",
			"accept-encoding":      "gzip",
			"content-length":       strconv.Itoa(len(data)),
			"content-type":         "application/json",
			"mcp-protocol-version": mcphttp.Version20250618,
			"user-agent":           "Go-http-client/1.1",
		},
	}
	decide := func() (policy.Decision, error) {
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
	if d, err := decide(); err != nil || d.Action != policy.ActionAllow {
		b.Fatalf("decision on the benchmark's echo call = %+v (error %v), want allow", d, err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decide(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEndToEnd compares the gateway with bare reverse_proxy, both in
// one Caddy config in front of one go-sdk server, on an allowed tools/call.
// The two are measured side by side in every round (sequential calls
// alternate between them call by call, concurrent ones slice by slice), so
// that noise falls on both alike. One op is the whole comparison; the
// figures are its metrics: the median latency of each and the difference
// (added-µs), and the median calls per second of each at benchClients
// concurrent clients and the median of the rounds' gateway/bare ratios
// (throughput-ratio).
func BenchmarkEndToEnd(b *testing.B) {
	bare, gateway := startBenchSites(b, startBenchUpstream(b))
	sites := []*benchSite{bare, gateway}
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

	var ratios []float64
	for b.Loop() {
		for round := range benchRounds {
			firsts := []int{len(bare.latencies), len(gateway.latencies)}
			if err := client.alternate(sites, benchSequentialCalls); err != nil {
				b.Fatal(err)
			}
			if err := client.throughput(sites, round); err != nil {
				b.Fatal(err)
			}
			ratios = append(ratios, gateway.rates[len(gateway.rates)-1]/bare.rates[len(bare.rates)-1])
			b.Logf("round %d: median µs bare %.0f, gateway %.0f; calls/s bare %.0f, gateway %.0f",
				round, median(bare.latencies[firsts[0]:]), median(gateway.latencies[firsts[1]:]),
				bare.rates[len(bare.rates)-1], gateway.rates[len(gateway.rates)-1])
		}
	}

	bareMedian, gatewayMedian := median(bare.latencies), median(gateway.latencies)
	b.ReportMetric(bareMedian, "bare-µs/median")
	b.ReportMetric(gatewayMedian, "gateway-µs/median")
	b.ReportMetric(gatewayMedian-bareMedian, "added-µs")
	b.ReportMetric(median(bare.rates), "bare-calls/s")
	b.ReportMetric(median(gateway.rates), "gateway-calls/s")
	b.ReportMetric(median(ratios), "throughput-ratio")
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

// startBenchSites runs one Caddy config with two sites in front of
// upstream: the gateway with the benchmark policy, and bare reverse_proxy.
func startBenchSites(b *testing.B, upstream string) (bare, gateway *benchSite) {
	b.Helper()
	barePort := freePort(b)
	gatewayURL := startGateway(b, upstream, gatewayOptions{
		policy: "policy " + benchPolicy,
		sites: fmt.Sprintf(`
:%d {
	bind 127.0.0.1
	reverse_proxy %s
}
`, barePort, strings.TrimPrefix(upstream, "http://")),
	})
	waitForListener(b, barePort)
	return &benchSite{name: "bare", url: fmt.Sprintf("http://127.0.0.1:%d/mcp", barePort)},
		&benchSite{name: "gateway", url: gatewayURL}
}

// benchClient posts benchToolCall over keep-alive connections, with room
// for one idle connection per concurrent client to each site.
type benchClient struct {
	client *http.Client
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
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(benchToolCall))
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
