package gateway_test

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"context"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mcpgate/mcpgate/caddymodule/mcphttp"
	"github.com/mcpgate/mcpgate/caddymodule/policy"
	"github.com/mcpgate/mcpgate/internal/upstreamtest"
	"github.com/mcpgate/mcpgate/policies"
)

// misbehaving answers like an MCP server behind a proxy that compresses
// (Caddy's encode, nginx's gzip): a reply is gzipped when its request
// accepts gzip, or, once tools/list is set to misbehave, a tools/list
// reply always; or tools/list fails with HTTP 500. afterList, when set,
// runs once, after a tools/list is answered and before its reply leaves.
type misbehaving struct {
	next      http.Handler
	toolList  atomic.Value // "", "gzip always" or "fail"
	afterList atomic.Pointer[func()]
}

func (c *misbehaving) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	mode, _ := c.toolList.Load().(string)
	isList := bytes.Contains(body, []byte(`"tools/list"`))
	if isList && mode == "fail" {
		http.Error(w, "upstream trouble", http.StatusInternalServerError)
		return
	}
	if after := c.afterList.Load(); isList && after != nil && c.afterList.CompareAndSwap(after, nil) {
		rec := httptest.NewRecorder()
		c.next.ServeHTTP(rec, r)
		(*after)()
		maps.Copy(w.Header(), rec.Header())
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
		return
	}
	if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") && !(isList && mode == "gzip always") {
		c.next.ServeHTTP(w, r)
		return
	}
	z := gzip.NewWriter(w)
	defer z.Close()
	c.next.ServeHTTP(&gzipWriter{ResponseWriter: w, z: z}, r)
}

type gzipWriter struct {
	http.ResponseWriter
	z *gzip.Writer
}

func (w *gzipWriter) Write(p []byte) (int, error) { return w.z.Write(p) }

func (w *gzipWriter) WriteHeader(status int) {
	w.Header().Del("Content-Length")
	w.Header().Set("Content-Encoding", "gzip")
	w.ResponseWriter.WriteHeader(status)
}

// misbehavingBehindGateway starts a misbehaving upstream (serving
// upstreamTools) and a gateway in front of it, which learns its list from
// a first call of echo, made with header.
func misbehavingBehindGateway(t *testing.T, header http.Header) (*misbehaving, *upstreamtest.Upstream, *testGateway) {
	t.Helper()
	u := upstreamtest.Unstarted("test-upstream", nil, upstreamTools)
	upstream := &misbehaving{next: upstreamtest.StatelessJSON.Handler(u.Server)}
	up := u.Start(t, upstream)
	gw := startGateway(t, up.URL, gatewayOptions{})
	if r := post(t, gw.URL, header, callBody("1", "echo", "before")); !strings.Contains(string(r.body), "echo:before") {
		t.Fatalf("echo before the change: HTTP %d %s", r.status, r.body)
	}
	return upstream, up, gw
}

// TestOwnToolListUncompressed checks that the gateway's own tools/list
// asks for an uncompressed reply whatever its client accepts: a client
// accepting gzip (as Go's does by default) in front of a compressing
// upstream has its calls decided, not refused for want of a list.
func TestOwnToolListUncompressed(t *testing.T) {
	u := upstreamtest.Unstarted("test-upstream", nil, upstreamTools)
	up := u.Start(t, &misbehaving{next: upstreamtest.StatelessJSON.Handler(u.Server)})
	gw := startGateway(t, up.URL, gatewayOptions{})
	r := post(t, gw.URL, http.Header{"Accept-Encoding": {"gzip"}}, callBody("1", "echo", "x"))
	if r.header.Get("Content-Encoding") != "" || !strings.Contains(string(r.body), "echo:x") {
		t.Fatalf("a call from a client accepting gzip: HTTP %d, Content-Encoding %q, %s; want echo run", r.status, r.header.Get("Content-Encoding"), r.body)
	}
}

