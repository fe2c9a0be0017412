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

// TestListRenewalFailureRefuses: a list to be renewed (another client
// initialized) whose renewal fails decides nothing: the call is refused,
// as any call is whose list cannot be fetched (a server restarted with
// other tools may be what fails), and runs once the list is renewed.
// (A version that let the held list decide on a failure let a call of a
// session opened at a restarted server run on its old list, the renewal
// another session led having failed for that session alone: found by a
// review; see TestListRenewalInDeadSessionRetried.)
func TestListRenewalFailureRefuses(t *testing.T) {
	mis, _, gw := misbehavingBehindGateway(t, nil) // list learned by a first echo
	time.Sleep(catalog.MinDueAge)
	post(t, gw.URL, nil, `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`) // some other client initializes: Due
	mis.toolList.Store("fail")
	if r := post(t, gw.URL, nil, callBody("2", "echo", "during")); !strings.Contains(string(r.body), "could not learn the server's tools") {
		t.Errorf("echo on a list to be renewed, its renewal failing: %s; want it refused", r.body)
	}
	mis.toolList.Store("")
	if r := post(t, gw.URL, nil, callBody("3", "echo", "after")); !strings.Contains(string(r.body), "echo:after") {
		t.Errorf("echo once the list is renewed: %s; want it run", r.body)
	}
}

