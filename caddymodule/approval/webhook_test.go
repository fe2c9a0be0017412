package approval

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// delivery is one webhook POST as its receiver got it.
type delivery struct {
	header http.Header
	body   []byte
}

// recorder is a webhook receiver that keeps every POST as it came,
// refusing the first failFirst.
type recorder struct {
	failFirst int

	mu         sync.Mutex
	deliveries []delivery
	attempts   []string
}

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.attempts = append(rc.attempts, r.Header.Get(HeaderID))
	if len(rc.attempts) <= rc.failFirst {
		http.Error(w, "try later", http.StatusServiceUnavailable)
		return
	}
	rc.deliveries = append(rc.deliveries, delivery{r.Header.Clone(), body})
}

// got returns the deliveries accepted so far and the webhook-ids of
// every attempt.
func (rc *recorder) got() ([]delivery, []string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.deliveries), slices.Clone(rc.attempts)
}

// serve starts rc and returns its URL.
func (rc *recorder) serve(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	return srv.URL
}

// mustTemplate parses a webhook template or fails t.
func mustTemplate(t *testing.T, text string) Webhook {
	t.Helper()
	tmpl, err := parseTemplate("test.tmpl", text)
	if err != nil {
		t.Fatalf("parsing the test template: %v", err)
	}
	return Webhook{Template: tmpl}
}

// startService starts a memory-backed service with the settings, filling
// in the secrets and callback URL, and returns the webhook secret.
func startService(t *testing.T, settings Settings) (*Service, Secret) {
	t.Helper()
	secret := mustSecret(t, testSecret)
	settings.WebhookSecrets = []Secret{secret}
	settings.DecisionSecrets = []Secret{mustSecret(t, testDecisionSecret)}
	settings.CallbackURL = testCallbackURL
	settings.FirstRetry = 20 * time.Millisecond
	if settings.Timeout == 0 {
		settings.Timeout = time.Minute
	}
	s, err := NewService(func(onChange ChangeFunc) (Store, error) { return NewMemoryStore(onChange), nil }, &settings)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, secret
}

// TestTemplateWebhookDelivered: a receiver with a template gets the
// rendered body, with the template's content type and a signature that
// verifies over exactly the bytes it got, under one webhook-id across
// retries.
func TestTemplateWebhookDelivered(t *testing.T) {
	rc := &recorder{failFirst: 1}
	webhook := mustTemplate(t, `{"text": {{json (printf "%s wants %s: %s" .User.ID .Tool.Name .Reason)}}, "link": {{json .InboxURL}}}`)
	webhook.URL = rc.serve(t)
	webhook.ContentType = "application/vnd.example+json"
	s, secret := startService(t, Settings{Webhooks: []Webhook{webhook}, InboxURL: "https://gw.example/approvals/"})
	a, err := s.Request(context.Background(), &Call{User: "alice", Server: "tracker", Tool: "create_issue",
		Arguments: map[string]any{"title": "x"}, Reason: `writes "issues"`})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { got, _ := rc.got(); return len(got) == 1 }, "the templated webhook was never delivered")
	got, attempts := rc.got()
	d := got[0]
	want := `{"text": "alice wants create_issue: writes \"issues\"", "link": "https://gw.example/approvals/?approval=` + a.ID + `"}`
	if string(d.body) != want {
		t.Errorf("body = %s, want %s", d.body, want)
	}
	if ct := d.header.Get("Content-Type"); ct != "application/vnd.example+json" {
		t.Errorf("Content-Type = %q, want application/vnd.example+json", ct)
	}
	if _, err := secret.Verify(d.header, d.body, time.Now()); err != nil {
		t.Errorf("the signature over the rendered body: %v, want it verified", err)
	}
	wantID := "msg_" + a.ID + "_requested"
	if !slices.Equal(attempts, []string{wantID, wantID}) {
		t.Errorf("webhook-ids of the attempts = %q, want %q twice", attempts, wantID)
	}
}