// TestStaleListNotUsed checks that a call is never decided on a list the
// upstream announced changed when the list cannot be fetched again: the
// tool may be something else now. (A client could otherwise choose the
// list it is decided by, making the refresh fail.)
func TestStaleListNotUsed(t *testing.T) {
	uncompressed := http.Header{"Accept-Encoding": {"identity"}}
	for _, failure := range []string{"fail", "gzip always"} {
		t.Run(failure, func(t *testing.T) {
			upstream, up, gw := misbehavingBehindGateway(t, uncompressed)
			// echo becomes destructive, the upstream says its list changed,
			// and its list cannot be fetched.
			upstream.toolList.Store(failure)
			up.AddTool(&mcp.Tool{Name: "echo", Description: "now wipes the disk"})
			gw.catalog.Forget(testUpstream)
			r := post(t, gw.URL, uncompressed, callBody("2", "echo", "after"))
			if !strings.Contains(string(r.body), `"isError":true`) || !strings.Contains(string(r.body), "could not learn the server's tools") {
				t.Fatalf("echo after its list changed and could not be fetched: HTTP %d %s; want refused", r.status, r.body)
			}
			if n := up.CallCount("echo"); n != 1 {
				t.Fatalf("the upstream ran echo %d times, want once (before the change)", n)
			}
		})
	}
}

// TestNamedToolUnlisted checks that a tool the permissions table names
// one by one for this server (an entry for every server, or in the
// server's section; in the configuration or, as here, in the policy's
// data files) but the upstream does not list is logged once, whether the
// gateway fetched the list or a client's list taught it, and that listed
// ones, and those of other servers' sections, are not.
func TestNamedToolUnlisted(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatelessJSON)
	core, logs := observer.New(zapcore.WarnLevel)
	dir := t.TempDir()
	table := `{"read_only": "allow", "write": "allow", "tools": {"delete-issue": "block", "echo": "allow"},
		"servers": {"` + testServer + `": {"tools": {"ghost": "block"}}, "other": {"tools": {"elsewhere": "block"}}}}`
	if err := os.MkdirAll(filepath.Join(dir, "mcp", "permissions"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "mcp", "permissions", "data.json"), []byte(table), 0o644); err != nil {
		t.Fatal(err)
	}
	engine, err := policy.New(context.Background(), policy.Options{Modules: policies.Library(), Paths: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, engine, filepath.Join(t.TempDir(), "pins.json"))
	cfg.Logger, cfg.MaxBody = zap.New(core), 64<<10
	gw := serveGateway(t, cfg, up.URL)
	post(t, gw.URL, nil, callBody("1", "echo", "x"))
	post(t, gw.URL, nil, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
	var named []string
	for _, entry := range logs.FilterMessageSnippet("names a tool the upstream does not list").All() {
		named = append(named, entry.ContextMap()["tool"].(string))
	}
	if !slices.Equal(named, []string{"delete-issue", "ghost"}) {
		t.Errorf("logged as unlisted: %q; want delete-issue and ghost, once each", named)
	}
}

// TestListChangedWhileFetched checks that a call is decided only on a
// current list: a list the upstream announces changed while the gateway
// fetches it is fetched again, and the call decided on the new one.
func TestListChangedWhileFetched(t *testing.T) {
	upstream, up, gw := misbehavingBehindGateway(t, nil)
	gw.catalog.Forget(testUpstream)
	change := func() {
		up.AddTool(&mcp.Tool{Name: "echo", Description: "now wipes the disk"})
		gw.catalog.Forget(testUpstream)
	}
	upstream.afterList.Store(&change)
	r := post(t, gw.URL, nil, callBody("2", "echo", "after"))
	if strings.Contains(string(r.body), "echo:after") || up.CallCount("echo") != 1 {
		t.Fatalf("echo, its list announced changed while fetched: HTTP %d %s; want it decided on the new list (refused)", r.status, r.body)
	}
}

// TestListPerSession: a server that lists tools per session (by the
// capabilities a client declared, the scopes of its token) is asked again,
// in the caller's own session, when a call names a tool the list the
// gateway holds (another session's) lacks: the call is decided on its own
// session's list. Tools no list has cost a session one more fetch at
// most, not one per call or per name.
func TestListPerSession(t *testing.T) {
	full := upstreamtest.Unstarted("full", nil, upstreamTools)
	narrow := upstreamtest.Unstarted("narrow", nil, upstreamTools[1:2]) // peek alone
	up := full.Start(t, mcp.NewStreamableHTTPHandler(func(r *http.Request) *mcp.Server {
		if r.Header.Get("X-Variant") == "narrow" {
			return narrow.Server
		}
		return full.Server
	}, &mcp.StreamableHTTPOptions{JSONResponse: true}))
	gw := startGateway(t, up.URL, gatewayOptions{})
	wide, narrowed := variantSession(t, gw.URL, ""), variantSession(t, gw.URL, "narrow")
	lists := func() int { return toolsListsReceived(up) }

	if r := post(t, gw.URL, wide, callBody("1", "echo", "first")); !strings.Contains(string(r.body), "echo:first") {
		t.Fatalf("echo in the wide session: %s", r.body)
	}
	// The server announces its tools changed; the narrow session's call
	// has the gateway fetch its list, which lacks echo.
	gw.catalog.Forget(testUpstream)
	if r := post(t, gw.URL, narrowed, callBody("3", "peek", "x")); !strings.Contains(string(r.body), "is set to block") {
		t.Fatalf("peek in the narrow session: %s; want it refused by the table", r.body)
	}
	if r := post(t, gw.URL, wide, callBody("4", "echo", "again")); !strings.Contains(string(r.body), "echo:again") {
		t.Errorf("echo in the wide session, after the narrow list was fetched: %s; want it decided on the wide session's list", r.body)
	}
	// Calls naming tools no list has: the wide session's own list is the
	// one held, so they fetch nothing more; the narrow session, whose
	// list is not, has it fetched once, whatever names it tries next.
	for _, tt := range []struct {
		session http.Header
		name    string
		want    int
	}{{wide, "the wide session", 0}, {narrowed, "the narrow session", 1}} {
		before := lists()
		for i, tool := range []string{"not_listed", "nor_this", "nor_that"} {
			if r := post(t, gw.URL, tt.session, callBody(strconv.Itoa(10+i), tool, "x")); !strings.Contains(string(r.body), "does not offer a tool") {
				t.Errorf("%s calling %s: %s; want it refused as unlisted", tt.name, tool, r.body)
			}
		}
		if n := lists() - before; n != tt.want {
			t.Errorf("%s named three tools no list has: the list was fetched %d times; want %d", tt.name, n, tt.want)
		}
	}
}

// TestListRefetchesBounded: sessions naming a tool no list has each have
// the list fetched anew at most once, and all of them together no more
// than the gateway's bound (4 at once, then 2 a second): one client
// cannot turn its calls into as many tools/list of the upstream.
func TestListRefetchesBounded(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatefulJSON)
	gw := startGateway(t, up.URL, gatewayOptions{})
	var sessions []http.Header
	for range 12 {
		sessions = append(sessions, sessionHeader(t, gw.URL))
	}
	post(t, gw.URL, sessions[0], callBody("1", "echo", "x")) // the list, learned
	lists := func() int { return toolsListsReceived(up) }
	before, start := lists(), time.Now()
	for round := range 3 {
		for i, session := range sessions {
			post(t, gw.URL, session, callBody(strconv.Itoa(100*round+i), "ghost_"+strconv.Itoa(round), "x"))
		}
	}
	bound := 4 + int(2*time.Since(start).Seconds()) + 1
	if n := lists() - before; n > bound || n > len(sessions) {
		t.Errorf("%d sessions named tools no list has, three times each: %d fetches of the list; want at most %d (and one per session)", len(sessions), n, min(bound, len(sessions)))
	}
}

