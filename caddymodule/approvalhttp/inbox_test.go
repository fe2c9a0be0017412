package approvalhttp

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/caddymodule/approval"
	"github.com/mcpgate/mcpgate/caddymodule/approval/approvaltest"
)

// accounts are the inbox accounts the tests sign in, with their
// passwords.
var accounts = map[string]string{"alice": "wonderland", "bob": "builder", "dave": "lead"}

// testGroups are the inbox's groups: dave leads.
var testGroups = map[string][]string{"leads": {"dave"}}

// signIn authenticates as a host's basic authentication does: it asks for
// credentials when they are missing or wrong, and says why a sign-in
// failed.
func signIn(w http.ResponseWriter, r *http.Request) (string, bool, error) {
	user, password, ok := r.BasicAuth()
	if ok && password != "" && accounts[user] == password {
		return user, true, nil
	}
	w.Header().Set("WWW-Authenticate", `Basic realm="restricted"`)
	if !ok {
		return "", false, nil
	}
	return "", false, errors.New("wrong password")
}

// inboxRequest returns a request to the inbox at target, signed in as
// user (not at all when user is empty), with form as its body when given.
func inboxRequest(method, target, user string, form url.Values) *http.Request {
	var req *http.Request
	if form != nil {
		req = httptest.NewRequest(method, target, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		req = httptest.NewRequest(method, target, nil)
	}
	if user != "" {
		req.SetBasicAuth(user, accounts[user])
	}
	return req
}

// TestInboxSignIn: only signed-in accounts reach the inbox, with GET,
// HEAD and POST; failed sign-ins are logged.
func TestInboxSignIn(t *testing.T) {
	tests := []struct {
		name       string
		method     string
		user       string
		password   string
		wantStatus int
		wantHeader http.Header
		wantLogged bool
	}{
		{name: "no credentials", method: http.MethodGet, wantStatus: http.StatusUnauthorized,
			wantHeader: http.Header{"Www-Authenticate": {`Basic realm="restricted"`}}},
		{name: "wrong password", method: http.MethodGet, user: "alice", password: "guess", wantStatus: http.StatusUnauthorized,
			wantHeader: http.Header{"Www-Authenticate": {`Basic realm="restricted"`}}, wantLogged: true},
		{name: "signed in, DELETE", method: http.MethodDelete, user: "alice", password: accounts["alice"], wantStatus: http.StatusMethodNotAllowed,
			wantHeader: http.Header{"Allow": {"GET, HEAD, POST"}}},
		{name: "signed in, PUT", method: http.MethodPut, user: "alice", password: accounts["alice"], wantStatus: http.StatusMethodNotAllowed,
			wantHeader: http.Header{"Allow": {"GET, HEAD, POST"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, logs := newHandler(NewInbox(signIn, testGroups, nil), approvaltest.Services{approvaltest.NewService(t, nil)})
			req := httptest.NewRequest(tt.method, "/approvals/", nil)
			if tt.user != "" {
				req.SetBasicAuth(tt.user, tt.password)
			}
			rec, refused := serve(t, h, req)
			if refused == nil || refused.Status != tt.wantStatus {
				t.Fatalf("refusal = %v, want status %d", refused, tt.wantStatus)
			}
			for name, want := range tt.wantHeader {
				if got := rec.Header().Values(name); !slices.Equal(got, want) {
					t.Errorf("%s = %q, want %q", name, got, want)
				}
			}
			failed := logs.FilterMessage("inbox sign-in failed").AllUntimed()
			if got := len(failed) == 1 && failed[0].ContextMap()["remote_ip"] == testClientIP; got != tt.wantLogged {
				t.Errorf("sign-in failure logged with the client's address: %v (entries %v), want %v", got, failed, tt.wantLogged)
			}
		})
	}
}

// TestInboxDecide: a decision from the page's form, by a signed-in
// approver entitled to it, with its token, decides the approval and sends
// the browser back to the page; anything else is refused and changes
// nothing.
func TestInboxDecide(t *testing.T) {
	stranger := approvaltest.Request(t, approvaltest.NewService(t, nil)) // in no service the handler knows
	tests := []struct {
		name      string
		user      string
		approvers []string
		// settle, when set, decides the approval before the form is sent.
		settle bool
		// form edits the valid form (id, the user's token, approve).
		form   func(v url.Values, s *approval.Service)
		query  string
		header http.Header
		// unreachable puts the approval's service behind a store that
		// cannot be reached.
		unreachable bool
		// wantStatus is 303 for a decision taken (or taken before),
		// else the refusal's status.
		wantStatus   int
		wantState    approval.State
		wantApprover string
		wantLog      string
		// wantPage is the page a decision sends the browser back to,
		// when not the first.
		wantPage string
	}{
		{name: "approve", user: "alice",
			wantStatus: http.StatusSeeOther, wantState: approval.Approved, wantApprover: "inbox:alice"},
		{name: "deny", user: "alice", form: func(v url.Values, _ *approval.Service) { v.Set("decision", "deny") },
			wantStatus: http.StatusSeeOther, wantState: approval.Denied, wantApprover: "inbox:alice"},
		{name: "a group's member", user: "dave", approvers: []string{"group:leads"},
			wantStatus: http.StatusSeeOther, wantState: approval.Approved, wantApprover: "inbox:dave"},
		{name: "the approver named", user: "bob", approvers: []string{"inbox:bob"},
			wantStatus: http.StatusSeeOther, wantState: approval.Approved, wantApprover: "inbox:bob"},
		{name: "decided before", user: "alice", settle: true, form: func(v url.Values, _ *approval.Service) { v.Set("decision", "deny") },
			wantStatus: http.StatusSeeOther, wantState: approval.Approved, wantApprover: approval.PrincipalAdmin},
		{name: "from another site", user: "alice", header: http.Header{"Sec-Fetch-Site": {"cross-site"}},
			wantStatus: http.StatusForbidden, wantState: approval.Pending},
		{name: "from another origin", user: "alice", header: http.Header{"Origin": {"https://evil.example"}},
			wantStatus: http.StatusForbidden, wantState: approval.Pending},
		{name: "a field given twice", user: "alice", form: func(v url.Values, _ *approval.Service) { v.Add("decision", "deny") },
			wantStatus: http.StatusBadRequest, wantState: approval.Pending},
		{name: "a field in the body and the URL", user: "alice", query: "?decision=deny",
			wantStatus: http.StatusBadRequest, wantState: approval.Pending},
		{name: "neither approve nor deny", user: "alice", form: func(v url.Values, _ *approval.Service) { v.Set("decision", "maybe") },
			wantStatus: http.StatusBadRequest, wantState: approval.Pending},
		{name: "form too large", user: "alice", form: func(v url.Values, _ *approval.Service) { v.Set("reason", strings.Repeat("x", maxInboxForm)) },
			wantStatus: http.StatusBadRequest, wantState: approval.Pending},
		{name: "no token", user: "alice", form: func(v url.Values, _ *approval.Service) { v.Del("token") },
			wantStatus: http.StatusForbidden, wantState: approval.Pending, wantLog: "inbox decision refused: bad form token"},
		{name: "another account's token", user: "alice", form: func(v url.Values, s *approval.Service) { v.Set("token", s.FormToken("bob", v.Get("id"))) },
			wantStatus: http.StatusForbidden, wantState: approval.Pending, wantLog: "inbox decision refused: bad form token"},
		{name: "another approval's token", user: "alice", form: func(v url.Values, s *approval.Service) { v.Set("token", s.FormToken("alice", stranger.ID)) },
			wantStatus: http.StatusForbidden, wantState: approval.Pending, wantLog: "inbox decision refused: bad form token"},
		{name: "not entitled", user: "alice", approvers: []string{"inbox:bob", "group:leads"},
			wantStatus: http.StatusForbidden, wantState: approval.Pending},
		{name: "unknown approval", user: "alice", form: func(v url.Values, s *approval.Service) {
			v.Set("id", stranger.ID)
			v.Set("token", s.FormToken("alice", stranger.ID))
		}, wantStatus: http.StatusNotFound, wantState: approval.Pending},
		{name: "store unreachable", user: "alice", unreachable: true,
			wantStatus: http.StatusServiceUnavailable, wantState: approval.Pending},
		{name: "from a page after the first", user: "alice", query: "?page=3",
			wantStatus: http.StatusSeeOther, wantState: approval.Approved, wantApprover: "inbox:alice", wantPage: "3"},
		{name: "from the first page, named", user: "alice", query: "?page=1",
			wantStatus: http.StatusSeeOther, wantState: approval.Approved, wantApprover: "inbox:alice"},
		{name: "from no page", user: "alice", query: "?page=two",
			wantStatus: http.StatusBadRequest, wantState: approval.Pending},
		{name: "a page in the body", user: "alice", form: func(v url.Values, _ *approval.Service) { v.Set("page", "3") },
			wantStatus: http.StatusSeeOther, wantState: approval.Approved, wantApprover: "inbox:alice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, a := oneApproval(t, tt.approvers, tt.settle)
			form := url.Values{"id": {a.ID}, "token": {s.FormToken(tt.user, a.ID)}, "decision": {"approve"}, "reason": {"looked at it"}}
			if tt.form != nil {
				tt.form(form, s)
			}
			req := inboxRequest(http.MethodPost, "/approvals/"+tt.query, tt.user, form)
			for name, values := range tt.header {
				req.Header[name] = values
			}
			services := approvaltest.Services{s}
			if tt.unreachable {
				services = approvaltest.Services{approvaltest.NewUnreachableService(t, nil)}
			}
			h, logs := newHandler(NewInbox(signIn, testGroups, nil), services)
			rec, refused := serve(t, h, req)
			switch {
			case tt.wantStatus == http.StatusSeeOther && refused != nil:
				t.Fatalf("refused with %v, want a decision taken", refused)
			case tt.wantStatus == http.StatusSeeOther:
				want := "?decided=" + url.QueryEscape(a.ID)
				if tt.wantPage != "" {
					want += "&page=" + tt.wantPage
				}
				if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != want {
					t.Errorf("response = %d to %q, want 303 to %q", rec.Code, rec.Header().Get("Location"), want)
				}
			case refused == nil || refused.Status != tt.wantStatus:
				t.Errorf("refusal = %v (response %d), want status %d", refused, rec.Code, tt.wantStatus)
			}
			got, err := s.Get(context.Background(), a.ID)
			if err != nil {
				t.Fatalf("getting the approval: %v", err)
			}
			if got.State != tt.wantState || got.Approver != tt.wantApprover {
				t.Errorf("approval is %s by %q, want %s by %q", got.State, got.Approver, tt.wantState, tt.wantApprover)
			}
			if tt.wantLog != "" {
				entries := logs.FilterMessage(tt.wantLog).AllUntimed()
				if len(entries) != 1 || entries[0].ContextMap()["approver"] != tt.user || entries[0].ContextMap()["remote_ip"] != testClientIP {
					t.Errorf("logged %v, want one %q for approver %s from %s", entries, tt.wantLog, tt.user, testClientIP)
				}
			}
		})
	}
}

// TestInboxPage: an approver sees the pending approvals it may decide,
// each with a form carrying its token, on a page kept out of caches and
// frames; a decided or linked approval is told of at the top.
func TestInboxPage(t *testing.T) {
	s := approvaltest.NewService(t, nil)
	anyone, forAlice := approvaltest.Request(t, s), approvaltest.Request(t, s, "inbox:alice")
	forBob, forLeads := approvaltest.Request(t, s, "inbox:bob"), approvaltest.Request(t, s, "group:leads")
	decided := approvaltest.Request(t, s)
	approvaltest.ApproveAsAdmin(t, s, decided.ID)
	tests := []struct {
		name        string
		user        string
		query       string
		wantListed  []*approval.Approval
		wantContain []string
	}{
		{name: "alice", user: "alice", wantListed: []*approval.Approval{anyone, forAlice},
			wantContain: []string{"Signed in as <b>alice</b>.", `<pre class="arguments">{
  &#34;path&#34;: &#34;/srv/report.txt&#34;
}</pre>`}},
		{name: "bob", user: "bob", wantListed: []*approval.Approval{anyone, forBob}},
		{name: "a group's member", user: "dave", wantListed: []*approval.Approval{anyone, forLeads}},
		{name: "back from a decision", user: "alice", query: "?decided=" + decided.ID, wantListed: []*approval.Approval{anyone, forAlice},
			wantContain: []string{`<p class="notice" id="decided">Approval ` + decided.ID + ` is approved (admin).</p>`}},
		{name: "linked to another's approval", user: "alice", query: "?approval=" + forBob.ID, wantListed: []*approval.Approval{anyone, forAlice},
			wantContain: []string{`<p class="notice" id="focused">Approval ` + forBob.ID + ` is pending.
It is not yours to decide.</p>`}},
		{name: "linked to one's own approval", user: "bob", query: "?approval=" + forBob.ID, wantListed: []*approval.Approval{anyone, forBob},
			wantContain: []string{`<p class="notice" id="focused">Approval ` + forBob.ID + ` (delete_file on files) is pending.
You may decide it below.</p>`}},
	}
	all := []*approval.Approval{anyone, forAlice, forBob, forLeads, decided}
	h, _ := newHandler(NewInbox(signIn, testGroups, nil), approvaltest.Services{s})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, refused := serve(t, h, inboxRequest(http.MethodGet, "/approvals/"+tt.query, tt.user, nil))
			if refused != nil || rec.Code != http.StatusOK {
				t.Fatalf("response = %d, refusal %v; want 200", rec.Code, refused)
			}
			wantHeaders := map[string]string{
				"Content-Type":            "text/html; charset=utf-8",
				"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
				"X-Frame-Options":         "DENY",
				"X-Content-Type-Options":  "nosniff",
				"Referrer-Policy":         "no-referrer",
				"Cache-Control":           "no-store",
			}
			for name, want := range wantHeaders {
				if got := rec.Header().Get(name); got != want {
					t.Errorf("%s = %q, want %q", name, got, want)
				}
			}
			page := rec.Body.String()
			for _, a := range all {
				listed := strings.Contains(page, `<section class="approval" id="`+a.ID+`">`)
				if want := slices.Contains(tt.wantListed, a); listed != want {
					t.Errorf("approval for %v listed: %v, want %v", a.Approvers, listed, want)
				}
				if hasToken := strings.Contains(page, `name="token" value="`+s.FormToken(tt.user, a.ID)+`"`); hasToken != listed {
					t.Errorf("approval for %v listed %v, with %s's form token %v; want the token with the listing", a.Approvers, listed, tt.user, hasToken)
				}
			}
			for _, want := range tt.wantContain {
				if !strings.Contains(page, want) {
					t.Errorf("page lacks %q:\n%s", want, page)
				}
			}
		})
	}
}

