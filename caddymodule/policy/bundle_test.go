package policy

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
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
	// stalling, when set, makes a download stall: the headers and a few
	// bytes of the bundle are sent, then nothing until the client gives
	// up; stalled counts the downloads that did.
	stalling bool
	stalled  int
	// polls counts the requests for the bundle.
	polls int
}

// serve makes a bundle of modules (path to source) and data the one served.
func (s *bundleServer) serve(t *testing.T, revision string, modules map[string]string, data map[string]any) {
	t.Helper()
	s.serveSigned(t, revision, modules, data, nil, "")
}

// serveSigned is serve, the bundle signed with signing as keyID when
// signing is set.
func (s *bundleServer) serveSigned(t *testing.T, revision string, modules map[string]string, data map[string]any, signing *bundle.SigningConfig, keyID string) {
	t.Helper()
	s.serveChanged(t, revision, modules, data, signing, keyID, nil)
}

// serveChanged is serveSigned, the bundle changed by change (when set)
// after it was signed.
func (s *bundleServer) serveChanged(t *testing.T, revision string, modules map[string]string, data map[string]any, signing *bundle.SigningConfig, keyID string, change func(*bundle.Bundle)) {
	t.Helper()
	if data == nil {
		data = map[string]any{} // as the bundle's data.json holds it, and its signature covers it
	}
	b := bundle.Bundle{Manifest: bundle.Manifest{Revision: revision}, Data: data}
	for path, source := range modules {
		b.Modules = append(b.Modules, bundle.ModuleFile{URL: path, Path: path, Raw: []byte(source)})
	}
	if signing != nil {
		if err := b.GenerateSignature(signing, keyID, false); err != nil {
			t.Fatalf("signing bundle: %v", err)
		}
	}
	if change != nil {
		change(&b)
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
	s.polls++
	if r.URL.Path != "/bundles/mcp.tar.gz" {
		http.NotFound(w, r)
		return
	}
	etag := `"` + s.revision + `"`
	if s.stalling {
		s.stalled++
		w.Header().Set("ETag", `"stalled"`)
		w.Header().Set("Content-Length", strconv.Itoa(len(s.tarball)))
		_, _ = w.Write(s.tarball[:16])
		w.(http.Flusher).Flush()
		s.mu.Unlock()
		<-r.Context().Done()
		s.mu.Lock()
		return
	}
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("ETag", etag)
	w.Header().Set("Content-Type", "application/gzip")
	_, _ = w.Write(s.tarball)
}

// pollCount returns how many requests for the bundle s has had.
func (s *bundleServer) pollCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.polls
}

// serveRaw makes raw, as it is, the bundle served as revision.
func (s *bundleServer) serveRaw(revision string, raw []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.revision, s.tarball = revision, raw
}

// stall makes the downloads stall, or not (see bundleServer.stalling),
// and returns how many stalled so far.
func (s *bundleServer) stall(stalling bool) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stalling = stalling
	return s.stalled
}

