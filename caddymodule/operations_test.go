package caddymodule_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/open-policy-agent/opa/v1/bundle"

	"github.com/mcpgate/mcpgate/internal/testwait"
	"github.com/mcpgate/mcpgate/internal/upstreamtest"
)

// allowEchoPolicy allows protocol messages, and echo with the given action
// and reason.
func echoPolicy(action, reason string) string {
	return fmt.Sprintf(`package mcp
import rego.v1
default decision := {"action": "block", "reason": "not allowed"}
decision := {"action": "allow"} if input.method != "tools/call"
decision := {"action": %q, "reason": %q} if input.tool.name == "echo"
`, action, reason)
}

// callEchoText calls echo and returns its text, and whether it was refused.
func callEchoText(t *testing.T, session *mcp.ClientSession) (string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "e"}})
	if err != nil {
		t.Fatalf("calling echo: %v", err)
	}
	return resultText(res), res.IsError
}

// TestPolicyHotReload edits the policy under a running gateway: a good
// edit takes effect without a restart; a broken one keeps the previous
// policy.
func TestPolicyHotReload(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "policy.rego")
	write := func(source string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(source), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(echoPolicy("allow", "fine"))
	up := newUpstream(t, upstreamtest.StatefulSSE)
	metricsPort := freePort(t)
	gateway := startGateway(t, up.URL, gatewayOptions{
		policy: "policy " + dir + "\n\t\tserver test",
		sites:  fmt.Sprintf(":%d {\n\tbind 127.0.0.1\n\tmetrics\n}\n", metricsPort),
	})
	reloads := func(result string) string {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort))
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		for _, line := range strings.Split(string(raw), "\n") {
			if strings.HasPrefix(line, `mcpgate_policy_reloads_total{result="`+result+`"}`) {
				return strings.Fields(line)[1]
			}
		}
		return "0"
	}
	session := connect(t, gateway, nil)
	if text, refused := callEchoText(t, session); refused {
		t.Fatalf("echo refused before the edit: %s", text)
	}

	write(echoPolicy("block", "edited while running"))
	testwait.Until(t, 10*time.Second, func() string {
		if text, refused := callEchoText(t, session); !refused || !strings.Contains(text, "edited while running") {
			return "the edit never took effect; last answer: " + text
		}
		return ""
	})

	write("package mcp\ndecision := {")
	// The watcher sees, and rejects, the broken file: the failure is
	// counted, and the previous policy still decides.
	testwait.Until(t, 10*time.Second, func() string {
		if n := reloads("failed"); n == "0" {
			return "the broken edit was never counted as a failed reload"
		}
		return ""
	})
	if text, refused := callEchoText(t, session); !refused || !strings.Contains(text, "edited while running") {
		t.Errorf("after a broken edit: refused %v, %q; want the previous policy's refusal", refused, text)
	}

	write(echoPolicy("allow", "fixed"))
	testwait.Until(t, 10*time.Second, func() string {
		if text, refused := callEchoText(t, session); refused {
			return "the fixed policy never took effect; last answer: " + text
		}
		return ""
	})
}

// bundleServer serves one OPA bundle that a test can replace.
type bundleServer struct {
	mu      sync.Mutex
	tarball []byte
	etag    string
}

