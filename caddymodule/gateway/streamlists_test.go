package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/caddymodule/gateway"
	"github.com/mcpgate/mcpgate/caddymodule/policy"
	"github.com/mcpgate/mcpgate/internal/clienttest"
	"github.com/mcpgate/mcpgate/policies"
)

// TestStreamListsJudgedWhenTheyCome: a stream open across a reload
// filters each tools list it carries by the policy in force when the list
// comes, even a list alike to the byte to one it carried before (a
// remembered filtering showed the model a tool the new policy blocks).
func TestStreamListsJudgedWhenTheyCome(t *testing.T) {
	const list = `{"tools":[{"name":"echo","description":"echoes","inputSchema":{"type":"object"},"annotations":{"readOnlyHint":true}},{"name":"other","description":"o","inputSchema":{"type":"object"},"annotations":{"readOnlyHint":true}}]}`
	first, release := make(chan struct{}), make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(http.StatusOK)
			fmt.Fprintf(w, "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":\"s-1\",\"result\":%s}\n\n", list)
			w.(http.Flusher).Flush()
			close(first)
			<-release
			fmt.Fprintf(w, "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":\"s-2\",\"result\":%s}\n\n", list)
			w.(http.Flusher).Flush()
			return
		}
		if r.Method != http.MethodPost {
			return
		}
		body, _ := io.ReadAll(r.Body)
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		_ = json.Unmarshal(body, &m)
		if m.ID == nil {
			w.WriteHeader(http.StatusAccepted)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		result := `{}`
		switch m.Method {
		case "initialize":
			w.Header().Set("Mcp-Session-Id", "s1")
			result = `{"protocolVersion":"2025-06-18","capabilities":{"tools":{"listChanged":true}},"serverInfo":{"name":"fake","version":"1"}}`
		case "tools/list":
			result = list
		}
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":%s}`, m.ID, result)
	}))
	t.Cleanup(up.Close)
	var now []*gateway.Gateway
	cfg := libraryConfig(t)
	cfg.Running = func() []*gateway.Gateway { return now }
	old := serveGateway(t, cfg, up.URL)
	now = []*gateway.Gateway{old.gateway}
	header := http.Header{}
	header.Set("Mcp-Session-Id", initialize(t, old.URL, header))
	header.Set("Mcp-Protocol-Version", "2025-06-18")
	post(t, old.URL, header, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`) // pins the tools
	req := clienttest.NewRequest(t, http.MethodGet, old.URL, header, nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	readEvent := eventReader(resp.Body)
	if e := readEvent(); !strings.Contains(e, `"echo"`) {
		t.Fatalf("the first list: %q; want echo in it", e)
	}
	<-first
	engine, err := policy.New(context.Background(), policy.Options{Modules: policies.Library(), Data: map[string]any{"mcp": map[string]any{"permissions": map[string]any{
		"read_only": "allow", "tools": map[string]any{"echo": "block"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	renewed := libraryConfig(t)
	renewed.Engine = engine
	now = []*gateway.Gateway{newGateway(t, renewed)}
	old.gateway.Retire(true) // the reload
	close(release)
	done := make(chan string, 1)
	go func() { done <- readEvent() }()
	select {
	case e := <-done:
		if strings.Contains(e, `"echo"`) || !strings.Contains(e, `"other"`) {
			t.Errorf("the same list after a reload that blocks echo: %q; want echo hidden", e)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no second list")
	}
}

// stepLists answers a batch of tools/list with an event stream, one list
// per step, each when its step's channel closes.
type stepLists struct {
	list  string
	steps []chan struct{}
}

// newStepLists answers a batch of n tools/list with a list of two
// read-only tools, echo and other, n times.
func newStepLists(n int) stepLists {
	up := stepLists{list: `{"tools":[{"name":"echo","inputSchema":{"type":"object"},"annotations":{"readOnlyHint":true}},{"name":"other","inputSchema":{"type":"object"},"annotations":{"readOnlyHint":true}}]}`}
	for range n {
		up.steps = append(up.steps, make(chan struct{}))
	}
	return up
}

// streamBatchOfLists serves g in front of up, posts a batch of as many
// tools/list as up has steps, lets the first list go, and returns what
// reads the reply's next event.
func streamBatchOfLists(t *testing.T, g *gateway.Gateway, up stepLists) func() string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := g.Serve(w, r, up); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
		}
	}))
	t.Cleanup(srv.Close)
	requests := make([]string, len(up.steps))
	for i := range requests {
		requests[i] = fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/list"}`, i+1)
	}
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/mcp", strings.NewReader("["+strings.Join(requests, ",")+"]"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = http.Header{"Accept": {"application/json, text/event-stream"}, "Content-Type": {"application/json"}, "Mcp-Protocol-Version": {"2025-03-26"}}
	close(up.steps[0])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return eventReader(resp.Body)
}

