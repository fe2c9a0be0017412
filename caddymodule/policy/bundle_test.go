package policy

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/bundle"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// bundleServer serves one bundle revision at a time, with its revision as
// ETag, the way a bundle service does.
type bundleServer struct {
	mu       sync.Mutex
	revision string
	tarball  []byte
	auth     string
}

// serve makes a bundle of modules (path to source) and data the one served.
func (s *bundleServer) serve(t *testing.T, revision string, modules map[string]string, data map[string]any) {
	t.Helper()
	b := bundle.Bundle{Manifest: bundle.Manifest{Revision: revision}, Data: data}
	for path, source := range modules {
		b.Modules = append(b.Modules, bundle.ModuleFile{URL: path, Path: path, Raw: []byte(source)})
	}
	var buf bytes.Buffer
	if err := bundle.Write(&buf, b); err != nil {
		t.Fatalf("writing bundle: %v", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.revision, s.tarball = revision, buf.Bytes()
}

func (s *bundleServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.auth = r.Header.Get("Authorization")
	if r.URL.Path != "/bundles/mcp.tar.gz" {
		http.NotFound(w, r)
		return
	}
	etag := `"` + s.revision + `"`
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("ETag", etag)
	w.Header().Set("Content-Type", "application/gzip")
	_, _ = w.Write(s.tarball)
}

func (s *bundleServer) lastAuthorization() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.auth
}

// bundlePolicy decides from the bundle's data, the gateway's data and a
// rule of the gateway's modules.
const bundlePolicy = `package mcp
decision := {"action": data.mcp.permissions.tools[input.tool.name], "reason": concat(" ", [data.revision_note, data.mcp.lib.reason])}
`

// TestBundle polls a bundle server: the first bundle is in force when New
// returns, combined with Options.Modules and Options.Data, and a new
// revision replaces it.
func TestBundle(t *testing.T) {
	server := &bundleServer{}
	server.serve(t, "1", map[string]string{"/mcp/policy.rego": bundlePolicy}, map[string]any{"revision_note": "one"})
	ts := httptest.NewServer(server)
	t.Cleanup(ts.Close)

	core, logs := observer.New(zap.InfoLevel)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	engine := newEngine(t, ctx, Options{
		Modules: map[string]string{"lib.rego": "package mcp.lib\nreason := \"(library)\"\n"},
		Data:    map[string]any{"mcp": map[string]any{"permissions": map[string]any{"tools": map[string]any{"t": "allow"}}}},
		Bundle: &BundleConfig{
			URL: ts.URL, Resource: "bundles/mcp.tar.gz", Token: "s3cret",
			MinDelay: 50 * time.Millisecond, MaxDelay: 100 * time.Millisecond,
		},
		Logger: zap.New(core),
	})
	if !decidesAs(engine, ActionAllow, "one (library)")() {
		d, err := engine.Decide(context.Background(), toolInput("t"))
		t.Fatalf("decision = %+v (err %v), want allow with reason %q", d, err, "one (library)")
	}
	if got := server.lastAuthorization(); got != "Bearer s3cret" {
		t.Errorf("Authorization = %q, want the bearer token", got)
	}

	server.serve(t, "2", map[string]string{"/mcp/policy.rego": strings.Replace(bundlePolicy, "data.mcp.permissions.tools[input.tool.name]", `"block"`, 1)}, map[string]any{"revision_note": "two"})
	// OPA polls in whole seconds: at least a second passes.
	eventually(t, "the new revision to be activated", decidesAs(engine, ActionBlock, "two (library)"))
	if logs.FilterMessage("policy reloaded").FilterField(zap.String("revision", "2")).Len() != 1 {
		t.Errorf("logs = %v, want one \"policy reloaded\" for revision 2", logs.All())
	}

	// A revision that does not compile is refused; the previous stays.
	server.serve(t, "3", map[string]string{"/mcp/policy.rego": "package mcp\ndecision := {"}, nil)
	eventually(t, "the broken revision to be refused", func() bool {
		return logs.FilterMessage("policy bundle failed; keeping the previous policy").Len() > 0
	})
	if !decidesAs(engine, ActionBlock, "two (library)")() {
		t.Error("after a broken revision the previous policy no longer decides")
	}
}

// TestBundleNeverActivates checks that New gives up, within its context,
// when no usable bundle comes, and says why.
func TestBundleNeverActivates(t *testing.T) {
	server := &bundleServer{}
	server.serve(t, "1", map[string]string{"/mcp/policy.rego": bundlePolicy}, map[string]any{"revision_note": "one"})
	ts := httptest.NewServer(server)
	t.Cleanup(ts.Close)
	silent := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	t.Cleanup(silent.Close)
	tests := []struct {
		name     string
		url      string
		resource string
		data     map[string]any
		wantErr  string
	}{
		{"not found", ts.URL, "bundles/missing.tar.gz", nil, "Not Found"},
		{"never answers", silent.URL, "bundles/mcp.tar.gz", nil, "deadline exceeded"},
		{"conflicts with the gateway's data", ts.URL, "bundles/mcp.tar.gz",
			map[string]any{"revision_note": "mine"}, "data.revision_note is set twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			start := time.Now()
			engine, err := New(ctx, Options{
				Data:   tt.data,
				Bundle: &BundleConfig{URL: tt.url, Resource: tt.resource, MinDelay: time.Second, MaxDelay: time.Second},
			})
			if err == nil {
				_ = engine.Close()
				t.Fatal("New succeeded, want an error")
			}
			if !strings.Contains(err.Error(), "no policy bundle activated from "+tt.url+"/"+tt.resource) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("New error = %v, want one saying no bundle activated, because %q", err, tt.wantErr)
			}
			if elapsed := time.Since(start); elapsed > 5*time.Second {
				t.Errorf("New took %s, want it to give up when its context ends", elapsed)
			}
		})
	}
}

// TestBundlePolling checks how polling delays become OPA's whole seconds.
func TestBundlePolling(t *testing.T) {
	tests := []struct {
		name     string
		min, max time.Duration
		want     string
	}{
		{"defaults", 0, 0, `"max_delay_seconds":20,"min_delay_seconds":10`},
		{"rounded up to a second", 50 * time.Millisecond, 100 * time.Millisecond, `"max_delay_seconds":1,"min_delay_seconds":1`},
		{"min above the default max", time.Minute, 0, `"max_delay_seconds":60,"min_delay_seconds":60`},
		{"fractions rounded up", 1500 * time.Millisecond, 2500 * time.Millisecond, `"max_delay_seconds":3,"min_delay_seconds":2`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, err := pluginConfig(&BundleConfig{URL: "https://b.example", Resource: "b.tar.gz", MinDelay: tt.min, MaxDelay: tt.max})
			if err != nil {
				t.Fatalf("pluginConfig: %v", err)
			}
			if !strings.Contains(string(raw), tt.want) {
				t.Errorf("config = %s, want polling %s", raw, tt.want)
			}
		})
	}
}