// TestInboxPages: the pending approvals are shown a page at a time,
// oldest first, with links between the pages; a page that is not a page
// number is refused, and one past the last says so.
func TestInboxPages(t *testing.T) {
	s := approvaltest.NewService(t, nil)
	var pending []*approval.Approval
	for range 2*inboxPageSize + 3 {
		pending = append(pending, approvaltest.Request(t, s))
		approvaltest.Request(t, s, "inbox:bob") // not alice's: neither shown nor counted
	}
	h, _ := newHandler(NewInbox(signIn, testGroups, nil), approvaltest.Services{s})
	total := len(pending)
	tests := []struct {
		query       string
		wantListed  []*approval.Approval
		wantContain []string
		wantLack    []string
	}{
		{query: "", wantListed: pending[:inboxPageSize],
			wantContain: []string{"Page 1 of 3, 53 pending.", `<a id="next" href="?page=2">Next</a>`}, wantLack: []string{`id="previous"`}},
		{query: "?page=2", wantListed: pending[inboxPageSize : 2*inboxPageSize],
			wantContain: []string{"Page 2 of 3, 53 pending.", `<a id="previous" href="?page=1">Previous</a>`, `<a id="next" href="?page=3">Next</a>`}},
		{query: "?page=3&decided=" + pending[0].ID, wantListed: pending[2*inboxPageSize:],
			wantContain: []string{"Page 3 of 3, 53 pending.", `<a id="previous" href="?page=2">Previous</a>`, `id="decided"`}, wantLack: []string{`id="next"`}},
		{query: "?page=0004",
			wantContain: []string{`<p id="past">Page 4 is past the last page, <a href="?page=3">3</a>.</p>`, `<a id="previous" href="?page=3">Previous</a>`}},
		{query: "?page=1048576", wantContain: []string{`Page 1048576 is past the last page`}},
	}
	for _, tt := range tests {
		t.Run("page"+tt.query, func(t *testing.T) {
			rec, refused := serve(t, h, inboxRequest(http.MethodGet, "/approvals/"+tt.query, "alice", nil))
			if refused != nil || rec.Code != http.StatusOK {
				t.Fatalf("response = %d, refusal %v; want 200", rec.Code, refused)
			}
			page := rec.Body.String()
			listedAt := func(a *approval.Approval) int {
				return strings.Index(page, `<section class="approval" id="`+a.ID+`">`)
			}
			last := -1
			for _, a := range tt.wantListed {
				at := listedAt(a)
				if at < 0 || at < last {
					t.Errorf("approval %d of %d at %d on the page, after %d; want it listed in order", slices.Index(pending, a), total, at, last)
				}
				last = at
			}
			if got := strings.Count(page, `<section class="approval"`); got != len(tt.wantListed) {
				t.Errorf("page lists %d approvals, want %d", got, len(tt.wantListed))
			}
			for _, want := range tt.wantContain {
				if !strings.Contains(page, want) {
					t.Errorf("page lacks %q:\n%s", want, page)
				}
			}
			for _, lack := range tt.wantLack {
				if strings.Contains(page, lack) {
					t.Errorf("page has %q, want none", lack)
				}
			}
		})
	}
	for _, query := range []string{"?page=", "?page=0", "?page=-1", "?page=+2", "?page=2.0", "?page=1e3", "?page=%202", "?page=two",
		"?page=1048577", "?page=99999999999999999999", "?page=1&page=2"} {
		t.Run("refused"+query, func(t *testing.T) {
			rec, refused := serve(t, h, inboxRequest(http.MethodGet, "/approvals/"+query, "alice", nil))
			if refused == nil || refused.Status != http.StatusBadRequest {
				t.Errorf("response = %d, refusal %v; want 400", rec.Code, refused)
			}
		})
	}
	// A single page has no links between pages.
	one := approvaltest.NewService(t, nil)
	approvaltest.Request(t, one)
	h, _ = newHandler(NewInbox(signIn, testGroups, nil), approvaltest.Services{one})
	if rec, _ := serve(t, h, inboxRequest(http.MethodGet, "/approvals/", "alice", nil)); strings.Contains(rec.Body.String(), `id="pages"`) {
		t.Errorf("a single page shows links between pages:\n%s", rec.Body)
	}
}