// TestInvalidJSONNotSent: a template that renders invalid JSON for an
// event is logged and its receiver gets nothing, while the other
// receivers get theirs.
func TestInvalidJSONNotSent(t *testing.T) {
	bad, good := &recorder{}, &recorder{}
	broken := mustTemplate(t, `{"text": "{{.Reason}}"}`)
	broken.URL = bad.serve(t) + "/services/T000/B000/secret-token"
	core, logs := observer.New(zapcore.InfoLevel)
	s, _ := startService(t, Settings{Webhooks: []Webhook{broken, {URL: good.serve(t)}}, Logger: zap.New(core)})
	if _, err := s.Request(context.Background(), &Call{Server: "s", Tool: "t", Reason: `say "hi"`}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { got, _ := good.got(); return len(got) == 1 }, "the generic webhook was never delivered")
	time.Sleep(100 * time.Millisecond)
	if _, attempts := bad.got(); len(attempts) != 0 {
		t.Errorf("the receiver of the broken template got %d POSTs, want none", len(attempts))
	}
	entries := logs.FilterMessage("approval webhook not sent").All()
	if len(entries) != 1 {
		t.Fatalf("logged %d %q entries, want 1: %v", len(entries), "approval webhook not sent", logs.All())
	}
	fields := entries[0].ContextMap()
	if err, _ := fields["error"].(string); !strings.Contains(err, "invalid JSON") || !strings.Contains(err, "test.tmpl") {
		t.Errorf("logged error %q, want it to say test.tmpl rendered invalid JSON", err)
	}
	if receiver := fields["receiver"]; receiver != strings.TrimSuffix(broken.URL, "/services/T000/B000/secret-token") {
		t.Errorf("logged receiver %q, want the scheme and host alone (the path may be a credential)", receiver)
	}
}

// TestGenericWebhook: a webhook without a template gets the event as
// JSON, as before templates; inbox_url is there only with an inbox URL.
func TestGenericWebhook(t *testing.T) {
	tests := []struct {
		name, inboxURL, wantInbox string
	}{
		{"without an inbox", "", ""},
		{"with an inbox", "https://gw.example/approvals/", "https://gw.example/approvals/?approval="},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := &recorder{}
			s, secret := startService(t, Settings{Webhooks: []Webhook{{URL: rc.serve(t)}}, InboxURL: tt.inboxURL})
			a, err := s.Request(context.Background(), &Call{User: "bob", Server: "tracker", Tool: "create_issue", Arguments: map[string]any{"title": "x"}})
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, func() bool { got, _ := rc.got(); return len(got) == 1 }, "the webhook was never delivered")
			got, _ := rc.got()
			d := got[0]
			if ct := d.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			if _, err := secret.Verify(d.header, d.body, time.Now()); err != nil {
				t.Errorf("signature: %v, want it verified", err)
			}
			var members map[string]json.RawMessage
			if err := json.Unmarshal(d.body, &members); err != nil {
				t.Fatalf("body %s is not a JSON object: %v", d.body, err)
			}
			wantMembers := []string{"callback_url", "expires_at", "id", "requested_at", "server", "state", "timestamp", "tool", "type", "user"}
			if tt.wantInbox != "" {
				wantMembers = append(wantMembers, "inbox_url")
			}
			slices.Sort(wantMembers)
			gotMembers := slices.Sorted(func(yield func(string) bool) {
				for k := range members {
					if !yield(k) {
						return
					}
				}
			})
			if !slices.Equal(gotMembers, wantMembers) {
				t.Errorf("event members = %q, want %q", gotMembers, wantMembers)
			}
			var e Event
			if err := json.Unmarshal(d.body, &e); err != nil {
				t.Fatal(err)
			}
			wantLink := ""
			if tt.wantInbox != "" {
				wantLink = tt.wantInbox + a.ID
			}
			if e.InboxURL != wantLink || s.InboxLink(a.ID) != wantLink {
				t.Errorf("inbox link: event %q, InboxLink %q; want %q", e.InboxURL, s.InboxLink(a.ID), wantLink)
			}
			if e.Type != EventRequested || e.ID != a.ID || e.Tool.Name != "create_issue" || string(e.Tool.Arguments) != `{"title":"x"}` || e.User == nil || e.User.ID != "bob" {
				t.Errorf("event = %+v, want the requested call", e)
			}
		})
	}
}

