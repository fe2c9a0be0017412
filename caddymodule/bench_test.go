package caddymodule_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
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
	"github.com/mcpgate/mcpgate/internal/childtest"
	"github.com/mcpgate/mcpgate/policies"
)

// The benchmarks decide with a 1,000-entry tool table in two realistic
// configurations: the table in data plus an argument rule that echo is
// subject to, in Rego (benchPolicy), and the same table as a permissions
// block that the shipped library decides with (benchPermissions).
const benchPolicy = "testdata/benchpolicy"

// benchText is what the benchmarks ask echo to repeat.
const benchText = "Summarise the open issues labelled p1 in the widgets repository, oldest first, with their owners and the date of their last activity"

// benchRecall makes every call the end-to-end benchmark makes name the
// same repository, as calls that the decision cache recalls do. By
// default each call names a repository of its own, which the argument
// rule reads, so that every call is evaluated.
var benchRecall = flag.Bool("mcpgate.recall", false, "BenchmarkEndToEnd: every call names the same repository, so the decision cache recalls")

// benchOnly, when set, names the configurations of benchConfigs that
// BenchmarkEndToEnd measures (beside bare reverse_proxy), comma-separated:
// to profile one at a time.
var benchOnly = flag.String("mcpgate.only", "", "BenchmarkEndToEnd: measure only these configurations (comma-separated names), beside bare reverse_proxy")

// benchRounds is how many rounds BenchmarkEndToEnd runs.
var benchRounds = flag.Int("mcpgate.rounds", 7, "BenchmarkEndToEnd: how many rounds to run (fewer to profile or trace)")

// benchRepo is the repository the n-th call names: one of its own, under
// acme/ (which the argument rule accepts), unless every call is to name
// the same.
func benchRepo(n int64, same bool) string {
	if same {
		return "acme/widgets"
	}
	return "acme/widgets-" + strconv.FormatInt(n, 10)
}

// benchToolCall returns a tools/call of echo of about 300 bytes, asking
// for the n-th text, on repo, which the benchmark policies allow. Each
// call asks for a text of its own, as real calls do; the policies read
// the tool's name and, with the argument rule, repo.
func benchToolCall(n int64, repo string) string {
	return `{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"echo","arguments":{"text":"` +
		benchText + ` (call ` + strconv.FormatInt(n, 10) + `)","repo":"` + repo + `"},"_meta":{"progressToken":"bench-7f3a9c21"}}}`
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
	benchSequentialCalls = 2000
	benchConcurrentCalls = 4000
	benchSlices          = 10
	benchClients         = 16
	benchWarmUpCalls     = 800
)

// benchConfig is one gateway configuration the benchmarks measure.
type benchConfig struct {
	// name names the configuration in the benchmarks' metrics.
	name string
	// permissions decides with the permissions table and the shipped
	// library; otherwise benchPolicy decides.
	permissions bool
	// uncached turns the decision cache off.
	uncached bool
	// allowAll decides with a policy that allows every message (the
	// gateway's own cost, with the least evaluation OPA does); measured
	// only when -mcpgate.only names it.
	allowAll bool
}

// allowAllPolicy is the allowAll configurations' policy.
const allowAllPolicy = "package mcp\n\ndecision := {\"action\": \"allow\", \"reason\": \"allowed\"}\n"

// benchConfigs are the configurations measured: the table with the
// argument rule, and the table alone, each with the decision cache (the
// default) and without; and, when named, a policy that allows everything,
// evaluated on every call.
var benchConfigs = []benchConfig{
	{name: "rule"},
	{name: "rule-uncached", uncached: true},
	{name: "table", permissions: true},
	{name: "table-uncached", permissions: true, uncached: true},
	{name: "allow-uncached", allowAll: true, uncached: true},
}

