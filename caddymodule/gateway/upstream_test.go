package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mcpgate/mcpgate/caddymodule/gateway"
	"github.com/mcpgate/mcpgate/caddymodule/policy"
	"github.com/mcpgate/mcpgate/internal/clienttest"
	"github.com/mcpgate/mcpgate/internal/upstreamtest"
)

// holdOpen keeps an event stream open after what was written, until the
// request ends or the test does (a server SHOULD close it; one may not).
func holdOpen(w http.ResponseWriter, r *http.Request, release <-chan struct{}) {
	w.(http.Flusher).Flush()
	select {
	case <-r.Context().Done():
	case <-release:
	}
}

// TestOwnRequestsNotHeldByOpenStreams: what the gateway sends the
// upstream of its own, on a client's behalf, does not wait for the
// upstream to close a stream it answered on. Its tools/list ends with
// the list's response (the call that needed the list runs), and its
// answer to a server request it refused ends with the reply's status
// (the rest of the call's stream is relayed).
func TestOwnRequestsNotHeldByOpenStreams(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	answered := make(chan struct{}, 1)
	up := upstreamtest.Raw(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		message, body := upstreamtest.ReadMessage(r)
		if r.Method != http.MethodPost {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		switch message.Method {
		case "initialize":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"raw","version":"1"}}}`, message.ID)
		case "tools/list":
			fmt.Fprintf(w, "data: {\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":{\"tools\":[{\"name\":\"echo\",\"inputSchema\":{\"type\":\"object\"},\"annotations\":{\"readOnlyHint\":true}},{\"name\":\"ask\",\"inputSchema\":{\"type\":\"object\"},\"annotations\":{\"readOnlyHint\":true}}]}}\n\n", message.ID)
			holdOpen(w, r, release)
		case "tools/call":
			if bytes.Contains(body, []byte(`"ask"`)) {
				// A server request the client never declared it could
				// answer: the gateway refuses it and answers it itself.
				fmt.Fprint(w, "data: {\"jsonrpc\":\"2.0\",\"id\":\"s1\",\"method\":\"sampling/createMessage\",\"params\":{\"messages\":[],\"maxTokens\":1}}\n\n")
				w.(http.Flusher).Flush()
				select {
				case <-answered:
				case <-time.After(5 * time.Second):
				}
			}
			fmt.Fprintf(w, "data: {\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"done\"}]}}\n\n", message.ID)
		case "":
			// The gateway's answer to s1.
			answered <- struct{}{}
			fmt.Fprint(w, ": thanks\n\n")
			holdOpen(w, r, release)
		default:
			w.Header().Del("Content-Type")
			w.WriteHeader(http.StatusAccepted)
		}
	}))
	gw := policyGateway(t, elicitingPolicy, up.URL)
	t.Run("tools/list", func(t *testing.T) {
		session := connect(t, gw.URL, nil, "2025-11-25")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "a"}})
		if err != nil || res.IsError {
			t.Fatalf("a call needing the gateway's own tools/list: %v %v; want it run (the list came at once, its stream stayed open)", res, err)
		}
	})
	t.Run("answer to a refused server request", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		status, events := clienttest.PostEvents(t, ctx, gw.URL, http.Header{"Mcp-Protocol-Version": {"2025-11-25"}},
			`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"ask","arguments":{}}}`)
		if status != http.StatusOK {
			t.Fatalf("HTTP %d", status)
		}
		for data := range events {
			if strings.Contains(data, `"done"`) {
				return
			}
		}
		t.Error("the call's result never came: the gateway waited for the stream that answered its own answer to end")
	})
}

// TestStrayResponsesKeptNowhere: responses to requests a POST did not
// carry, which the gateway drops from its reply, leave nothing behind
// while the stream lasts: an upstream that sends them without end on one
// open stream does not grow the gateway's memory.
func TestStrayResponsesKeptNowhere(t *testing.T) {
	const strays = 100_000
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	id := strings.Repeat("x", 240)
	up := upstreamtest.Raw(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if !bytes.Contains(body, []byte(`"tools/call"`)) {
			var request struct {
				ID json.RawMessage `json:"id"`
			}
			_ = json.Unmarshal(body, &request)
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"tools":[{"name":"echo","inputSchema":{"type":"object"},"annotations":{"readOnlyHint":true}}]}}`, request.ID)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		stream := bufio.NewWriterSize(w, 1<<20)
		for i := range strays {
			fmt.Fprintf(stream, "data: {\"jsonrpc\":\"2.0\",\"id\":\"%s-%09d\",\"result\":{}}\n\n", id, i)
		}
		fmt.Fprint(stream, "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"level\":\"info\",\"data\":\"strays sent\"}}\n\n")
		_ = stream.Flush()
		holdOpen(w, r, release)
	}))
	gw := policyGateway(t, elicitingPolicy, up.URL)
	heap := func() int64 {
		runtime.GC()
		var stats runtime.MemStats
		runtime.ReadMemStats(&stats)
		return int64(stats.HeapAlloc)
	}
	before := heap()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, events := clienttest.PostEvents(t, ctx, gw.URL, http.Header{"Mcp-Protocol-Version": {"2025-06-18"}},
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}}`)
	relayed := 0
	for data := range events {
		relayed++
		if strings.Contains(data, "strays sent") {
			break
		}
	}
	// Each stray kept would hold some 300 bytes: 30 MB in all.
	if grown := heap() - before; grown > 10<<20 || relayed != 1 {
		t.Errorf("with the stream open, %d events relayed and the heap grown by %d MiB; want 1 and nothing kept of the %d strays", relayed, grown>>20, strays)
	}
}

// TestRefusedServerRequestsLoggedOnce: an upstream that sends, on one
// reply, server requests the gateway refuses without end (here read
// otherwise than the policy reads them, with names of 8 KiB) gets one
// Warn line for the reply, its names cut, not one per request: the
// upstream does not choose the log's volume.
func TestRefusedServerRequestsLoggedOnce(t *testing.T) {
	const requests = 200
	name := strings.Repeat("m", 8<<10)
	up := upstreamtest.Raw(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		message, _ := upstreamtest.ReadMessage(r)
		switch message.Method {
		case "tools/list":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"tools":[{"name":"echo","inputSchema":{"type":"object"},"annotations":{"readOnlyHint":true}}]}}`, message.ID)
		case "tools/call":
			w.Header().Set("Content-Type", "text/event-stream")
			stream := bufio.NewWriterSize(w, 1<<20)
			for i := range requests {
				fmt.Fprintf(stream, "data: {\"jsonrpc\":\"2.0\",\"id\":\"s%d\",\"method\":\"sampling/createMessage\",\"params\":{\"messages\":[],\"maxTokens\":1,\"%s\":1,\"%s\":2}}\n\n",
					i, name, strings.ToUpper(name))
			}
			fmt.Fprintf(stream, "data: {\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"done\"}]}}\n\n", message.ID)
			_ = stream.Flush()
		default:
			w.WriteHeader(http.StatusAccepted)
		}
	}))
	engine, err := policy.New(context.Background(), policy.Options{Modules: map[string]string{"p.rego": elicitingPolicy}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, engine, filepath.Join(t.TempDir(), "pins.json"))
	cfg.MaxBody = 64 << 10
	core, logs := observer.New(zapcore.WarnLevel)
	cfg.Logger = zap.New(core)
	gw := serveGateway(t, cfg, up.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, events := clienttest.PostEvents(t, ctx, gw.URL, http.Header{"Mcp-Protocol-Version": {"2025-06-18"}},
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}}`)
	done := false
	for data := range events {
		done = done || strings.Contains(data, `"done"`)
	}
	warned := logs.FilterMessageSnippet("server request refused").All()
	size := 0
	for _, entry := range warned {
		for _, field := range entry.Context {
			size += len(field.String)
		}
	}
	if !done || len(warned) != 1 || size > 2<<10 {
		t.Errorf("%d refused server requests on one reply (result relayed: %v): %d Warn lines quoting %d bytes; want one line, its names cut", requests, done, len(warned), size)
	}
}

// TestSlowReaderKeepsItsStream: the bound on writes to a stream's client
// (streamWriteTimeout, here 500 ms) bounds a stall, not a transfer: a
// client reading steadily, slowly (about 1.6 MB/s through buffers of 16
// KiB), gets an event of 1 MiB, which takes it longer than the bound,
// and the stream goes on.
func TestSlowReaderKeepsItsStream(t *testing.T) {
	t.Cleanup(gateway.SetStreamWriteTimeout(500 * time.Millisecond))
	big := strings.Repeat("a", 1<<20)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, `data: {"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"`+big+`"}}`+"\n\n")
		_, _ = io.WriteString(w, `data: {"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"the end"}}`+"\n\n")
		w.(http.Flusher).Flush()
	}))
	t.Cleanup(up.Close)
	g := newGateway(t, libraryConfig(t))
	next := proxyTo(t, up.URL)
	srv := slowLinkServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := g.Serve(w, r, next); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
		}
	}))
	client := &http.Client{Transport: &http.Transport{DialContext: slowLinkDialer().DialContext}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req := clienttest.NewRequest(t, http.MethodGet, srv.URL+"/mcp", http.Header{"Accept": {"text/event-stream"}, "Mcp-Protocol-Version": {"2025-06-18"}}, nil).WithContext(ctx)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	stream := bufio.NewReaderSize(&pacedReader{r: resp.Body, chunk: 16 << 10, every: 10 * time.Millisecond}, 64<<10)
	start, got := time.Now(), 0
	for {
		line, err := stream.ReadString('\n')
		got += len(line)
		if strings.Contains(line, "the end") {
			return
		}
		if err != nil {
			t.Fatalf("the stream ended after %d bytes in %s (%v), its client reading all along; want the 1 MiB event and the one after it",
				got, time.Since(start).Round(time.Millisecond), err)
		}
	}
}

// pacedReader reads at most chunk bytes every period.
type pacedReader struct {
	r     io.Reader
	chunk int
	every time.Duration
}

func (p *pacedReader) Read(b []byte) (int, error) {
	time.Sleep(p.every)
	return p.r.Read(b[:min(len(b), p.chunk)])
}

// slowLinkServer serves handler on loopback with small send buffers, as a
// slow link has, until the test ends.
func slowLinkServer(t *testing.T, handler http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(handler)
	srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		if s == http.StateNew {
			_ = c.(*net.TCPConn).SetWriteBuffer(16 << 10)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// slowLinkDialer dials with small receive buffers, as a slow link has.
func slowLinkDialer() *net.Dialer {
	return &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 16<<10) })
	}}
}
