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

	"github.com/mcpgate/mcpgate/caddymodule/mcphttp"
	"github.com/mcpgate/mcpgate/internal/upstreamtest"
)

// testListAge is how long the catalog's lists are current in these tests
// (catalog.MaxListAge in production).
const testListAge = 300 * time.Millisecond

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

// perCallerUpstream serves full's tools to sessions initialized without
// X-Variant, narrow's to those initialized with X-Variant: narrow (a
// server that lists tools per caller), each tools/list delayed by delay.
func perCallerUpstream(t *testing.T, full, narrow *upstreamtest.Upstream, delay time.Duration) *upstreamtest.Upstream {
	return full.Start(t, slowLists(mcp.NewStreamableHTTPHandler(func(r *http.Request) *mcp.Server {
		if r.Header.Get("X-Variant") == "narrow" {
			return narrow.Server
		}
		return full.Server
	}, &mcp.StreamableHTTPOptions{JSONResponse: true}), delay))
}

// restarting serves upstreamTools through before until restart is
// called, then, through a server of its own, echo unannotated
// (destructive now, and a definition its pin no longer matches) and
// peek; it starts a gateway in front whose lists are current for
// testListAge, has a first session's echo run (learning the list), and
// returns the gateway, the restarted server, restart and that session.
func restarting(t *testing.T, before *upstreamtest.Upstream) (gw *testGateway, after *upstreamtest.Upstream, restart func(), first http.Header) {
	t.Helper()
	after = upstreamtest.New(t, upstreamtest.StatefulJSON, []*mcp.Tool{{Name: "echo"}, upstreamTools[1]}, 0)
	proxy, restart := restartableProxy(t, before.URL, after.URL)
	gw = startGateway(t, proxy, gatewayOptions{})
	gw.catalog.SetMaxListAge(testListAge)
	first = session2025(t, gw.URL)
	if r := post(t, gw.URL, first, callBody("1", "echo", "a")); !strings.Contains(string(r.body), "echo:a") {
		t.Fatalf("echo before the restart: HTTP %d %s; want it run", r.status, r.body)
	}
	return gw, after, restart, first
}

// wantEchoRefused fails t unless r refused an echo call and the
// restarted server after never ran echo.
func wantEchoRefused(t *testing.T, what string, r reply, after *upstreamtest.Upstream) {
	t.Helper()
	if n := after.CallCount("echo"); n != 0 || !strings.Contains(string(r.body), `"isError":true`) {
		t.Errorf("%s: HTTP %d %s (ran %d times at the restarted server, destructive there); want it refused", what, r.status, r.body, n)
	}
}

// TestListRenewedAfterRestart: a server that restarts with other tools
// announces no list_changed: a call made past the list's age, before
// any list, is decided on a list fetched again, not on what the server
// listed before (found by an acceptance run). Here echo is read-only
// (allowed) until the server restarts with echo unannotated (destructive,
// blocked by the table, and a definition that no longer matches its
// pin): the restarted server never runs it.
func TestListRenewedAfterRestart(t *testing.T) {
	gw, after, restart, _ := restarting(t, newUpstream(t, upstreamtest.StatefulJSON))
	restart()
	time.Sleep(testListAge)
	wantEchoRefused(t, "echo after the restart, in a new session", post(t, gw.URL, session2025(t, gw.URL), callBody("2", "echo", "hi")), after)
}

// TestListRenewalFailureRefuses: a list past its age whose renewal fails
// decides nothing: the call is refused, as any call is whose list cannot
// be fetched (a server restarted with other tools may be what fails), and
// runs once the list is renewed.
func TestListRenewalFailureRefuses(t *testing.T) {
	mis, _, gw := misbehavingBehindGateway(t, nil) // list learned by a first echo
	gw.catalog.SetMaxListAge(testListAge)
	time.Sleep(testListAge)
	mis.toolList.Store("fail")
	if r := post(t, gw.URL, nil, callBody("2", "echo", "during")); !strings.Contains(string(r.body), "could not learn the server's tools") {
		t.Errorf("echo on a list to be renewed, its renewal failing: %s; want it refused", r.body)
	}
	mis.toolList.Store("")
	if r := post(t, gw.URL, nil, callBody("3", "echo", "after")); !strings.Contains(string(r.body), "echo:after") {
		t.Errorf("echo once the list is renewed: %s; want it run", r.body)
	}
}