// policyBlock is the body of the configuration's mcp_policy block.
func (c benchConfig) policyBlock(tb testing.TB) string {
	tb.Helper()
	block := "server bench-" + c.name + "\n"
	switch {
	case c.allowAll:
		dir := tb.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "allow.rego"), []byte(allowAllPolicy), 0o644); err != nil {
			tb.Fatal(err)
		}
		block += "policy " + dir + "\n"
	case c.permissions:
		block += benchPermissions(tb)
	default:
		block += "policy " + benchPolicy + "\n"
	}
	if c.uncached {
		block += "decision_cache off\n"
	}
	return block
}

// benchPermissions is a permissions block holding benchPolicy's tool
// table, each tool with its action (arguments aside): the table-only
// configuration.
func benchPermissions(tb testing.TB) string {
	tb.Helper()
	actions := benchTableActions(tb)
	var block strings.Builder
	block.WriteString("permissions {\nread_only allow\nwrite needs_approval\ndestructive block\n")
	for _, name := range slices.Sorted(maps.Keys(actions)) {
		fmt.Fprintf(&block, "tool %s %s\n", name, actions[name])
	}
	block.WriteString("}\n")
	return block.String()
}

// benchTableData is the same table as the permissions block makes it in
// data.
func benchTableData(tb testing.TB) map[string]any {
	tb.Helper()
	tools := map[string]any{}
	for name, action := range benchTableActions(tb) {
		tools[name] = action
	}
	return map[string]any{"mcp": map[string]any{"permissions": map[string]any{
		"read_only": "allow", "write": "needs_approval", "destructive": "block", "tools": tools,
	}}}
}

// benchTableActions returns the action benchPolicy's tool table gives
// each tool.
func benchTableActions(tb testing.TB) map[string]string {
	tb.Helper()
	raw, err := os.ReadFile(benchPolicy + "/tools.json")
	if err != nil {
		tb.Fatal(err)
	}
	var data struct {
		MCP struct {
			Tools map[string]struct {
				Verdict struct {
					Action string `json:"action"`
				} `json:"verdict"`
			} `json:"tools"`
		} `json:"mcp"`
	}
	if err := json.Unmarshal(raw, &data); err != nil {
		tb.Fatalf("reading %s/tools.json: %v", benchPolicy, err)
	}
	actions := make(map[string]string, len(data.MCP.Tools))
	for name, entry := range data.MCP.Tools {
		actions[name] = entry.Verdict.Action
	}
	return actions
}

// BenchmarkMessagePath measures what the gateway does for each message
// before forwarding it: the strict parse, building the policy input, and
// deciding, in each configuration of benchConfigs, on calls that each name
// a repository of their own and, with the decision cache, on calls that
// all name the same. recalled/op is the share of decisions the cache
// recalled: none of the first kind with the argument rule (which reads the
// repository), all of the second; all with the table alone, which reads
// no argument.
func BenchmarkMessagePath(b *testing.B) {
	for _, c := range benchConfigs {
		b.Run(c.name+"/distinct-repos", func(b *testing.B) {
			benchmarkMessagePath(b, c, false)
		})
		if !c.uncached {
			b.Run(c.name+"/same-repo", func(b *testing.B) {
				benchmarkMessagePath(b, c, true)
			})
		}
	}
}