// TestInboxPagesAcrossServices: an inbox serving several approval
// services pages their approvals together, oldest first, so that each
// page holds the same ones however the services are walked; a link to
// an approval opens the page it is on.
func TestInboxPagesAcrossServices(t *testing.T) {
	first, second := approvaltest.NewService(t, nil), approvaltest.NewService(t, nil)
	var pending []*approval.Approval
	for range inboxPageSize + 5 {
		pending = append(pending, approvaltest.Request(t, first), approvaltest.Request(t, second))
	}
	for _, services := range []approvaltest.Services{{first, second}, {second, first}} {
		h, _ := newHandler(NewInbox(signIn, testGroups, nil), services)
		for number, want := range [][]*approval.Approval{pending[:inboxPageSize], pending[inboxPageSize : 2*inboxPageSize], pending[2*inboxPageSize:]} {
			rec, refused := serve(t, h, inboxRequest(http.MethodGet, "/approvals/?page="+strconv.Itoa(number+1), "alice", nil))
			if refused != nil {
				t.Fatalf("page %d refused: %v", number+1, refused)
			}
			var listed []string
			for rest := rec.Body.String(); ; {
				_, after, found := strings.Cut(rest, `<section class="approval" id="`)
				if !found {
					break
				}
				id, _, _ := strings.Cut(after, `"`)
				listed, rest = append(listed, id), after
			}
			var wantIDs []string
			for _, a := range want {
				wantIDs = append(wantIDs, a.ID)
			}
			if !slices.Equal(listed, wantIDs) {
				t.Errorf("page %d lists %d approvals %v; want the %d oldest after the pages before, in order", number+1, len(listed), listed, len(wantIDs))
			}
		}
	}
	h, _ := newHandler(NewInbox(signIn, testGroups, nil), approvaltest.Services{first, second})
	last := pending[len(pending)-1]
	tests := []struct {
		query, wantPage, wantNotice string
	}{
		{"?approval=" + last.ID, "Page 3 of 3", "You may decide it below."},
		{"?page=1&approval=" + last.ID, "Page 1 of 3", `You may decide it on <a href="?approval=` + last.ID + `">page 3</a>.`},
		{"?approval=" + pending[0].ID, "Page 1 of 3", "You may decide it below."},
	}
	for _, tt := range tests {
		rec, _ := serve(t, h, inboxRequest(http.MethodGet, "/approvals/"+tt.query, "alice", nil))
		page := rec.Body.String()
		if !strings.Contains(page, tt.wantPage) || !strings.Contains(page, tt.wantNotice) {
			t.Errorf("%s: page lacks %q or %q:\n%s", tt.query, tt.wantPage, tt.wantNotice, page)
		}
		if onPage := strings.Contains(page, `id="approve-`+last.ID+`"`); onPage != (tt.wantPage == "Page 3 of 3") {
			t.Errorf("%s: the linked approval's form on the page: %v", tt.query, onPage)
		}
	}
}

