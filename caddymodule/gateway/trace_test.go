package gateway_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
	"github.com/mcpgate/mcpgate/internal/testwait"
	"github.com/mcpgate/mcpgate/internal/upstreamtest"
)

// TestSpanTextBounded: what a client writes (a method, a tool name)
// reaches span names and attributes cut to a few hundred bytes, however
// long it is.
func TestSpanTextBounded(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatelessJSON)
	cfg := libraryConfig(t)
	cfg.MaxBody = 4 << 20
	g := newGateway(t, cfg)
	next := proxyTo(t, up.URL)
	recorder := tracetest.NewSpanRecorder()
	provider := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, span := provider.Tracer("test").Start(r.Context(), "request")
		defer span.End()
		if err := g.Serve(w, r.WithContext(ctx), next); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
		}
	}))
	t.Cleanup(srv.Close)
	long := strings.Repeat("é", 1<<19)
	post(t, srv.URL+"/mcp", nil, `{"jsonrpc":"2.0","id":1,"method":"`+long+`"}`)
	// The longest tool name a call may give (mcpmsg.MaxToolNameLength).
	post(t, srv.URL+"/mcp", nil, callBody("2", strings.Repeat("é", mcpmsg.MaxToolNameLength/2), "x"))
	// Spans end as their handlers return, which may be after the reply.
	testwait.Until(t, 5*time.Second, func() string {
		if n := len(recorder.Ended()); n < 4 {
			return fmt.Sprintf("%d spans ended; want the two requests' and their messages'", n)
		}
		return ""
	})
	spans := recorder.Ended()
	for _, s := range spans {
		if len(s.Name()) > 256 {
			t.Errorf("a span name of %d bytes", len(s.Name()))
		}
		for _, a := range s.Attributes() {
			if n := len(a.Value.String()); n > 256 {
				t.Errorf("span %.30q: attribute %s of %d bytes", s.Name(), a.Key, n)
			}
		}
		if n := len(s.Status().Description); n > 256 {
			t.Errorf("span %.30q: a status of %d bytes", s.Name(), n)
		}
	}
}