func benchmarkMessagePath(b *testing.B, c benchConfig, sameRepo bool) {
	ctx := context.Background()
	opts := policy.Options{Paths: []string{benchPolicy}}
	switch {
	case c.allowAll:
		opts = policy.Options{Modules: map[string]string{"allow.rego": allowAllPolicy}}
	case c.permissions:
		opts = policy.Options{Modules: policies.Library(), Data: benchTableData(b)}
	}
	if c.uncached {
		opts.CacheSize = -1
	}
	engine, err := policy.New(ctx, opts)
	if err != nil {
		b.Fatalf("loading the %s policy: %v", c.name, err)
	}
	b.Cleanup(func() {
		if err := engine.Close(); err != nil {
			b.Errorf("closing the policy engine: %v", err)
		}
	})
	// What the catalog knows of echo, as the gateway would pass it on.
	annotations := map[string]any{"readOnlyHint": true}
	request := policy.Request{
		RemoteIP: "127.0.0.1",
		Host:     "127.0.0.1:8080",
		Path:     "/mcp",
		Headers: map[string]string{
			"accept":               "application/json, text/event-stream",
			"accept-encoding":      "gzip",
			"content-length":       "301",
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
	// Each call is made anew (a small part of the time measured), so that
	// none repeats another.
	call := func(n int64) []byte { return []byte(benchToolCall(n, benchRepo(n, sameRepo))) }
	if d, err := decide(call(0)); err != nil || d.Action != policy.ActionAllow {
		b.Fatalf("decision on the benchmark's echo call = %+v (error %v), want allow", d, err)
	}
	b.ReportAllocs()
	var n, recalled int64
	for b.Loop() {
		n++
		d, err := decide(call(n))
		if err != nil {
			b.Fatal(err)
		}
		if d.Cached {
			recalled++
		}
	}
	b.ReportMetric(float64(recalled)/float64(n), "recalled/op")
}

// BenchmarkEndToEnd compares the gateway with bare reverse_proxy, all in
// one Caddy config in front of one go-sdk server, on allowed tools/calls:
// the gateway in each configuration of benchConfigs. By default each call
// names a repository of its own, which the argument rule reads, so that
// every call is evaluated, with the decision cache as without
// (-mcpgate.recall makes the cached configurations recall instead). The
// sites are measured side by side in every round (sequential calls
// alternate between them call by call, concurrent ones slice by slice), so
// that noise falls on all alike. One op is the whole comparison; the
// figures are its metrics: the median latency of each site and, for each
// gateway, the difference (added-µs), and the median calls per second of
// each at benchClients concurrent clients and the median of the rounds'
// gateway/bare ratios (throughput-ratio). At benchClients clients the
// processors are busy, so a site's calls per second follow the processor
// time a call takes; that time is measured too, in Caddy's process (the
// test's, with its clients: cpu-µs/call) and in the upstream's
// (upstream-cpu-µs/call), for where a gateway's lower throughput comes
// from.
func BenchmarkEndToEnd(b *testing.B) {
	upstream := startBenchUpstream(b)
	sites := startBenchSites(b, upstream.Line)
	bare := sites[0]
	client := newBenchClient(b)
	client.upstream = upstream
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
		for round := range *benchRounds {
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
	b.ReportMetric(median(bare.cpu), "bare-cpu-µs/call")
	b.ReportMetric(median(bare.upstreamCPU), "bare-upstream-cpu-µs/call")
	for _, site := range sites[1:] {
		b.ReportMetric(median(site.latencies), site.name+"-µs/median")
		b.ReportMetric(median(site.latencies)-bareMedian, site.name+"-added-µs")
		b.ReportMetric(median(site.rates), site.name+"-calls/s")
		b.ReportMetric(median(site.ratios), site.name+"-throughput-ratio")
		b.ReportMetric(median(site.cpu), site.name+"-cpu-µs/call")
		b.ReportMetric(median(site.upstreamCPU), site.name+"-upstream-cpu-µs/call")
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
	// cpu and upstreamCPU are the processor time a concurrent call took
	// in µs, one per round: in Caddy's process (the test's, its clients
	// included) and in the upstream's.
	cpu, upstreamCPU []float64
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
	childtest.Main(m, benchUpstreamEnv, serveBenchUpstream)
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
	childtest.ServeHTTP("benchmark upstream", mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server },
		&mcp.StreamableHTTPOptions{Stateless: true, JSONResponse: true}))
}

// startBenchUpstream runs the benchmark's upstream in a process of its own
// (this test binary, see TestMain); its Line is its URL. In production the
// upstream never shares the gateway's process; sharing it here would charge
// the gateway for the upstream's garbage collection (the go-sdk server
// allocates hundreds of KiB per call), since one Go runtime collects for
// both.
func startBenchUpstream(b *testing.B) *childtest.Child {
	b.Helper()
	return childtest.Start(b, benchUpstreamEnv)
}

// startBenchSites runs one Caddy config in front of upstream with a site
// of bare reverse_proxy, and one of the gateway in each configuration of
// benchConfigs, and returns them, bare first.
func startBenchSites(b *testing.B, upstream string) []*benchSite {
	b.Helper()
	b.Setenv("XDG_DATA_HOME", b.TempDir()) // tool pins go to Caddy's data directory
	upstreamAddress := strings.TrimPrefix(upstream, "http://")
	sites := []*benchSite{{name: "bare"}}
	ports := []int{freePort(b)}
	// Bare reaches the gateways' upstream without mcp_policy, as the
	// layout check refuses unless marked deliberate (mcp_bypass, a handler
	// that only passes the request on).
	caddyfile := globalOptions(b) + fmt.Sprintf(`
:%d {
	bind 127.0.0.1
	mcp_bypass
	reverse_proxy %s
}
`, ports[0], upstreamAddress)
	for _, c := range benchConfigs {
		named := slices.Contains(strings.Split(*benchOnly, ","), c.name)
		if (*benchOnly != "" || c.allowAll) && !named {
			continue
		}
		port := freePort(b)
		ports = append(ports, port)
		sites = append(sites, &benchSite{name: c.name})
		caddyfile += fmt.Sprintf(`
:%d {
	bind 127.0.0.1
	mcp_policy {
		%s
	}
	reverse_proxy %s
}
`, port, c.policyBlock(b), upstreamAddress)
	}
	startCaddy(b, caddyfile)
	for i, port := range ports {
		waitForListener(b, port)
		sites[i].url = fmt.Sprintf("http://127.0.0.1:%d/mcp", port)
	}
	return sites
}

// benchClient posts benchToolCalls over keep-alive connections, with room
// for one idle connection per concurrent client to each site.
type benchClient struct {
	client *http.Client
	// calls numbers the calls made, so that each asks for its own text.
	calls atomic.Int64
	// upstream is the upstream's process, whose processor time throughput
	// measures.
	upstream *childtest.Child
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
	n := c.calls.Add(1)
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(benchToolCall(n, benchRepo(n, *benchRecall))))
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
	cpu := make([]time.Duration, len(sites))
	upstreamCPU := make([]time.Duration, len(sites))
	for slice := range benchSlices {
		for i := range sites {
			j := (round + slice + i) % len(sites)
			ownBefore, upstreamBefore, err := c.cpuTimes()
			if err != nil {
				return err
			}
			elapsed, err := c.concurrently(sites[j].url, benchConcurrentCalls/benchSlices)
			if err != nil {
				return err
			}
			ownAfter, upstreamAfter, err := c.cpuTimes()
			if err != nil {
				return err
			}
			busy[j] += elapsed
			cpu[j] += ownAfter - ownBefore
			upstreamCPU[j] += upstreamAfter - upstreamBefore
		}
	}
	perCall := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) / benchConcurrentCalls }
	for i, site := range sites {
		site.rates = append(site.rates, benchConcurrentCalls/busy[i].Seconds())
		site.cpu = append(site.cpu, perCall(cpu[i]))
		site.upstreamCPU = append(site.upstreamCPU, perCall(upstreamCPU[i]))
	}
	return nil
}

// cpuTimes returns the processor time Caddy's process (this one) and the
// upstream's have had so far.
func (c *benchClient) cpuTimes() (own, upstream time.Duration, err error) {
	if own, err = childtest.ProcessCPUTime(os.Getpid()); err != nil {
		return 0, 0, err
	}
	if upstream, err = c.upstream.CPUTime(); err != nil {
		return 0, 0, err
	}
	return own, upstream, nil
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