// TestInboxPageEmpty: with nothing pending, the page says so.
func TestInboxPageEmpty(t *testing.T) {
	h, _ := newHandler(NewInbox(signIn, testGroups, nil), approvaltest.Services{approvaltest.NewService(t, nil)})
	rec, refused := serve(t, h, inboxRequest(http.MethodGet, "/approvals/", "alice", nil))
	if want := `<p id="empty">Nothing waits for approval.</p>`; refused != nil || !strings.Contains(rec.Body.String(), want) {
		t.Errorf("response %d (refusal %v) %s; want a page with %q", rec.Code, refused, rec.Body, want)
	}
}

// TestDecider: an inbox account decides as any inbox account, as itself,
// and as each group it belongs to, in the groups' order.
func TestDecider(t *testing.T) {
	inbox := NewInbox(signIn, map[string][]string{"ops": {"erin"}, "leads": {"dave", "erin"}, "admins": {"dave"}}, nil)
	tests := []struct {
		user string
		want []string
	}{
		{"alice", []string{"inbox", "inbox:alice"}},
		{"dave", []string{"inbox", "inbox:dave", "group:admins", "group:leads"}},
		{"erin", []string{"inbox", "inbox:erin", "group:leads", "group:ops"}},
	}
	for _, tt := range tests {
		t.Run(tt.user, func(t *testing.T) {
			by := inbox.decider(tt.user)
			if by.ID != "inbox:"+tt.user || !slices.Equal(by.Principals, tt.want) || by.Claim != "" {
				t.Errorf("decider(%s) = %+v, want ID inbox:%s, principals %v and no claim", tt.user, by, tt.user, tt.want)
			}
		})
	}
}

