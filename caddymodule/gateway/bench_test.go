package gateway_test

import (
	"bytes"
	"context"
	"flag"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/mcpgate/mcpgate/caddymodule/gateway"
	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
	"github.com/mcpgate/mcpgate/caddymodule/policy"
	"github.com/mcpgate/mcpgate/internal/coldcache"
	"github.com/mcpgate/mcpgate/policies"
)

// benchPolicy is the end-to-end benchmarks' policy: a 1,000-entry tool
// table plus an argument rule on repo, which echo is subject to.
const benchPolicy = "../testdata/benchpolicy"

// benchEvict, when set, makes BenchmarkServe write through that many bytes
// of memory between two calls, as the calls through the other sites, the
// client and the upstream do between two calls of one site in the
// end-to-end benchmark, so that each call finds the gateway's code and
// data out of the processor's caches (16 MiB: four times this machine's
// L2), and report the calls' own median time (µs/median-call; ns/op then
// counts the writing too).
var benchEvict = flag.Int("gateway.evict", 0, "BenchmarkServe: bytes to write between two calls, to evict the processor's caches (0: none)")

// BenchmarkServe measures the gateway's own work on one allowed
// tools/call, without a network: Serve, from the request to the reply
// written, with a next handler that answers at once, as an upstream
// would, with a tool result in JSON. Every call names a repository of its
// own and the decision cache is off, so that every call is evaluated,
// with a policy that allows everything ("allow": what the gateway costs
// besides its policy), with benchPolicy ("rule") and with the shipped
// library deciding by a 1,000-entry permissions table ("table").
func BenchmarkServe(b *testing.B) {
	for _, bc := range []struct {
		name string
		opts func(b *testing.B) policy.Options
	}{
		{"allow", func(*testing.B) policy.Options {
			return policy.Options{Modules: map[string]string{"allow.rego": "package mcp\n\ndecision := {\"action\": \"allow\", \"reason\": \"allowed\"}\n"}}
		}},
		{"rule", func(*testing.B) policy.Options {
			return policy.Options{Paths: []string{benchPolicy}}
		}},
		{"table", func(b *testing.B) policy.Options {
			return policy.Options{Modules: policies.Library(), Data: benchPermissions(b)}
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			opts := bc.opts(b)
			opts.CacheSize = -1
			benchmarkServe(b, opts)
		})
	}
}

func benchmarkServe(b *testing.B, opts policy.Options) {
	g := benchGateway(b, opts)
	next := benchUpstream{}
	w := &benchWriter{header: http.Header{}}
	serve := func(n int) {
		w.reset()
		body := benchCall(n)
		r, err := http.NewRequest(http.MethodPost, "http://127.0.0.1:8080/mcp", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		r.RemoteAddr = "127.0.0.1:50000"
		r.ContentLength = int64(len(body))
		r.Header = http.Header{
			"Accept":               {"application/json, text/event-stream"},
			"Accept-Encoding":      {"gzip"},
			"Content-Length":       {strconv.Itoa(len(body))},
			"Content-Type":         {"application/json"},
			"Mcp-Protocol-Version": {"2025-06-18"},
			"User-Agent":           {"Go-http-client/1.1"},
		}
		if err := g.Serve(w, r, next); err != nil {
			b.Fatal(err)
		}
		if w.status != http.StatusOK || !bytes.Contains(w.body.Bytes(), []byte(`"text":"echo:`)) {
			b.Fatalf("call %d: status %d, body %s; want 200 with echo's result", n, w.status, w.body.Bytes())
		}
	}
	serve(0) // the gateway learns the upstream's tools
	b.ReportAllocs()
	coldcache.Loop(b, *benchEvict, serve)
}

// benchGateway builds a Gateway deciding with opts.
func benchGateway(b *testing.B, opts policy.Options) *gateway.Gateway {
	b.Helper()
	engine, err := policy.New(context.Background(), opts)
	if err != nil {
		b.Fatalf("loading the policy: %v", err)
	}
	cfg := testConfig(b, engine, filepath.Join(b.TempDir(), "pins.json"))
	cfg.MaxBody = 4 << 20
	return newGateway(b, cfg)
}

// benchCall is the n-th call BenchmarkServe makes: echo, with a text and
// a repository (under acme/, which the argument rule accepts) of its own.
func benchCall(n int) []byte {
	return []byte(`{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"echo","arguments":{"text":"Summarise the open issues labelled p1 in the widgets repository (call ` +
		strconv.Itoa(n) + `)","repo":"acme/widgets-` + strconv.Itoa(n) + `"},"_meta":{"progressToken":"bench-7f3a9c21"}}}`)
}

// benchPermissions is a permissions table in the shape of benchPolicy's:
// 1,000 tools and echo, each with its action.
func benchPermissions(b *testing.B) map[string]any {
	b.Helper()
	tools := map[string]any{"echo": "allow"}
	for i := range 1000 {
		action := "allow"
		switch {
		case i%10 == 7:
			action = "block"
		case i%20 == 3:
			action = "needs_approval"
		}
		tools["tool_"+strconv.Itoa(10000 + i)[1:]] = action
	}
	return map[string]any{"mcp": map[string]any{"permissions": map[string]any{
		"read_only": "allow", "write": "needs_approval", "destructive": "block", "tools": tools,
	}}}
}

// benchUpstream answers as a stateless go-sdk server in JSON mode would:
// tools/list with echo, tools/call with echo's result. It reads the
// calls no further than that, so that its own work weighs little.
type benchUpstream struct{}

// benchReply is echo's result, of the size go-sdk's would be.
var benchReply = []byte(`{"jsonrpc":"2.0","id":42,"result":{"content":[{"type":"text","text":"echo:Summarise the open issues labelled p1 in the widgets repository (call 1)"}]}}`)

// ServeHTTP implements gateway.Next.
func (benchUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	reply := benchReply
	if bytes.Contains(raw, []byte(`"tools/list"`)) {
		body, err := mcpmsg.Parse(raw, mcpmsg.Limits{})
		if err != nil {
			return err
		}
		reply = []byte(`{"jsonrpc":"2.0","id":` + string(body.Messages[0].ID) + `,"result":{"tools":[{"name":"echo","inputSchema":{"type":"object"}}]}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(reply)))
	w.WriteHeader(http.StatusOK)
	_, err = w.Write(reply)
	return err
}

// benchWriter is a ResponseWriter that keeps the reply, reused from call
// to call.
type benchWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (w *benchWriter) reset() {
	clear(w.header)
	w.status = 0
	w.body.Reset()
}

func (w *benchWriter) Header() http.Header { return w.header }

func (w *benchWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *benchWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.body.Write(p)
}