// TestListRenewalInNarrowSession: a server that lists tools per caller (a
// narrow caller sees a subset) has the list renewed in whichever session
// calls first once it is past its age: renewed in a narrow caller's, the
// tools it dropped are fetched again in each wide caller's own session,
// within a limit of their own, so that the wide callers calling at once
// are not refused as of a tool the server does not offer (past the
// gateway's limit on fetches for unlisted tools, they were: found by a
// review); and sessions naming a dropped tool cost the server no more
// lists than that limit allows.
func TestListRenewalInNarrowSession(t *testing.T) {
	full := upstreamtest.Unstarted("full", nil, upstreamTools)
	narrow := upstreamtest.Unstarted("narrow", nil, upstreamTools[1:2]) // peek alone
	up := perCallerUpstream(t, full, narrow, 300*time.Millisecond)
	gw := startGateway(t, up.URL, gatewayOptions{})
	gw.catalog.SetMaxListAge(time.Hour)
	const wideCallers, narrowCallers = 8, 20
	var wide, narrowed []http.Header
	for range wideCallers {
		wide = append(wide, variantSession(t, gw.URL, ""))
	}
	for range narrowCallers {
		narrowed = append(narrowed, variantSession(t, gw.URL, "narrow"))
	}
	renewNarrowly := func() {
		gw.catalog.SetMaxListAge(testListAge)
		time.Sleep(testListAge)
		post(t, gw.URL, variantSession(t, gw.URL, "narrow"), callBody("2", "peek", "x")) // renews, in a narrow session
		gw.catalog.SetMaxListAge(time.Hour)
	}
	if r := post(t, gw.URL, wide[0], callBody("1", "echo", "x")); !strings.Contains(string(r.body), "echo:x") {
		t.Fatalf("echo: %s", r.body)
	}
	renewNarrowly()
	var refused atomic.Int32
	var wg sync.WaitGroup
	for i, s := range wide {
		wg.Go(func() {
			if r := post(t, gw.URL, s, callBody(strconv.Itoa(10+i), "echo", "y")); !strings.Contains(string(r.body), "echo:y") {
				refused.Add(1)
				t.Logf("wide session %d: %s", i, r.body)
			}
		})
	}
	wg.Wait()
	if n := refused.Load(); n > 0 {
		t.Errorf("%d of %d wide callers' echo refused after a renewal in a narrow session; want all run", n, wideCallers)
	}

	time.Sleep(time.Second) // the limiter refills
	renewNarrowly()
	before := toolsListsReceived(up)
	for i, s := range narrowed {
		wg.Go(func() { post(t, gw.URL, s, callBody(strconv.Itoa(100+i), "echo", "z")) })
	}
	wg.Wait()
	if got := toolsListsReceived(up) - before; got > 9 {
		t.Errorf("%d narrow sessions naming a tool a renewal dropped, at once: %d lists fetched; want at most 9", narrowCallers, got)
	}
}

// TestListRenewalInNarrowSessionAcrossRestart: a server that lists tools
// per caller restarts with echo destructive; the list is renewed in a
// narrow caller's session, which does not list echo: a wide caller's
// echo is decided on its own session's list, and refused (a version
// that kept the tools a renewal dropped decided it on the old
// definition: found by a review).
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
	gw.catalog.SetMaxListAge(testListAge)
	if r := post(t, gw.URL, variantSession(t, gw.URL, ""), callBody("1", "echo", "x")); !strings.Contains(string(r.body), "echo:x") {
		t.Fatalf("echo before the restart: %s", r.body)
	}
	restart()
	time.Sleep(testListAge)
	wide := variantSession(t, gw.URL, "")
	post(t, gw.URL, variantSession(t, gw.URL, "narrow"), callBody("2", "peek", "x")) // renews, in the narrow session
	r := post(t, gw.URL, wide, callBody("3", "echo", "y"))
	if n := fullAfter.CallCount("echo"); n != 0 || !strings.Contains(string(r.body), `"isError":true`) {
		t.Errorf("echo of a wide session after a renewal in a narrow one: %s (ran %d times, destructive now); want it refused", r.body, n)
	}
}