// TestInboxCallerNeverDecidesOwnCall: an inbox account is neither shown
// nor allowed to decide a call its own person made (by the account's
// name, or a caller id mapped to it), unless the call's approvers name the
// caller; another account decides it.
func TestInboxCallerNeverDecidesOwnCall(t *testing.T) {
	tests := []struct {
		name      string
		caller    string
		approvers []string
		decider   string
		want      approval.State
	}{
		{"any reviewer, the caller", "alice", nil, "alice", approval.Pending},
		{"inbox, the caller", "alice", []string{"inbox"}, "alice", approval.Pending},
		{"their own account named", "alice", []string{"inbox:alice"}, "alice", approval.Pending},
		{"a mapped caller id", "alice@example.com", []string{"inbox"}, "alice", approval.Pending},
		{"another spelling", "Alice", []string{"inbox"}, "alice", approval.Pending},
		{"another account", "alice", []string{"inbox"}, "bob", approval.Approved},
		{"the approvers name the caller", "alice", []string{"caller", "inbox"}, "alice", approval.Approved},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := approvaltest.NewService(t, nil)
			a, err := s.Request(context.Background(), &approval.Call{
				User: tt.caller, Session: "s1", Server: "files", Tool: "delete_file",
				Arguments: map[string]any{"path": "/srv/x"}, Approvers: tt.approvers,
			})
			if err != nil {
				t.Fatal(err)
			}
			h, _ := newHandler(NewInbox(signIn, testGroups, map[string][]string{"alice": {"alice@example.com"}}), approvaltest.Services{s})
			rec, refused := serve(t, h, inboxRequest(http.MethodGet, "/approvals/", tt.decider, nil))
			if refused != nil {
				t.Fatalf("the page: %v", refused)
			}
			if listed := strings.Contains(rec.Body.String(), a.ID); listed != (tt.want == approval.Approved) {
				t.Errorf("listed to %s: %v, want %v", tt.decider, listed, tt.want == approval.Approved)
			}
			form := url.Values{"id": {a.ID}, "decision": {"approve"}, "token": {s.FormToken(tt.decider, a.ID)}}
			req := inboxRequest(http.MethodPost, "/approvals/", tt.decider, form)
			req.Header.Set("Sec-Fetch-Site", "same-origin")
			_, refused = serve(t, h, req)
			if tt.want == approval.Pending && (refused == nil || refused.Status != http.StatusForbidden) {
				t.Errorf("the caller's own decision: %v, want 403", refused)
			}
			if got, err := s.Get(context.Background(), a.ID); err != nil || got.State != tt.want {
				t.Errorf("the approval is %v (%v), want %s", got.State, err, tt.want)
			}
		})
	}
}