// variantSession opens a session through the gateway at url of an
// upstream that lists tools per session, chosen at initialize by
// X-Variant, and returns the headers its requests carry.
func variantSession(t *testing.T, url, variant string) http.Header {
	t.Helper()
	return http.Header{mcphttp.HeaderSessionID: {initialize(t, url, http.Header{"X-Variant": {variant}})}, mcphttp.HeaderProtocolVersion: {"2025-06-18"}}
}

// toolsListsReceived counts the tools/list requests up received.
func toolsListsReceived(up *upstreamtest.Upstream) int {
	n := 0
	for _, r := range up.Received() {
		if bytes.Contains(r.Body, []byte(`"tools/list"`)) {
			n++
		}
	}
	return n
}

// TestListRefetchesNotStarved: sessions naming tools no list has, again
// and again, do not take the refetches a session whose tools the held list
// lacks needs: a list fetched again alike re-arms nobody, and sessions
// whose lists differ, taking turns, re-arm each other no more often than
// a session may refetch.
func TestListRefetchesNotStarved(t *testing.T) {
	readOnly := &mcp.ToolAnnotations{ReadOnlyHint: true}
	servers := map[string]*upstreamtest.Upstream{
		"":       upstreamtest.Unstarted("wide", nil, upstreamTools),
		"narrow": upstreamtest.Unstarted("narrow", nil, []*mcp.Tool{{Name: "narrow_tool", Annotations: readOnly}}),
		"third":  upstreamtest.Unstarted("third", nil, []*mcp.Tool{{Name: "third_tool", Annotations: readOnly}}),
	}
	for _, secondVariant := range []string{"", "narrow"} {
		t.Run("the second session's list: "+cmp.Or(secondVariant, "wide"), func(t *testing.T) {
			up := upstreamtest.Raw(t, mcp.NewStreamableHTTPHandler(func(r *http.Request) *mcp.Server {
				return servers[r.Header.Get("X-Variant")].Server
			}, &mcp.StreamableHTTPOptions{JSONResponse: true}))
			gw := startGateway(t, up.URL, gatewayOptions{})
			first, second, nina := variantSession(t, gw.URL, ""), variantSession(t, gw.URL, secondVariant), variantSession(t, gw.URL, "third")
			post(t, gw.URL, first, callBody("1", "echo", "x")) // the wide list, held
			for i := range 6 {
				for _, session := range []http.Header{first, second} {
					post(t, gw.URL, session, callBody(strconv.Itoa(10+i), "ghost", "x"))
				}
			}
			if r := post(t, gw.URL, nina, callBody("2", "third_tool", "x")); !strings.Contains(string(r.body), "third_tool:x") {
				t.Errorf("nina's own tool, after two sessions named a ghost twelve times: %s; want it run on her session's list", r.body)
			}
		})
	}
}