// TestListRenewalInEndedSession: a renewal made in a session the
// restarted server no longer knows tells its client so (404, to
// initialize anew); a session opened at the restarted server renews in
// its own, and its call is decided on the restarted server's list.
func TestListRenewalInEndedSession(t *testing.T) {
	gw, after, restart, old := restarting(t, newUpstream(t, upstreamtest.StatefulJSON))
	restart()
	time.Sleep(testListAge)
	if r := post(t, gw.URL, old, callBody("2", "peek", "x")); r.status != http.StatusNotFound {
		t.Errorf("a call renewing the list in a session the restarted server does not know: HTTP %d %s; want 404", r.status, r.body)
	}
	wantEchoRefused(t, "echo of a session opened at the restarted server", post(t, gw.URL, session2025(t, gw.URL), callBody("3", "echo", "hi")), after)
}

// TestListOlderRenewalStandsDown: of two renewals in two sessions, the
// one whose fetch started first, answered by the server before it
// restarted and arriving last, does not replace the list the restarted
// server answered (it did, and decided calls for a full age: found by a
// review).
func TestListOlderRenewalStandsDown(t *testing.T) {
	beforeUp := upstreamtest.Unstarted("test-upstream", nil, upstreamTools)
	gw, after, restart, a := restarting(t, beforeUp.Start(t, slowLists(upstreamtest.StatefulJSON.Handler(beforeUp.Server), 600*time.Millisecond)))
	time.Sleep(testListAge)
	var wg sync.WaitGroup
	wg.Go(func() { post(t, gw.URL, a, callBody("2", "peek", "x")) }) // renews in a, slowly, at the old server
	time.Sleep(100 * time.Millisecond)
	restart()
	post(t, gw.URL, session2025(t, gw.URL), callBody("3", "peek", "x")) // renews at the restarted server
	wg.Wait()                                                           // the old list arrives
	wantEchoRefused(t, "echo once an older renewal arrived last", post(t, gw.URL, session2025(t, gw.URL), callBody("4", "echo", "hi")), after)
}

// TestListOwnFetchOutrunStands: a server that lists tools per caller; a
// wide session's own fetch for a tool the held (narrow) list lacks,
// slower than a narrow session's fetch that started after it, is the
// list the wide call is decided on: its call runs, and so do its later
// ones (a version that let the fetch started last stand refused them,
// and locked the session out of fetching again: found by a review). So
// does a wide session's renewal outrun by a narrow fetch.
func TestListOwnFetchOutrunStands(t *testing.T) {
	full := upstreamtest.Unstarted("full", nil, upstreamTools)
	narrow := upstreamtest.Unstarted("narrow", nil, upstreamTools[1:2]) // peek alone
	handler := mcp.NewStreamableHTTPHandler(func(r *http.Request) *mcp.Server {
		if r.Header.Get("X-Variant") == "narrow" {
			return narrow.Server
		}
		return full.Server
	}, &mcp.StreamableHTTPOptions{JSONResponse: true})
	up := full.Start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		if d, err := time.ParseDuration(r.Header.Get("X-List-Delay")); err == nil && bytes.Contains(body, []byte(`"tools/list"`)) {
			time.Sleep(d)
		}
		handler.ServeHTTP(w, r)
	}))
	gw := startGateway(t, up.URL, gatewayOptions{})
	for _, renewal := range []bool{false, true} {
		post(t, gw.URL, variantSession(t, gw.URL, "narrow"), callBody("1", "peek", "x")) // a narrow list held
		wide := variantSession(t, gw.URL, "")
		if renewal {
			gw.catalog.SetMaxListAge(testListAge)
			time.Sleep(testListAge)
		}
		slow := wide.Clone()
		slow.Set("X-List-Delay", "600ms")
		var wg sync.WaitGroup
		var first reply
		wg.Go(func() { first = post(t, gw.URL, slow, callBody("3", "echo", "slow")) })
		time.Sleep(150 * time.Millisecond)
		gw.catalog.SetMaxListAge(time.Hour)
		post(t, gw.URL, variantSession(t, gw.URL, "narrow"), callBody("4", "nosuch", "x")) // starts later, ends first
		wg.Wait()
		if !strings.Contains(string(first.body), "echo:slow") {
			t.Errorf("renewal %v: a wide session's echo, its own fetch outrun: %s; want it run", renewal, first.body)
		}
		time.Sleep(2100 * time.Millisecond) // past missFetchInterval
		if r := post(t, gw.URL, wide, callBody("5", "echo", "later")); !strings.Contains(string(r.body), "echo:later") {
			t.Errorf("renewal %v: the wide session's later echo: %s; want it run", renewal, r.body)
		}
	}
}