// TestListRenewalInNarrowSession: a server that lists tools per caller
// (a narrow caller sees a subset) has the list renewed in whichever
// session calls first once a client initialized: renewed in a narrow
// caller's, the tools it dropped are fetched again in each wide caller's
// own session, past the gateway's limit on such fetches, so that no wide
// caller's call is refused as of a tool the server does not offer (they
// were: found by a review).
func TestListRenewalInNarrowSession(t *testing.T) {
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

// TestListRenewalInDeadSessionRetried: a renewal led by a session the
// restarted server no longer knows (404) is made again in the session of
// each call that waited for it: a call of a session opened at the
// restarted server is decided on its list, not refused nor decided on the
// old one; the leader is told its session ended (404), so that its client
// initializes anew.
func TestListRenewalInDeadSessionRetried(t *testing.T) {
	before := newUpstream(t, upstreamtest.StatefulJSON)
	afterUp := upstreamtest.Unstarted("test-upstream", nil, []*mcp.Tool{{Name: "echo"}, upstreamTools[1]}) // echo now destructive
	after := afterUp.Start(t, slowLists(upstreamtest.StatefulJSON.Handler(afterUp.Server), 600*time.Millisecond))
	proxy, restart := restartableProxy(t, before.URL, after.URL)
	gw := startGateway(t, proxy, gatewayOptions{})
	old := session2025(t, gw.URL)
	if r := post(t, gw.URL, old, callBody("1", "echo", "a")); !strings.Contains(string(r.body), "echo:a") {
		t.Fatalf("echo before the restart: %s", r.body)
	}
	time.Sleep(catalog.MinDueAge)
	restart()
	fresh := session2025(t, gw.URL) // Due: the list is Renewable
	var wg sync.WaitGroup
	var leader reply
	wg.Go(func() { leader = post(t, gw.URL, old, callBody("2", "peek", "x")) }) // leads the renewal, in a dead session
	time.Sleep(200 * time.Millisecond)
	r := post(t, gw.URL, fresh, callBody("3", "echo", "hi")) // waits for it
	wg.Wait()
	if n := after.CallCount("echo"); n != 0 || !strings.Contains(string(r.body), `"isError":true`) || strings.Contains(string(r.body), "could not learn") {
		t.Errorf("echo of a session opened at the restarted server: %s (ran %d times there, where it is destructive); want it refused on the restarted server's list", r.body, n)
	}
	if leader.status != http.StatusNotFound {
		t.Errorf("the renewal's leader, its session gone: HTTP %d %s; want 404", leader.status, leader.body)
	}
}

// TestListRenewalInNarrowSessionAcrossRestart: a server that lists tools
// per caller restarts with echo destructive; the list is renewed in a
// narrow caller's session, which does not list echo: a wide caller's
// echo is not decided on the old definition (a version that kept the
// tools a renewal dropped did: found by a review) but on its own
// session's list, and refused.
func TestListRenewalInNarrowSessionAcrossRestart(t *testing.T) {
	serve := func(full, narrow *upstreamtest.Upstream) http.Handler {
		return mcp.NewStreamableHTTPHandler(func(r *http.Request) *mcp.Server {
			if r.Header.Get("X-Variant") == "narrow" {
				return narrow.Server
			}
			return full.Server
		}, &mcp.StreamableHTTPOptions{JSONResponse: true})
	}
	fullBefore := upstreamtest.Unstarted("full", nil, upstreamTools)
	narrowBefore := upstreamtest.Unstarted("narrow", nil, upstreamTools[1:2])
	before := fullBefore.Start(t, serve(fullBefore, narrowBefore))
	fullAfter := upstreamtest.Unstarted("full", nil, []*mcp.Tool{{Name: "echo"}, upstreamTools[1], upstreamTools[2], upstreamTools[3]})
	narrowAfter := upstreamtest.Unstarted("narrow", nil, upstreamTools[1:2])
	after := fullAfter.Start(t, serve(fullAfter, narrowAfter))
	proxy, restart := restartableProxy(t, before.URL, after.URL)
	gw := startGateway(t, proxy, gatewayOptions{})
	if r := post(t, gw.URL, variantSession(t, gw.URL, ""), callBody("1", "echo", "x")); !strings.Contains(string(r.body), "echo:x") {
		t.Fatalf("echo before the restart: %s", r.body)
	}
	time.Sleep(catalog.MinDueAge)
	restart()
	wide := variantSession(t, gw.URL, "")
	post(t, gw.URL, variantSession(t, gw.URL, "narrow"), callBody("2", "peek", "x")) // renews, in the narrow session
	r := post(t, gw.URL, wide, callBody("3", "echo", "y"))
	if n := fullAfter.CallCount("echo"); n != 0 || !strings.Contains(string(r.body), `"isError":true`) {
		t.Errorf("echo of a wide session after a renewal in a narrow one: %s (ran %d times, destructive now); want it refused", r.body, n)
	}
}

// TestListLearnedLateRenewed: a renewal the old server answers after it
// restarted, and after MinDueAge (a client initialized at the new one
// meanwhile), decides calls for MinDueAge at most once learned: a call
// after that is decided on a list fetched again.
func TestListLearnedLateRenewed(t *testing.T) {
	beforeUp := upstreamtest.Unstarted("test-upstream", nil, upstreamTools)
	mis := &misbehaving{next: upstreamtest.StatefulJSON.Handler(beforeUp.Server)}
	before := beforeUp.Start(t, mis)
	after := upstreamtest.New(t, upstreamtest.StatefulJSON, []*mcp.Tool{{Name: "echo"}}, 0) // echo now destructive
	proxy, restart := restartableProxy(t, before.URL, after.URL)
	gw := startGateway(t, proxy, gatewayOptions{})
	post(t, gw.URL, session2025(t, gw.URL), callBody("1", "echo", "a"))
	time.Sleep(catalog.MinDueAge)
	s2 := session2025(t, gw.URL) // Due: the next call renews
	var fresh http.Header
	hook := func() {
		restart()
		fresh = session2025(t, gw.URL)
		time.Sleep(catalog.MinDueAge + 300*time.Millisecond) // the old answer leaves late
	}
	mis.afterList.Store(&hook)
	post(t, gw.URL, s2, callBody("2", "peek", "b"))
	time.Sleep(catalog.MinDueAge)
	r := post(t, gw.URL, fresh, callBody("3", "echo", "c"))
	if n := after.CallCount("echo"); n != 0 {
		t.Errorf("echo of a session opened at the restarted server, MinDueAge after the old list was learned: %s (ran %d times, destructive now); want it refused", r.body, n)
	}
}
