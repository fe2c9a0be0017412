package caddymodule_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"golang.org/x/crypto/bcrypt"

	"github.com/mcpgate/mcpgate/caddymodule/approval"
	_ "github.com/mcpgate/mcpgate/caddymodule/demo"
	"github.com/mcpgate/mcpgate/internal/upstreamtest"
)

// inboxApprovals returns an mcp_approvals body with an inbox for alice
// and bob (passwords "wonderland" and "builder").
func inboxApprovals(t testing.TB) string {
	t.Helper()
	hash := func(password string) string {
		h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		return string(h)
	}
	return fmt.Sprintf("inbox {\n\t\t\t\tbasic_auth {\n\t\t\t\t\talice %s\n\t\t\t\t\tbob %s\n\t\t\t\t}\n\t\t\t}",
		hash("wonderland"), hash("builder"))
}

// inboxRequest sends a request to the inbox as user (no credentials when
// user is empty), with extra headers, and returns the response and body.
func inboxRequest(t *testing.T, method, target, user, password string, form url.Values, header http.Header) (*http.Response, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, target, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for name, values := range header {
		req.Header[name] = values
	}
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	client := &http.Client{Timeout: testClient.Timeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp, string(raw)
}

var formToken = regexp.MustCompile(`name="token" value="([^"]+)"`)

// TestInboxProtected checks the inbox's guards: only inbox accounts see
// it, and a decision needs the page's token for the same approver and a
// same-origin request.
func TestInboxProtected(t *testing.T) {
	g, _, e, done := holdCall(t, approvalSetup{approvals: inboxApprovals(t)}, "<script>alert(1)</script>")
	inbox := g.Callbacks + "/"

	resp, _ := inboxRequest(t, http.MethodGet, inbox, "", "", nil, nil)
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
		t.Errorf("inbox without credentials: %d (WWW-Authenticate %q), want 401 with a challenge", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	if resp, _ := inboxRequest(t, http.MethodGet, inbox, "alice", "guess", nil, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("inbox with a wrong password: %d, want 401", resp.StatusCode)
	}
	resp, page := inboxRequest(t, http.MethodGet, inbox, "alice", "wonderland", nil, nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, e.ID) || !strings.Contains(page, "&lt;script&gt;") {
		t.Fatalf("inbox for alice: %d, want 200 listing %s with its arguments escaped:\n%s", resp.StatusCode, e.ID, page)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("inbox Content-Security-Policy = %q, want default-src 'none'", csp)
	}
	match := formToken.FindStringSubmatch(page)
	if match == nil {
		t.Fatal("the inbox page has no form token")
	}
	aliceToken := match[1]
	_, bobPage := inboxRequest(t, http.MethodGet, inbox, "bob", "builder", nil, nil)
	bobToken := formToken.FindStringSubmatch(bobPage)[1]

	approve := func(token string) url.Values {
		return url.Values{"id": {e.ID}, "decision": {"approve"}, "token": {token}}
	}
	refused := []struct {
		name   string
		user   string
		form   url.Values
		header http.Header
	}{
		{"no token", "alice", approve(""), nil},
		{"another approver's token", "alice", approve(bobToken), nil},
		{"cross-site", "alice", approve(aliceToken), http.Header{"Sec-Fetch-Site": {"cross-site"}}},
		{"another origin", "alice", approve(aliceToken), http.Header{"Origin": {"https://evil.example"}}},
		{"no credentials", "", approve(aliceToken), nil},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			password := map[string]string{"alice": "wonderland"}[tt.user]
			if resp, body := inboxRequest(t, http.MethodPost, inbox, tt.user, password, tt.form, tt.header); resp.StatusCode < 400 {
				t.Errorf("decision accepted (%d %s), want it refused", resp.StatusCode, body)
			}
		})
	}
	select {
	case r := <-done:
		t.Fatalf("a refused inbox decision released the call: %+v", r)
	case <-time.After(100 * time.Millisecond):
	}

	resp, _ = inboxRequest(t, http.MethodPost, inbox, "alice", "wonderland", approve(aliceToken), http.Header{"Sec-Fetch-Site": {"same-origin"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("alice's decision from her page: %d, want 303", resp.StatusCode)
	}
	if res := awaitResult(t, done); res.IsError {
		t.Errorf("approved from the inbox, the call answered %q", resultText(res))
	}
}

// chromiumPath returns the Chromium binary, skipping the test without one
// unless in CI, where .ci/run installs it.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed")
	}
	t.Skip("chromium is not installed")
	return ""
}

// browserSignedIn starts headless Chromium for the test, sending user's
// basic-auth credentials with every request it makes (to any site, as a
// browser that signed in does to its own), and returns the context its
// steps run in, with a deadline of their own.
func browserSignedIn(t *testing.T, chromium, user, password string) context.Context {
	t.Helper()
	credentials := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	return browserWith(t, chromium, network.Headers{"Authorization": "Basic " + credentials})
}