// start serves s until the test ends.
func (s *bundleServer) start(t *testing.T) *httptest.Server {
	t.Helper()
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return ts
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

// startBundleEngine serves revision 1 of bundlePolicy ("one") from a
// bundle server, and starts an engine polling it as cfg says (its URL and
// resource set), with a library module and a tool table of its own; it
// returns the server, the engine and its logs.
func startBundleEngine(t *testing.T, cfg BundleConfig) (*bundleServer, *Engine, *observer.ObservedLogs) {
	t.Helper()
	server := &bundleServer{}
	server.serve(t, "1", map[string]string{"/mcp/policy.rego": bundlePolicy}, map[string]any{"revision_note": "one"})
	cfg.URL, cfg.Resource = server.start(t).URL, "bundles/mcp.tar.gz"
	core, logs := observer.New(zap.InfoLevel)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	engine := newEngine(t, ctx, Options{
		Modules: map[string]string{"lib.rego": "package mcp.lib\nreason := \"(library)\"\n"},
		Data:    map[string]any{"mcp": map[string]any{"permissions": map[string]any{"tools": map[string]any{"t": "allow"}}}},
		Bundle:  &cfg,
		Logger:  zap.New(core),
	})
	return server, engine, logs
}

// TestBundle polls a bundle server: the first bundle is in force when New
// returns, combined with Options.Modules and Options.Data, and a new
// revision replaces it.
func TestBundle(t *testing.T) {
	server, engine, logs := startBundleEngine(t, BundleConfig{Token: "s3cret", MinDelay: 50 * time.Millisecond, MaxDelay: 100 * time.Millisecond})
	if !decidesAs(engine, ActionAllow, "one (library)")() {
		d, err := engine.Decide(context.Background(), toolInput("t"))
		t.Fatalf("decision = %+v (err %v), want allow with reason %q", d, err, "one (library)")
	}
	if got := server.lastAuthorization(); got != "Bearer s3cret" {
		t.Errorf("Authorization = %q, want the bearer token", got)
	}

	server.serve(t, "2", map[string]string{"/mcp/policy.rego": strings.Replace(bundlePolicy, "data.mcp.permissions.tools[input.tool.name]", `replace(data.mcp.permissions.tools[input.tool.name], "allow", "block")`, 1)}, map[string]any{"revision_note": "two"})
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

// TestBundleDownloadsBounded: a download that stalls past the download
// timeout, and a bundle larger than the max size (compressed, or once
// decompressed, the way a small archive can hold gigabytes), fail, are
// logged, and leave the previous policy deciding; the polling goes on,
// and the next good revision is activated.
func TestBundleDownloadsBounded(t *testing.T) {
	const maxSize = 1 << 20
	var random [2 * maxSize]byte
	_, _ = rand.Read(random[:])
	tests := []struct {
		name    string
		serve   func(*bundleServer)
		wantErr string
	}{
		{"a download that stalls", func(s *bundleServer) { s.stall(true) }, "took longer than its download_timeout (500ms)"},
		{"a bundle larger than the max size", func(s *bundleServer) { s.serveRaw("big", random[:]) }, "more than 1048576 bytes (max_size)"},
		{"a small archive larger than the max size once decompressed", func(s *bundleServer) {
			s.serveRaw("bomb", tarball(t, "data.json", bytes.Repeat([]byte("0"), 4*maxSize)))
		}, "decompresses to more than 1048576 bytes (max_size)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server, engine, logs := startBundleEngine(t, BundleConfig{MinDelay: time.Second, MaxDelay: time.Second,
				DownloadTimeout: 500 * time.Millisecond, MaxSize: maxSize})
			tt.serve(server)
			failed := func() []observer.LoggedEntry {
				return logs.FilterMessage("policy bundle failed; keeping the previous policy").All()
			}
			eventually(t, "the download to fail", func() bool { return len(failed()) > 0 })
			if err := failed()[0].ContextMap()["error"]; !strings.Contains(fmt.Sprint(err), tt.wantErr) {
				t.Errorf("logged %v, want an error saying %q", err, tt.wantErr)
			}
			if !decidesAs(engine, ActionAllow, "one (library)")() {
				t.Error("after the failed download the previous policy no longer decides")
			}
			server.stall(false)
			server.serve(t, "2", map[string]string{"/mcp/policy.rego": bundlePolicy}, map[string]any{"revision_note": "two"})
			eventually(t, "the next revision to be activated", decidesAs(engine, ActionAllow, "two (library)"))
		})
	}
}

// TestBundleRevisionIgnoresETags: one bundle is one revision of the
// policy, whatever ETag its server gives it: served by two servers that
// give two, or by one under a new ETag with the same bytes.
func TestBundleRevisionIgnoresETags(t *testing.T) {
	a, first, _ := startBundleEngine(t, BundleConfig{MinDelay: time.Second, MaxDelay: time.Second})
	a.mu.Lock()
	same := bytes.Clone(a.tarball)
	a.mu.Unlock()
	b := &bundleServer{}
	b.serveRaw("another-etag", same)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	second := newEngine(t, ctx, Options{
		Modules: map[string]string{"lib.rego": "package mcp.lib\nreason := \"(library)\"\n"},
		Data:    map[string]any{"mcp": map[string]any{"permissions": map[string]any{"tools": map[string]any{"t": "allow"}}}},
		Bundle:  &BundleConfig{URL: b.start(t).URL, Resource: "bundles/mcp.tar.gz", MinDelay: time.Second, MaxDelay: time.Second},
	})
	if first.Revision() != second.Revision() {
		t.Errorf("one bundle from two servers giving it two ETags: revisions %s and %s; want one", first.Revision(), second.Revision())
	}
	before := first.Revision()
	a.serveRaw("1-touched", same)
	// Two polls after it: the downloader handles one before it makes the
	// next.
	polled := a.pollCount()
	eventually(t, "two more polls", func() bool { return a.pollCount() >= polled+2 })
	if after := first.Revision(); after != before {
		t.Errorf("the same bundle under a new ETag: revision %s became %s; want it kept", before, after)
	}
}