// TestInboxLink: the link escapes the id and is empty without an inbox.
func TestInboxLink(t *testing.T) {
	tests := []struct {
		inboxURL, id, want string
	}{
		{"https://gw.example/approvals/", "apr_1", "https://gw.example/approvals/?approval=apr_1"},
		{"https://gw.example/inbox", "a b&c", "https://gw.example/inbox?approval=a+b%26c"},
		{"", "apr_1", ""},
	}
	for _, tt := range tests {
		settings := &Settings{InboxURL: tt.inboxURL}
		if got := settings.inboxLink(tt.id); got != tt.want {
			t.Errorf("inbox link of %q under %q = %q, want %q", tt.id, tt.inboxURL, got, tt.want)
		}
	}
}

// TestRender renders templates over one event: the functions, and which
// renderings are refused.
func TestRender(t *testing.T) {
	e := &Event{
		Type: EventRequested, ID: "apr_1", Server: "tracker",
		Tool:      EventTool{Name: "create_issue", Arguments: json.RawMessage(`{"title":"<b>\"x\"</b>","n":1}`)},
		Reason:    "Über <script>alert(1)</script> & \"more\"\nline two",
		Approvers: []string{"group:ops", "alice"},
	}
	tests := []struct {
		name, template, contentType string
		want                        string
		wantErr                     string
	}{
		{"json quotes and escapes", `{"r": {{json .Reason}}}`, "",
			`{"r": "Über <script>alert(1)</script> & \"more\"\nline two"}`, ""},
		{"json of the arguments", `{{json .Tool.Arguments}}`, "",
			`{"title":"<b>\"x\"</b>","n":1}`, ""},
		{"jsonIndent for people", `{{jsonIndent .Tool.Arguments}}`, "text/plain",
			"{\n  \"title\": \"<b>\\\"x\\\"</b>\",\n  \"n\": 1\n}", ""},
		{"truncate", `{{truncate 5 .Reason}}|{{truncate 100 .Tool.Name}}`, "text/plain", "Über…|create_issue", ""},
		{"join", `{{join ", " .Approvers}}`, "text/plain", "group:ops, alice", ""},
		{"visible", `{{visible "a\u202eb\nc\u200bd"}}`, "text/plain", "a⟨U+202E⟩b\nc⟨U+200B⟩d", ""},
		{"cut", `{{cut 3 "abcdef"}}|{{cut 10 "abc"}}`, "text/plain", "abc\n⟨3 more bytes not shown⟩|abc", ""},
		{"slackEscape", `{{slackEscape .Reason}}`, "text/plain",
			"Über &lt;script&gt;alert(1)&lt;/script&gt; &amp; \"more\"\nline two", ""},
		{"plain text is not checked", `reason: {{.Reason}}`, "text/plain; charset=utf-8",
			"reason: " + e.Reason, ""},
		{"raw text in a JSON string", `{"r": "{{.Reason}}"}`, "", "", "rendered invalid JSON at byte"},
		{"invalid JSON of a +json type", `{"r": {{.Reason}}}`, "application/cloudevents+json", "", "invalid JSON"},
		{"an empty rendering", `{{if false}}{}{{end}}`, "", "", "invalid JSON"},
		{"a failing template", `{{.User.ID}}`, "", "", "rendering webhook template"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			webhook := mustTemplate(t, tt.template)
			webhook.ContentType = tt.contentType
			got, err := webhook.Render(e)
			switch {
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("Render = %q, %v; want an error saying %q", got, err, tt.wantErr)
			case tt.wantErr == "" && err != nil:
				t.Errorf("Render: %v, want %q", err, tt.want)
			case tt.wantErr == "" && string(got) != tt.want:
				t.Errorf("Render = %q, want %q", got, tt.want)
			}
		})
	}
	t.Run("no template", func(t *testing.T) {
		got, err := (&Webhook{}).Render(e)
		want, _ := json.Marshal(e)
		if err != nil || string(got) != string(want) {
			t.Errorf("Render without a template = %s, %v; want the event as JSON, %s", got, err, want)
		}
	})
}