// browserWith starts headless Chromium for the test, sending headers with
// every request it makes, and returns the context its steps run in, with
// a deadline of their own.
func browserWith(t *testing.T, chromium string, headers network.Headers) context.Context {
	t.Helper()
	allocator, stopAllocator := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		// Chromium keeps its singleton socket in a folder of TMPDIR, and
		// leaves it there: the test's own, removed with it.
		chromedp.Env("TMPDIR="+t.TempDir()),
	)
	t.Cleanup(stopAllocator)
	browser, stopBrowser := chromedp.NewContext(allocator)
	t.Cleanup(stopBrowser)
	if _, err := chromedp.Call(browser, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: headers}); err != nil {
		t.Fatalf("starting Chromium: %v", err)
	}
	steps, stopSteps := context.WithTimeout(browser, 20*time.Second)
	t.Cleanup(stopSteps)
	return steps
}

// TestInboxInBrowser drives the inbox page in headless Chromium as an
// approver would: the held call is listed with its arguments, and the
// Approve button releases it.
func TestInboxInBrowser(t *testing.T) {
	chromium := chromiumPath(t)
	g, _, e, done := holdCall(t, approvalSetup{approvals: inboxApprovals(t)}, "from the browser")

	steps := browserSignedIn(t, chromium, "alice", "wonderland")
	section := chromedp.CSS("#" + e.ID)
	err := chromedp.Do(steps,
		chromedp.Navigate(g.Callbacks+"/"),
		chromedp.WaitVisible(section),
		chromedp.SendKeys(chromedp.CSS("#"+e.ID+" input[name=reason]"), "fine by me"),
	)
	if err != nil {
		t.Fatalf("opening the inbox in Chromium: %v", err)
	}
	arguments, err := chromedp.Run(steps, chromedp.Text(chromedp.CSS("#"+e.ID+" .arguments")))
	if err != nil {
		t.Fatalf("reading the arguments: %v", err)
	}
	if err := chromedp.Do(steps, chromedp.Click(chromedp.CSS("#approve-"+e.ID)), chromedp.WaitVisible(chromedp.CSS("#decided"))); err != nil {
		t.Fatalf("approving in Chromium: %v", err)
	}
	notice, err := chromedp.Run(steps, chromedp.Text(chromedp.CSS("#decided")))
	if err != nil {
		t.Fatalf("reading the notice: %v", err)
	}
	if !strings.Contains(arguments, `"text": "from the browser"`) {
		t.Errorf("the inbox shows arguments %q, want the call's", arguments)
	}
	if !strings.Contains(notice, e.ID+" is approved (inbox:alice)") {
		t.Errorf("after Approve the page says %q, want it approved by alice", notice)
	}
	res := awaitResult(t, done)
	if res.IsError || resultText(res) != "create_issue:from the browser" {
		t.Errorf("approved in the browser, the call answered isError %v, %q", res.IsError, resultText(res))
	}
}

// hostilePage is a page that an upstream (hostile, or made to serve what
// a caller wrote) may answer a browser with: it reads the inbox on its
// own site and approves whatever is pending there, as whoever opened it.
const hostilePage = `<!doctype html><title>notes</title><pre id=out>working</pre>
<script>
(async () => {
  let n = 0;
  try {
    const page = await (await fetch('/approvals/', {credentials: 'include'})).text();
    const doc = new DOMParser().parseFromString(page, 'text/html');
    for (const form of doc.querySelectorAll('form')) {
      const body = new URLSearchParams({id: form.id.value, token: form.token.value, decision: 'approve', reason: 'lgtm'});
      if ((await fetch('/approvals/', {method: 'POST', body, credentials: 'include'})).ok) n++;
    }
    document.getElementById('out').textContent = 'approved ' + n;
  } catch (e) {
    document.getElementById('out').textContent = 'failed: ' + e;
  }
})();
</script>`