// TestListSessionsTakingTurns: two sessions of a server that lists tools
// per session, each calling its own tool in turn at a person's pace, are
// each decided on their own session's list every time.
func TestListSessionsTakingTurns(t *testing.T) {
	gw := startGateway(t, twoListsUpstream(t).URL, gatewayOptions{})
	sessions := map[string]http.Header{}
	for _, variant := range []string{"a", "b"} {
		sessions[variant] = variantSession(t, gw.URL, variant)
	}
	for round := range 3 {
		for _, variant := range []string{"a", "b"} {
			tool := variant + "_tool"
			if r := post(t, gw.URL, sessions[variant], callBody(strconv.Itoa(round), tool, "x")); !strings.Contains(string(r.body), tool+":x") {
				t.Errorf("round %d, session %s calling %s: %s; want it run on its own session's list", round, variant, tool, r.body)
			}
			time.Sleep(500 * time.Millisecond) // a person's pace: the gateway's bound on fetches refills
		}
	}
}

// TestListPerSessionShown: a session's own tools/list shows its tools
// although the list the gateway holds is another session's: tools nothing
// pinned yet are trusted on first use from the page the client reads, as
// from a list the gateway fetched, while the list held goes stale (the
// next call fetches its own session's).
func TestListPerSessionShown(t *testing.T) {
	gw := startGateway(t, twoListsUpstream(t).URL, gatewayOptions{})
	a, b := variantSession(t, gw.URL, "a"), variantSession(t, gw.URL, "b")
	if r := post(t, gw.URL, a, callBody("1", "a_tool", "x")); !strings.Contains(string(r.body), "a_tool:x") {
		t.Fatalf("a_tool in session a: %s", r.body)
	}
	for i := range 2 {
		if r := post(t, gw.URL, b, `{"jsonrpc":"2.0","id":`+strconv.Itoa(10+i)+`,"method":"tools/list"}`); !strings.Contains(string(r.body), `"b_tool"`) {
			t.Errorf("tools/list %d in session b, while session a's list is held: %s; want b_tool shown", i+1, r.body)
		}
	}
	if r := post(t, gw.URL, b, callBody("2", "b_tool", "x")); !strings.Contains(string(r.body), "b_tool:x") {
		t.Errorf("b_tool in session b: %s", r.body)
	}
}

// twoListsUpstream is an upstream that lists tools per session: a_tool to
// sessions opened with X-Variant a (or none), b_tool to those opened with
// b, both read-only.
func twoListsUpstream(t *testing.T) *upstreamtest.Upstream {
	t.Helper()
	readOnly := &mcp.ToolAnnotations{ReadOnlyHint: true}
	servers := map[string]*upstreamtest.Upstream{
		"a": upstreamtest.Unstarted("a", nil, []*mcp.Tool{{Name: "a_tool", Annotations: readOnly}}),
		"b": upstreamtest.Unstarted("b", nil, []*mcp.Tool{{Name: "b_tool", Annotations: readOnly}}),
	}
	return upstreamtest.Raw(t, mcp.NewStreamableHTTPHandler(func(r *http.Request) *mcp.Server {
		// Asked for each request; a session's own server serves those
		// that carry its id.
		return cmp.Or(servers[r.Header.Get("X-Variant")], servers["a"]).Server
	}, &mcp.StreamableHTTPOptions{JSONResponse: true}))
}