// TestInboxRedirectStaysOnTheSite: after a decision, the browser is sent
// back to the page it posted from, by a query alone, even when the page's
// path (an inbox mounted at a site's root) begins with "//" or "/\", or
// cleans to such a path.
func TestInboxRedirectStaysOnTheSite(t *testing.T) {
	for _, path := range []string{"//evil.example/", "/\\evil.example/", "/./\\evil.example/", "/.//evil.example/", "/approvals/../\\evil.example/"} {
		s, a := oneApproval(t, nil, false)
		h, _ := newHandler(NewInbox(signIn, testGroups, nil), approvaltest.Services{s})
		form := url.Values{"id": {a.ID}, "token": {s.FormToken("alice", a.ID)}, "decision": {"approve"}}
		req := inboxRequest(http.MethodPost, "http://gw.example"+path, "alice", form)
		req.URL.Path = path
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		rec, refused := serve(t, h, req)
		location := rec.Header().Get("Location")
		if refused != nil || location != "?decided="+url.QueryEscape(a.ID) {
			t.Errorf("path %q: redirected to %q (%v); want back to the page itself, by its query alone", path, location, refused)
		}
		base, _ := url.Parse("http://gw.example" + path)
		if back := base.ResolveReference(&url.URL{RawQuery: strings.TrimPrefix(location, "?")}); back.Host != "gw.example" {
			t.Errorf("path %q: the redirect resolves to %s; want a page of this site", path, back)
		}
	}
}

