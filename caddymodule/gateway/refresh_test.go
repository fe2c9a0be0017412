package gateway_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/upstreamtest"
)

// compressing answers like an MCP server behind a proxy that compresses
// (Caddy's encode, nginx's gzip): a reply is gzipped when its request
// accepts gzip, or, once tools/list is set to misbehave, a tools/list
// reply always; or tools/list fails with HTTP 500.
type compressing struct {
	next     http.Handler
	toolList atomic.Value // "", "gzip always" or "fail"
}

func (c *compressing) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	mode, _ := c.toolList.Load().(string)
	isList := bytes.Contains(body, []byte(`"tools/list"`))
	if isList && mode == "fail" {
		http.Error(w, "upstream trouble", http.StatusInternalServerError)
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

// TestOwnToolListUncompressed checks that the gateway's own tools/list
// asks for an uncompressed reply whatever its client accepts: a client
// accepting gzip (as Go's does by default) in front of a compressing
// upstream has its calls decided, not refused for want of a list.
func TestOwnToolListUncompressed(t *testing.T) {
	u := upstreamtest.Unstarted("test-upstream", nil, upstreamTools)
	up := u.Start(t, &compressing{next: upstreamtest.StatelessJSON.Handler(u.Server)})
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
			u := upstreamtest.Unstarted("test-upstream", nil, upstreamTools)
			upstream := &compressing{next: upstreamtest.StatelessJSON.Handler(u.Server)}
			up := u.Start(t, upstream)
			gw := startGateway(t, up.URL, gatewayOptions{})
			if r := post(t, gw.URL, uncompressed, callBody("1", "echo", "before")); !strings.Contains(string(r.body), "echo:before") {
				t.Fatalf("echo before the change: HTTP %d %s", r.status, r.body)
			}
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
