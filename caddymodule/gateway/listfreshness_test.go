package gateway_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/caddymodule/catalog"
	"github.com/mcpgate/mcpgate/caddymodule/mcphttp"
	"github.com/mcpgate/mcpgate/internal/upstreamtest"
)

// slowLists delays every tools/list by delay before serving it.
func slowLists(next http.Handler, delay time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		if bytes.Contains(body, []byte(`"tools/list"`)) {
			time.Sleep(delay)
		}
		next.ServeHTTP(w, r)
	})
}

// restartableProxy is a proxy to the upstream at before until restart
// is called, then to the one at after: a server restarted with other
// tools.
func restartableProxy(t *testing.T, before, after string) (proxy string, restart func()) {
	var current atomic.Pointer[string]
	current.Store(&before)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		target, _ := url.Parse(*current.Load())
		(&httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(target) }}).ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, func() { current.Store(&after) }
}

// session2025 initializes a session through the gateway at gwURL and
// returns the headers its requests carry.
func session2025(t *testing.T, gwURL string) http.Header {
	t.Helper()
	return http.Header{mcphttp.HeaderSessionID: {initialize(t, gwURL, nil)}, mcphttp.HeaderProtocolVersion: {"2025-06-18"}}
}

// TestListRenewedAfterInitialize: a server that restarts with other tools
// announces no list_changed; its clients initialize anew, and a call made
// MinDueAge or more after the list's fetch started is decided on a list
// fetched again, not on what the server listed before, even when the
// client initialized within MinDueAge of that fetch (a first version
// dropped such an initialize: found by a review). Here echo is read-only
// (allowed) until the server restarts with echo unannotated
// (destructive, blocked by the table, and a definition that no longer
// matches its pin): the restarted server never runs it.
func TestListRenewedAfterInitialize(t *testing.T) {
	before := newUpstream(t, upstreamtest.StatefulJSON)
	after := upstreamtest.New(t, upstreamtest.StatefulJSON, []*mcp.Tool{{Name: "echo"}}, 0) // echo now destructive
	proxy, restart := restartableProxy(t, before.URL, after.URL)
	gw := startGateway(t, proxy, gatewayOptions{})

	old := session2025(t, gw.URL)
	if r := post(t, gw.URL, old, callBody("1", "echo", "hi")); !strings.Contains(string(r.body), "echo:hi") {
		t.Fatalf("echo before the restart: %s", r.body)
	}
	// The server restarts a moment after the list was fetched; its client
	// initializes anew at once (its session is gone).
	restart()
	fresh := session2025(t, gw.URL)
	time.Sleep(catalog.MinDueAge)
	r := post(t, gw.URL, fresh, callBody("2", "echo", "hi"))
	if after.CallCount("echo") != 0 || !strings.Contains(string(r.body), `"isError":true`) {
		t.Errorf("echo after the restart, in a session opened after it: %s (ran %d times on the restarted server, where it is destructive); want it refused", r.body, after.CallCount("echo"))
	}
}

// TestListFetchedAcrossRestartRenewed: a list the server answered before
// it restarted, learned after a client initialized at the restarted
// server (a graceful restart finishes the old process's requests while
// new sessions reach the new one), decides calls for MinDueAge at most
// from when its fetch started: a call after that is decided on a list
// fetched again.
func TestListFetchedAcrossRestartRenewed(t *testing.T) {
	beforeUp := upstreamtest.Unstarted("test-upstream", nil, upstreamTools)
	mis := &misbehaving{next: upstreamtest.StatefulJSON.Handler(beforeUp.Server)}
	before := beforeUp.Start(t, mis)
	after := upstreamtest.New(t, upstreamtest.StatefulJSON, []*mcp.Tool{{Name: "echo"}}, 0)
	proxy, restart := restartableProxy(t, before.URL, after.URL)
	gw := startGateway(t, proxy, gatewayOptions{})

	s1 := session2025(t, gw.URL)
	if r := post(t, gw.URL, s1, callBody("1", "echo", "a")); !strings.Contains(string(r.body), "echo:a") {
		t.Fatalf("first echo: %s", r.body)
	}
	time.Sleep(catalog.MinDueAge + 100*time.Millisecond)
	s2 := session2025(t, gw.URL) // Due: the next call fetches
	var fresh http.Header
	hook := func() {
		// The old process answered the list; it restarts and a client
		// initializes at the new one before the answer is learned.
		restart()
		fresh = session2025(t, gw.URL)
	}
	mis.afterList.Store(&hook)
	post(t, gw.URL, s2, callBody("2", "echo", "b"))
	time.Sleep(catalog.MinDueAge)
	r := post(t, gw.URL, fresh, callBody("3", "echo", "c"))
	if after.CallCount("echo") != 0 {
		t.Errorf("echo in a session initialized at the restarted server: %s (ran %d times there, where it is destructive); want it refused", r.body, after.CallCount("echo"))
	}
}