// tarball returns a gzipped tar archive of one file, as a bundle is.
func tarball(t *testing.T, name string, content []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(content); err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(tw.Close(), zw.Close()); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestBundleNeverActivates checks that New gives up, within its context,
// when no usable bundle comes, and says why.
func TestBundleNeverActivates(t *testing.T) {
	server := &bundleServer{}
	server.serve(t, "1", map[string]string{"/mcp/policy.rego": bundlePolicy}, map[string]any{"revision_note": "one"})
	ts := server.start(t)
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
		{"a negative min", -5 * time.Second, time.Second, ""},
		{"a negative max", 0, -time.Second, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, err := pluginConfig(&BundleConfig{URL: "https://b.example", Resource: "b.tar.gz", MinDelay: tt.min, MaxDelay: tt.max})
			if tt.want == "" {
				if err == nil || !strings.Contains(err.Error(), "must not be negative") {
					t.Errorf("pluginConfig: %v, want the delays refused", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("pluginConfig: %v", err)
			}
			if !strings.Contains(string(raw), tt.want) {
				t.Errorf("config = %s, want polling %s", raw, tt.want)
			}
		})
	}
}

// rsaKeys returns a new RSA key pair in PEM: private, public.
func rsaKeys(t *testing.T) (string, string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	public, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: public}))
}

// TestBundleVerified: with a verification key, only bundles signed with it
// are activated: the first must be, for New to return; a later unsigned
// bundle, one signed with another key, or one whose module was changed
// after signing is refused, and the previous policy keeps deciding.
func TestBundleVerified(t *testing.T) {
	private, public := rsaKeys(t)
	otherPrivate, _ := rsaKeys(t)
	signing := bundle.NewSigningConfig(private, "RS256", "")
	allow := map[string]string{"/mcp/policy.rego": "package mcp\ndecision := {\"action\": \"allow\", \"reason\": \"signed\"}\n"}
	block := map[string]string{"/mcp/policy.rego": "package mcp\ndecision := {\"action\": \"block\", \"reason\": \"forged\"}\n"}
	verification := &BundleVerification{KeyID: "release", Key: public}

	t.Run("unsigned first bundle", func(t *testing.T) {
		server := &bundleServer{}
		server.serve(t, "1", allow, nil)
		ts := server.start(t)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := New(ctx, Options{Bundle: &BundleConfig{URL: ts.URL, Resource: "bundles/mcp.tar.gz", Verification: verification,
			MinDelay: 50 * time.Millisecond, MaxDelay: 100 * time.Millisecond, ActivationTimeout: 3 * time.Second}})
		if err == nil || !strings.Contains(err.Error(), "signature") {
			t.Errorf("New with an unsigned bundle: %v; want it refused for its missing signature", err)
		}
	})

	server := &bundleServer{}
	server.serveSigned(t, "1", allow, nil, signing, "release")
	ts := server.start(t)
	core, logs := observer.New(zap.InfoLevel)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	engine := newEngine(t, ctx, Options{
		Bundle: &BundleConfig{URL: ts.URL, Resource: "bundles/mcp.tar.gz", Verification: verification,
			MinDelay: 50 * time.Millisecond, MaxDelay: 100 * time.Millisecond},
		Logger: zap.New(core),
	})
	if !decidesAs(engine, ActionAllow, "signed")() {
		t.Fatal("the signed bundle does not decide")
	}
	for i, serve := range []func(revision string){
		func(revision string) { server.serve(t, revision, block, nil) },
		func(revision string) {
			server.serveSigned(t, revision, block, nil, bundle.NewSigningConfig(otherPrivate, "RS256", ""), "release")
		},
		func(revision string) {
			server.serveChanged(t, revision, allow, nil, signing, "release", func(b *bundle.Bundle) {
				b.Modules[0].Raw = []byte(block["/mcp/policy.rego"])
			})
		},
	} {
		failures := logs.FilterMessage("policy bundle failed; keeping the previous policy").Len()
		serve(strconv.Itoa(i + 2))
		eventually(t, "the bundle to be refused", func() bool {
			return logs.FilterMessage("policy bundle failed; keeping the previous policy").Len() > failures
		})

		if !decidesAs(engine, ActionAllow, "signed")() {
			t.Fatalf("bundle %d of the refused: the previous policy no longer decides", i+1)
		}
	}
	server.serveSigned(t, "9", map[string]string{"/mcp/policy.rego": strings.Replace(allow["/mcp/policy.rego"], "signed", "signed again", 1)}, nil, signing, "release")
	eventually(t, "a new signed revision to be activated", decidesAs(engine, ActionAllow, "signed again"))
}

// TestBundleVerificationRefused: a verification without its key, or with
// an algorithm OPA does not verify with, is refused at once.
func TestBundleVerificationRefused(t *testing.T) {
	for _, v := range []*BundleVerification{
		{KeyID: "k"},
		{Key: "x"},
		{KeyID: "k", Key: "x", Algorithm: "none"},
		{KeyID: "k", Key: "x", Algorithm: "rs256"},
	} {
		if _, err := pluginConfig(&BundleConfig{URL: "http://127.0.0.1:9", Resource: "b.tar.gz", Verification: v}); err == nil {
			t.Errorf("verification %+v: no error", v)
		}
	}
}