func (s *bundleServer) set(t *testing.T, revision, source string) {
	t.Helper()
	b := bundle.Bundle{Manifest: bundle.Manifest{Revision: revision}, Data: map[string]any{},
		Modules: []bundle.ModuleFile{{URL: "/mcp.rego", Path: "/mcp.rego", Raw: []byte(source)}}}
	var buf bytes.Buffer
	if err := bundle.Write(&buf, b); err != nil {
		t.Fatalf("writing bundle: %v", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tarball, s.etag = buf.Bytes(), `"`+revision+`"`
}

func (s *bundleServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.URL.Path != "/bundles/mcp.tar.gz" {
		http.NotFound(w, r)
		return
	}
	if r.Header.Get("If-None-Match") == s.etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("ETag", s.etag)
	w.Header().Set("Content-Type", "application/gzip")
	_, _ = w.Write(s.tarball)
}

// TestPolicyFromBundle loads the gateway's policy from an OPA bundle
// server, and follows a new revision.
func TestPolicyFromBundle(t *testing.T) {
	bundles := new(bundleServer)
	bundles.set(t, "r1", echoPolicy("allow", "from bundle r1"))
	srv := httptest.NewServer(bundles)
	t.Cleanup(srv.Close)

	up := newUpstream(t, upstreamtest.StatefulSSE)
	gateway := startGateway(t, up.URL, gatewayOptions{policy: "server test\n\t\tbundle " + srv.URL + " bundles/mcp.tar.gz {\n\t\t\tpolling 1s 2s\n\t\t}"})
	session := connect(t, gateway, nil)
	if text, refused := callEchoText(t, session); refused {
		t.Fatalf("echo refused under bundle r1: %s", text)
	}
	bundles.set(t, "r2", echoPolicy("block", "from bundle r2"))
	testwait.Until(t, 15*time.Second, func() string {
		if text, refused := callEchoText(t, session); !refused || !strings.Contains(text, "from bundle r2") {
			return "bundle r2 never took effect; last answer: " + text
		}
		return ""
	})
}

// TestMetricsAndDecisionLog checks that decisions appear on Caddy's
// metrics endpoint and in the decision log, with arguments redacted
// unless log_arguments is set.
func TestMetricsAndDecisionLog(t *testing.T) {
	for _, logArguments := range []bool{false, true} {
		t.Run(fmt.Sprintf("log_arguments=%v", logArguments), func(t *testing.T) {
			logFile := filepath.Join(t.TempDir(), "decisions.log")
			metricsPort := freePort(t)
			policyBlock := "policy testdata/policy\n\t\tserver test"
			if logArguments {
				policyBlock += "\n\t\tlog_arguments"
			}
			up := newUpstream(t, upstreamtest.StatefulSSE)
			gateway := startGateway(t, up.URL, gatewayOptions{
				policy: policyBlock,
				global: []string{fmt.Sprintf("log decisions {\n\t\toutput file %s\n\t\tinclude http.handlers.mcp_policy\n\t\tlevel INFO\n\t}", logFile)},
				sites:  fmt.Sprintf("\n:%d {\n\tbind 127.0.0.1\n\tmetrics\n}\n", metricsPort),
			})
			session := connect(t, gateway, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			for _, tool := range []string{"echo", "delete_issue", "delete_issue"} {
				if _, err := session.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: map[string]any{"text": "secret-argument"}}); err != nil {
					t.Fatalf("calling %s: %v", tool, err)
				}
			}

			scrape := func() string {
				t.Helper()
				resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort))
				if err != nil {
					t.Fatalf("reading metrics: %v", err)
				}
				defer resp.Body.Close()
				metrics, _ := io.ReadAll(resp.Body)
				return string(metrics)
			}
			evaluations := func(metrics string) string {
				for line := range strings.Lines(metrics) {
					if strings.HasPrefix(line, `mcpgate_policy_evaluation_seconds_count{server="test"} `) {
						return line
					}
				}
				return ""
			}
			before := scrape()
			// A tool the upstream does not list is refused by the gateway
			// without asking the policy: a decision, not an evaluation.
			if res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "no_such_tool"}); err == nil && !res.IsError {
				t.Fatalf("an unlisted tool was not refused: %+v", res)
			}
			metrics := scrape()
			if evaluations(metrics) != evaluations(before) {
				t.Errorf("refusing an unlisted tool counted as a policy evaluation: %q, then %q", evaluations(before), evaluations(metrics))
			}
			for _, want := range []string{
				`mcpgate_decisions_total{action="block",server="test",tool="(unlisted)"} 1`,
				`mcpgate_decisions_total{action="block",server="test",tool="delete_issue"} 2`,
				`mcpgate_decisions_total{action="allow",server="test",tool="echo"} 1`,
				`mcpgate_policy_evaluation_seconds_count{server="test"}`,
				// The second delete_issue is read by the policy as the
				// first was.
				`mcpgate_decisions_recalled_total{server="test"}`,
			} {
				if !strings.Contains(metrics, want) {
					t.Errorf("metrics lack %s", want)
				}
			}

			entries := readDecisionLog(t, logFile)
			var blocked map[string]any
			deletes := 0
			for _, e := range entries {
				if e["tool"] == "delete_issue" {
					blocked = e
					if cached := e["cached"] == true; cached != (deletes > 0) {
						t.Errorf("delete_issue decision %d logged with cached = %v, want %v", deletes, cached, deletes > 0)
					}
					deletes++
				}
			}
			if blocked == nil {
				t.Fatalf("no decision log entry for delete_issue in %v", entries)
			}
			for _, field := range []string{"server", "tool", "category", "action", "reason", "evaluation_time", "request_id"} {
				if _, ok := blocked[field]; !ok {
					t.Errorf("decision log entry lacks %q: %v", field, blocked)
				}
			}
			if blocked["action"] != "block" || blocked["category"] != "destructive" {
				t.Errorf("decision log entry = %v, want action block, category destructive", blocked)
			}
			raw, _ := os.ReadFile(logFile)
			if got := bytes.Contains(raw, []byte("secret-argument")); got != logArguments {
				t.Errorf("arguments in the decision log: %v, want %v", got, logArguments)
			}
		})
	}
}

// readDecisionLog returns the "decision" entries of a JSON log file.
func readDecisionLog(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("opening the decision log: %v", err)
	}
	defer f.Close()
	var entries []map[string]any
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		var e map[string]any
		if json.Unmarshal(scanner.Bytes(), &e) == nil && e["msg"] == "decision" {
			entries = append(entries, e)
		}
	}
	return entries
}