// TestListRenewalShared: once a client initialized, the sessions with a
// call in flight share one renewal of the list: N sessions calling a tool
// the table blocks (the call never reaches the server) cost it one list,
// not N (each fetched its own: found by a review).
func TestListRenewalShared(t *testing.T) {
	u := upstreamtest.Unstarted("test-upstream", nil, upstreamTools)
	up := u.Start(t, slowLists(upstreamtest.StatefulJSON.Handler(u.Server), 300*time.Millisecond))
	gw := startGateway(t, up.URL, gatewayOptions{})
	const n = 10
	var sessions []http.Header
	for range n {
		sessions = append(sessions, session2025(t, gw.URL))
	}
	post(t, gw.URL, sessions[0], callBody("1", "echo", "x")) // the list, learned
	time.Sleep(catalog.MinDueAge + 100*time.Millisecond)
	session2025(t, gw.URL) // one initialize: Due
	before := toolsListsReceived(up)
	var wg sync.WaitGroup
	for i, s := range sessions {
		wg.Go(func() { post(t, gw.URL, s, callBody(strconv.Itoa(10+i), "delete_issue", "x")) })
	}
	wg.Wait()
	if got := toolsListsReceived(up) - before; got > 1 {
		t.Errorf("one initialize, then %d blocked calls from %d sessions at once: the server was asked for its list %d times; want 1", n, n, got)
	}
	if calls := up.CallCount("delete_issue"); calls != 0 {
		t.Fatalf("delete_issue ran %d times", calls)
	}
}

// TestListHeldWhenRenewalFails: a list that was current, to be renewed
// (another client initialized), whose renewal fails (the server briefly
// down), still decides calls, as it did before: a call is not refused
// for it (it was: found by a review).
func TestListHeldWhenRenewalFails(t *testing.T) {
	mis, _, gw := misbehavingBehindGateway(t, nil) // list learned by a first echo
	time.Sleep(catalog.MinDueAge + 100*time.Millisecond)
	post(t, gw.URL, nil, `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`) // some other client initializes: Due
	mis.toolList.Store("fail")
	r := post(t, gw.URL, nil, callBody("2", "echo", "after"))
	if !strings.Contains(string(r.body), "echo:after") {
		t.Errorf("echo on a list to be renewed, its renewal failing: %s; want it run on the list held", r.body)
	}
}

// TestListRenewalKeepsOthersTools: a server that lists tools per caller
// (a narrow caller sees a subset) has the list renewed in whichever
// session calls first once a client initialized: renewed in a narrow
// caller's, it keeps the tools the wide list held, so that the wide
// callers' calls are not refused as of tools the server does not offer
// (they were: found by a review).
func TestListRenewalKeepsOthersTools(t *testing.T) {
	full := upstreamtest.Unstarted("full", nil, upstreamTools)
	narrow := upstreamtest.Unstarted("narrow", nil, upstreamTools[1:2]) // peek alone
	up := full.Start(t, slowLists(mcp.NewStreamableHTTPHandler(func(r *http.Request) *mcp.Server {
		if r.Header.Get("X-Variant") == "narrow" {
			return narrow.Server
		}
		return full.Server
	}, &mcp.StreamableHTTPOptions{JSONResponse: true}), 300*time.Millisecond))
	gw := startGateway(t, up.URL, gatewayOptions{})
	var wide []http.Header
	for range 8 {
		wide = append(wide, variantSession(t, gw.URL, ""))
	}
	if r := post(t, gw.URL, wide[0], callBody("1", "echo", "x")); !strings.Contains(string(r.body), "echo:x") {
		t.Fatalf("echo: %s", r.body)
	}
	time.Sleep(catalog.MinDueAge + 100*time.Millisecond)
	narrowed := variantSession(t, gw.URL, "narrow")
	post(t, gw.URL, narrowed, callBody("2", "peek", "x")) // in both lists: no miss
	var refused atomic.Int32
	var wg sync.WaitGroup
	for i, s := range wide {
		wg.Go(func() {
			r := post(t, gw.URL, s, callBody(strconv.Itoa(10+i), "echo", "y"))
			if !strings.Contains(string(r.body), "echo:y") {
				refused.Add(1)
				t.Logf("wide session %d: %s", i, r.body)
			}
		})
	}
	wg.Wait()
	if n := refused.Load(); n > 0 {
		t.Errorf("%d of %d wide callers' echo refused after a narrow caller initialized and called a tool both lists have; want all run", n, len(wide))
	}
}