// eventReader returns what reads the next event of an event stream, its
// lines as they came.
func eventReader(body io.Reader) func() string {
	lines := bufio.NewReader(body)
	return func() string {
		var b strings.Builder
		for {
			line, err := lines.ReadString('\n')
			b.WriteString(line)
			if err != nil || line == "\n" {
				return b.String()
			}
		}
	}
}

func (u stepLists) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	_, _ = io.ReadAll(r.Body)
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	for i, step := range u.steps {
		<-step
		fmt.Fprintf(w, "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":%d,\"result\":%s}\n\n", i+1, u.list)
		_ = http.NewResponseController(w).Flush()
	}
	return nil
}

// TestBatchListsJudgedWhenTheyCome: a batch's reply that stays open
// across reloads judges each list by the policy in force when it comes,
// even one alike to the byte to a list it judged before (remembered, the
// filtering of the first showed a tool the policy in force blocks).
func TestBatchListsJudgedWhenTheyCome(t *testing.T) {
	engine := func(echo string) *policy.Engine {
		e, err := policy.New(context.Background(), policy.Options{Modules: policies.Library(), Data: map[string]any{"mcp": map[string]any{"permissions": map[string]any{
			"read_only": "allow", "tools": map[string]any{"echo": echo}}}}})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	var now []*gateway.Gateway
	cfg := libraryConfig(t)
	cfg.Running = func() []*gateway.Gateway { return now }
	g := newGateway(t, cfg)
	now = []*gateway.Gateway{g}
	up := newStepLists(3)
	next := streamBatchOfLists(t, g, up)
	next()
	// A reload to a configuration that allows echo, then another that
	// blocks it: the key of the first reload's list is alike to the second's
	// but for the policy judging it.
	allowing := libraryConfig(t)
	allowing.Engine = engine("allow")
	now = []*gateway.Gateway{newGateway(t, allowing)}
	g.Retire(true)
	close(up.steps[1])
	next()
	blocking := libraryConfig(t)
	blocking.Engine = engine("block")
	now = []*gateway.Gateway{newGateway(t, blocking)}
	close(up.steps[2])
	if e := next(); strings.Contains(e, `"echo"`) || !strings.Contains(e, `"other"`) {
		t.Errorf("the third list, after a reload that blocks echo: %q; want echo hidden", e)
	}
}

// TestBatchListsJudgedAfterAccept: a batch's reply streamed judges each
// list by the pins as they are when it comes: an operator accepting
// another definition of echo between two lists alike makes the second's
// echo changed, and hidden.
func TestBatchListsJudgedAfterAccept(t *testing.T) {
	cfg := libraryConfig(t)
	g := newGateway(t, cfg)
	up := newStepLists(2)
	next := streamBatchOfLists(t, g, up)
	if e := next(); !strings.Contains(e, `"echo"`) {
		t.Fatalf("the first list: %q; want echo in it", e)
	}
	other := json.RawMessage(`{"name":"echo","description":"new","inputSchema":{"type":"object"},"annotations":{"readOnlyHint":true}}`)
	if err := cfg.Catalog.Learn(context.Background(), cfg.Upstream, []json.RawMessage{other}, cfg.Catalog.Generation(cfg.Upstream)); err != nil {
		t.Fatal(err)
	}
	if _, err := cfg.Catalog.Accept(context.Background(), cfg.Upstream, "echo", ""); err != nil {
		t.Fatal(err)
	}
	close(up.steps[1])
	if e := next(); strings.Contains(e, `"echo"`) {
		t.Errorf("the second list, after another definition of echo was accepted: %q; want echo hidden", e)
	}
}