// TestToolCallMetrics: what became of each tool call forwarded is counted
// on Caddy's metrics endpoint (mcpgate_tool_calls_total, by outcome) and
// timed (mcpgate_tool_call_seconds), on every transport: a go-sdk server
// answering a call with a result, and a call with arguments its schema
// refuses with a failed result (isError); a call the policy blocks is not
// forwarded, and not counted.
func TestToolCallMetrics(t *testing.T) {
	for _, tt := range sdkTransports {
		t.Run(tt.name, func(t *testing.T) {
			metricsPort := freePort(t)
			auditLog := filepath.Join(t.TempDir(), "audit.log")
			up := newTransportUpstream(t, tt.serve)
			gateway := startGateway(t, up.URL, gatewayOptions{
				policy: transportPolicy + "\n\t\taudit",
				global: []string{fmt.Sprintf("log audit {\n\t\toutput file %s\n\t\tformat json\n\t\tinclude mcpgate.audit\n\t}", auditLog)},
				sites:  fmt.Sprintf("\n:%d {\n\tbind 127.0.0.1\n\tmetrics\n}\n", metricsPort),
			})
			var client clientHandlers
			session := connectOver(t, tt.transport(gateway), client.options(), legacyVersion)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			before := scrapeMetrics(t, metricsPort)
			for _, args := range []map[string]any{{"text": "hi"}, {"text": 5}, {"text": "again"}} {
				if _, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: args}); err != nil {
					t.Fatalf("calling echo with %v: %v", args, err)
				}
			}
			if res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "delete_issue", Arguments: map[string]any{"text": "x"}}); err != nil || !res.IsError {
				t.Fatalf("delete_issue was not refused: %v %v", res, err)
			}
			// A call its client gives up on: the client cancels it
			// (notifications/cancelled), and the server answers nothing.
			slowCtx, cancelSlow := context.WithTimeout(ctx, 300*time.Millisecond)
			if _, err := session.CallTool(slowCtx, &mcp.CallToolParams{Name: "slow", Arguments: map[string]any{"text": "x"}}); err == nil {
				t.Fatal("the slow call ended before it was released")
			}
			cancelSlow()
			// HTTP+SSE: the answer is counted as the stream relays it, which
			// may be a moment after the client read it; and a scrape reads
			// the counter and the histogram one after the other, so that
			// one may count a call the other does not yet.
			testwait.Until(t, 5*time.Second, func() string {
				after := scrapeMetrics(t, metricsPort)
				if got := metricValue(after, "mcpgate_tool_call_seconds_count", `tool="echo"`) - metricValue(before, "mcpgate_tool_call_seconds_count", `tool="echo"`); got != 3 {
					return fmt.Sprintf("echo's calls timed %v times; want 3", got)
				}
				if got := metricValue(after, "mcpgate_tool_call_seconds_count", `tool="slow"`) - metricValue(before, "mcpgate_tool_call_seconds_count", `tool="slow"`); got != 1 {
					return fmt.Sprintf("slow's call timed %v times; want 1", got)
				}
				for _, want := range []struct {
					tool, outcome string
					n             float64
				}{{"echo", "ok", 2}, {"echo", "tool_error", 1}, {"slow", "cancelled", 1}, {"delete_issue", "ok", 0}, {"delete_issue", "failed", 0}} {
					labels := fmt.Sprintf(`outcome=%q,server="test",tool=%q`, want.outcome, want.tool)
					if got := metricValue(after, "mcpgate_tool_calls_total", labels) - metricValue(before, "mcpgate_tool_calls_total", labels); got != want.n {
						return fmt.Sprintf("mcpgate_tool_calls_total{%s} grew by %v; want %v\n%s", labels, got, want.n, after)
					}
				}
				return ""
			})
			// The audit trail records each end as the metrics count it.
			testwait.Until(t, 5*time.Second, func() string {
				entries, err := logEntries(auditLog)
				if err != nil {
					return err.Error()
				}
				var ended []string
				for _, e := range entries {
					if e["msg"] == "tool call ended" {
						ended = append(ended, fmt.Sprintf("%v %v", e["tool"], e["outcome"]))
						if e["id"] == "" || e["request_id"] == "" || e["session"] == "" || e["duration"] == nil {
							return fmt.Sprintf("record %v lacks the call's id, the POST's request id, the session or the duration", e)
						}
					}
				}
				slices.Sort(ended)
				if want := []string{"echo ok", "echo ok", "echo tool_error", "slow cancelled"}; !slices.Equal(ended, want) {
					return fmt.Sprintf("tool call ends recorded: %q; want %q", ended, want)
				}
				return ""
			})
		})
	}
}

// scrapeMetrics reads Caddy's metrics endpoint on port.
func scrapeMetrics(t *testing.T, port int) string {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		t.Fatalf("reading metrics: %v", err)
	}
	defer resp.Body.Close()
	metrics, _ := io.ReadAll(resp.Body)
	return string(metrics)
}

// metricValue is the value of the series of name whose labels hold
// labels, summed; 0 when there is none.
func metricValue(metrics, name, labels string) float64 {
	total := 0.0
	for line := range strings.Lines(metrics) {
		if !strings.HasPrefix(line, name+"{") || !strings.Contains(line, labels) {
			continue
		}
		fields := strings.Fields(line)
		if v, err := strconv.ParseFloat(fields[len(fields)-1], 64); err == nil {
			total += v
		}
	}
	return total
}