// TestInboxBesideTheEndpointInBrowser: with the inbox on the MCP
// endpoint's own site, as the docs and the demo put it, a page the
// upstream serves there (an error page: a GET's 2xx reply must be a
// stream) cannot act as the inbox's reviewer in a real browser (it is
// shown in a sandbox of an origin of its own): the held
// call stays pending, though the browser sends the reviewer's credentials
// with every request.
func TestInboxBesideTheEndpointInBrowser(t *testing.T) {
	chromium := chromiumPath(t)
	approver := newApprover(t)
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	port, upstreamPort := freePort(t), freePort(t)
	site := fmt.Sprintf("http://127.0.0.1:%d", port)
	startCaddy(t, globalOptions(t)+fmt.Sprintf(`
:%d {
	bind 127.0.0.1
	handle /approvals/* {
		mcp_approvals {
			%s
		}
	}
	handle {
		mcp_policy {
			policy ../policies
			server test
			permissions {
				read_only allow
				write needs_approval
				destructive block
			}
			approval {
				webhook %s
				webhook_secret %s
				decision_secret %s
				callback_url %s/approvals
				hold 20s
			}
		}
		reverse_proxy 127.0.0.1:%d
	}
}

:%d {
	bind 127.0.0.1
	handle /notes {
		header Content-Type "text/html; charset=utf-8"
		respond <<HTML
%s
HTML 404
	}
	handle {
		mcp_demo
	}
}
`, port, inboxApprovals(t), approver.URL, testWebhookSecret, testDecisionSecret, site, upstreamPort, upstreamPort, hostilePage))
	waitForListener(t, port)
	waitForListener(t, upstreamPort)
	session := connect(t, site+"/mcp", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := callAsync(ctx, session, &mcp.CallToolParams{Name: "add_comment", Arguments: map[string]any{"id": 1, "comment": "ship it"}})
	e := approver.waitFor(t, approval.EventRequested, 1)

	steps := browserSignedIn(t, chromium, "alice", "wonderland")
	// The reviewer's own page works on this site...
	if err := chromedp.Do(steps, chromedp.Navigate(site+"/approvals/"), chromedp.WaitVisible(chromedp.CSS("#"+e.ID))); err != nil {
		t.Fatalf("opening the inbox in Chromium: %v", err)
	}
	// ...and the upstream's page, opened by the reviewer, runs its script
	// to its end but decides nothing.
	if err := chromedp.Do(steps, chromedp.Navigate(site+"/notes")); err != nil {
		t.Fatalf("opening the upstream's page in Chromium: %v", err)
	}
	out, err := chromedp.Run(steps, chromedp.Poll[string](
		`document.getElementById('out').textContent !== 'working' && document.getElementById('out').textContent`,
		chromedp.WithPollingInterval(50*time.Millisecond)))
	if err != nil {
		t.Fatalf("waiting for the upstream's page's script: %v", err)
	}
	t.Logf("the upstream's page says %q", out)
	if strings.HasPrefix(out, "approved") && out != "approved 0" {
		t.Errorf("the upstream's page, opened on the inbox's site, says %q", out)
	}
	select {
	case r := <-done:
		t.Errorf("the held call ended (%+v), want it still held", r)
	case <-time.After(500 * time.Millisecond):
	}
}

// TestInboxesOfOneServiceAgree: two inboxes that decide the same
// approvals (one of them for every instance, or both for one) must have
// the same accounts, groups and caller ids, else the configuration does
// not load: "inbox:alice" or "group:leads" would name whoever either one
// calls so. Inboxes of instances apart may differ.
func TestInboxesOfOneServiceAgree(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("wonderland"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	other, err := bcrypt.GenerateFromPassword([]byte("looking-glass"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	inbox := func(instance, accounts, lines string) string {
		if instance != "" {
			instance = "instance " + instance
		}
		return fmt.Sprintf("\n:%d {\n\tbind 127.0.0.1\n\thandle /approvals/* {\n\t\tmcp_approvals {\n\t\t\t%s\n\t\t\tinbox {\n\t\t\t\tbasic_auth {\n\t\t\t\t\t%s\n\t\t\t\t}\n\t\t\t\t%s\n\t\t\t}\n\t\t}\n\t}\n}\n",
			freePort(t), instance, accounts, lines)
	}
	alice, mallory := "alice "+string(hash), "mallory "+string(hash)
	aliceElsewhere := "alice " + string(other)
	// The approval services the inboxes decide for.
	up := newUpstream(t, upstreamtest.StatelessJSON)
	services := func() string {
		return approvalSite(freePort(t), up, "http://127.0.0.1:9/hook", "http://127.0.0.1:9/cb", "instance team-a") +
			approvalSite(freePort(t), up, "http://127.0.0.1:9/hook", "http://127.0.0.1:9/cb", "instance team-b")
	}
	tests := []struct {
		name    string
		a, b    string
		wantErr bool
	}{
		{"the same accounts", inbox("", alice, ""), inbox("", alice, ""), false},
		{"other accounts, both for every instance", inbox("", alice, ""), inbox("", mallory, ""), true},
		{"other accounts, one for every instance", inbox("", alice, ""), inbox("team-b", mallory, ""), true},
		{"other accounts, one instance each", inbox("team-a", alice, ""), inbox("team-b", mallory, ""), false},
		{"other accounts, the same instance", inbox("team-a", alice, ""), inbox("team-a", mallory, ""), true},
		{"one name, two passwords", inbox("", alice, ""), inbox("", aliceElsewhere, ""), true},
		{"another group", inbox("", alice, "group leads alice"), inbox("", alice, ""), true},
		{"other caller ids", inbox("", alice, "caller_ids alice alice@example.com"), inbox("", alice, "caller_ids alice a@example.com"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("XDG_DATA_HOME", t.TempDir())
			err := loadCaddyfile(t, globalOptions(t)+services()+tt.a+tt.b)
			if (err != nil) != tt.wantErr || err != nil && !strings.Contains(err.Error(), "two mcp_approvals inboxes decide the same approvals") {
				t.Errorf("loaded with %v; want refused: %v", err, tt.wantErr)
			}
		})
	}
}