// TestShownArgumentsBounded checks that the inbox shows arguments whole,
// indented when that keeps them within a few times their size: 64 KiB
// nested 60 levels deep made 4 MiB of page indented, for each approval
// shown.
func TestShownArgumentsBounded(t *testing.T) {
	tests := []struct {
		name, raw    string
		wantIndented bool
	}{
		{"shallow", `{"path":"/etc/hosts","lines":[1,2]}`, true},
		{"deep", `{"a":` + strings.Repeat("[", 60) + strings.Repeat("1,", 32<<10) + "1" + strings.Repeat("]", 60) + `}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			shown := shownArguments([]byte(tt.raw))
			if indented := strings.Contains(shown, "\n  "); indented != tt.wantIndented {
				t.Errorf("indented: %v, want %v", indented, tt.wantIndented)
			}
			if compact := strings.Join(strings.Fields(shown), ""); compact != strings.ReplaceAll(tt.raw, " ", "") {
				t.Errorf("the arguments shown are not the arguments whole")
			}
			if limit := 4*len(tt.raw) + 4096; len(shown) > limit {
				t.Errorf("%d bytes shown for %d of arguments, want at most %d", len(shown), len(tt.raw), limit)
			}
		})
	}
}

// TestInboxFocusTellsOnlyStateToOthers: a link to an approval the
// signed-in account may not decide shows its state alone: its tool, its
// server and who may decide it (other accounts' names, groups) are the
// deciders' to read.
func TestInboxFocusTellsOnlyStateToOthers(t *testing.T) {
	s := approvaltest.NewService(t, nil)
	forBob := approvaltest.Request(t, s, "inbox:bob", "group:payroll-admins")
	h, _ := newHandler(NewInbox(signIn, testGroups, nil), approvaltest.Services{s})
	rec, refused := serve(t, h, inboxRequest(http.MethodGet, "/approvals/?approval="+forBob.ID, "alice", nil))
	if refused != nil {
		t.Fatal(refused)
	}
	for _, hidden := range []string{"delete_file", "files", "inbox:bob", "payroll-admins"} {
		if strings.Contains(rec.Body.String(), hidden) {
			t.Errorf("alice, who may not decide %s, is shown %q", forBob.ID, hidden)
		}
	}
}
