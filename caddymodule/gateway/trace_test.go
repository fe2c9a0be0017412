package gateway_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/mcpgate/mcpgate/caddymodule/policy"
	"github.com/mcpgate/mcpgate/internal/upstreamtest"
	"github.com/mcpgate/mcpgate/policies"
)

// TestSpanTextBounded: what a client writes (a request id, a tool name)
// reaches span names and attributes cut to a few hundred bytes, however
// long it is.
func TestSpanTextBounded(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatelessJSON)
	engine, err := policy.New(context.Background(), policy.Options{Modules: policies.Library(), Data: permissionsTable()})
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, engine, filepath.Join(t.TempDir(), "pins.json"))
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
	post(t, srv.URL+"/mcp", nil, callBody(`"`+long+`"`, "echo", "x"))
	post(t, srv.URL+"/mcp", nil, callBody("1", long, "x"))
	spans := recorder.Ended()
	if len(spans) < 3 {
		t.Fatalf("%d spans recorded; want the requests' and their messages'", len(spans))
	}
	for _, s := range spans {
		if len(s.Name()) > 256 {
			t.Errorf("a span name of %d bytes", len(s.Name()))
		}
		for _, a := range s.Attributes() {
			if n := len(a.Value.Emit()); n > 256 {
				t.Errorf("span %.30q: attribute %s of %d bytes", s.Name(), a.Key, n)
			}
		}
		if n := len(s.Status().Description); n > 256 {
			t.Errorf("span %.30q: a status of %d bytes", s.Name(), n)
		}
	}
}