// TestTruncate cuts at characters, never inside one.
func TestTruncate(t *testing.T) {
	tests := []struct {
		n       int
		s, want string
	}{
		{5, "short", "short"},
		{4, "longer", "lon…"},
		{3, "日本語です", "日本…"},
		{1, "ab", "…"},
		{0, "ab", ""},
		{0, "", ""},
	}
	for _, tt := range tests {
		if got := truncate(tt.n, tt.s); got != tt.want {
			t.Errorf("truncate(%d, %q) = %q, want %q", tt.n, tt.s, got, tt.want)
		}
	}
}

// TestLoadTemplate: a missing file and a syntax error are errors naming
// the file (and the line).
func TestLoadTemplate(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	good := write("good.json.tmpl", `{"id": {{json .ID}}}`)
	tests := []struct {
		name, path string
		want       []string
	}{
		{"a good template", good, nil},
		{"a missing file", filepath.Join(dir, "missing.tmpl"), []string{"missing.tmpl", "no such file"}},
		{"a syntax error", "testdata/broken.json.tmpl", []string{"testdata/broken.json.tmpl:2", "parsing webhook template"}},
		{"an unknown function", write("unknown.tmpl", `{{shout .ID}}`), []string{"unknown.tmpl:1", `"shout" not defined`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl, err := LoadTemplate(tt.path)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("LoadTemplate(%s): %v, want it loaded", tt.path, err)
				}
				body, err := (&Webhook{Template: tmpl}).Render(&Event{ID: "apr_1"})
				if err != nil || string(body) != `{"id": "apr_1"}` {
					t.Errorf("rendering %s = %s, %v; want {\"id\": \"apr_1\"}", tt.path, body, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("LoadTemplate(%s) succeeded, want an error", tt.path)
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("LoadTemplate(%s): %v, want it to say %q", tt.path, err, want)
				}
			}
		})
	}
}

// TestConfigureCopiesWebhooks: the service keeps its own list of
// webhooks, so the caller's slice may change after Configure.
func TestConfigureCopiesWebhooks(t *testing.T) {
	webhooks := []Webhook{{URL: "https://a.example/hook"}}
	s, _ := startService(t, Settings{Webhooks: webhooks})
	webhooks[0].URL = "https://changed.example/hook"
	if got := s.settings.Load().Webhooks; !reflect.DeepEqual(got, []Webhook{{URL: "https://a.example/hook"}}) {
		t.Errorf("the service's webhooks = %+v after the caller changed its slice, want https://a.example/hook", got)
	}
}

// TestWebhookNotRedirected: a receiver that answers with a redirect does
// not get the event sent on to another host (a 307 sent it again there,
// with the webhook's URL, a credential, as Referer): the redirect is an
// answer other than 2xx, and the delivery is tried again.
func TestWebhookNotRedirected(t *testing.T) {
	elsewhere := &recorder{}
	elsewhereSrv := httptest.NewTLSServer(elsewhere)
	t.Cleanup(elsewhereSrv.Close)
	var attempts atomic.Int32
	redirector := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		attempts.Add(1)
		http.Redirect(w, r, elsewhereSrv.URL+"/collect", http.StatusTemporaryRedirect)
	}))
	t.Cleanup(redirector.Close)
	s, _ := startService(t, Settings{Client: redirector.Client(),
		Webhooks: []Webhook{{URL: redirector.URL + "/services/T000/B000/XXXXsecret"}}})
	if _, err := s.Request(context.Background(), &Call{User: "bob", Server: "tracker", Tool: "create_issue", Arguments: map[string]any{"title": "salary of carol"}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for attempts.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if attempts.Load() < 2 {
		t.Errorf("the receiver was tried %d times; want the redirect taken as a failure, and tried again", attempts.Load())
	}
	if got, _ := elsewhere.got(); len(got) > 0 {
		t.Errorf("the event went to the host the receiver redirected to, Referer %q", got[0].header.Get("Referer"))
	}
}
