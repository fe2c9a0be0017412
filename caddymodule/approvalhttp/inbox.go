package approvalhttp

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/mcpgate/mcpgate/caddymodule/approval"
	"github.com/mcpgate/mcpgate/caddymodule/display"
)

// The inbox page is guarded three ways: every request must carry the
// credentials of an inbox account (HTTP basic authentication, as the
// host's Authenticate checks them); a decision must come from the page's
// own origin (Go's http.CrossOriginProtection: Sec-Fetch-Site, else
// Origin); and its form must carry a token that is an HMAC, under a
// decision secret, of the signed-in approver and the approval id, so that
// no other site can make a signed-in approver's browser decide. The token
// needs no server state, so replicas sharing the secret accept each
// other's pages. The page runs no script, and its Content-Security-Policy
// allows none.

// Authenticate checks an inbox request's credentials. It returns the
// signed-in account; or ok false, having asked the client to sign in
// (a WWW-Authenticate challenge), with err saying why a sign-in failed,
// if one did.
type Authenticate func(w http.ResponseWriter, r *http.Request) (user string, ok bool, err error)

// Inbox is the approval inbox page's access: the accounts that may sign
// in, the groups they form, and the check that decisions come from the
// page itself.
type Inbox struct {
	authenticate Authenticate
	groups       map[string][]string
	callerIDs    map[string][]string
	crossOrigin  *http.CrossOriginProtection
}

// NewInbox returns an inbox for the accounts authenticate signs in. groups
// name groups of accounts (group name to account names), for policies that
// say who may approve a call ("group:<name>"): an account sees, and may
// decide, only the approvals it is entitled to. callerIDs map accounts to
// the caller ids their people call tools with, when those differ from the
// account's name: an account never sees or decides its own person's calls
// (by its name or a mapped id), unless their approvers name "caller".
func NewInbox(authenticate Authenticate, groups, callerIDs map[string][]string) *Inbox {
	return &Inbox{authenticate: authenticate, groups: groups, callerIDs: callerIDs, crossOrigin: http.NewCrossOriginProtection()}
}

// decider is the inbox account user as an approval decider: an inbox
// account, that account, and the groups it belongs to; known as a caller
// by its name and the caller ids mapped to it.
func (inbox *Inbox) decider(user string) approval.Decider {
	by := approval.Decider{
		ID:         approval.PrincipalInbox + ":" + user,
		Principals: []string{approval.PrincipalInbox, approval.PrincipalInbox + ":" + user},
		Callers:    append([]string{user}, inbox.callerIDs[user]...),
	}
	for _, group := range slices.Sorted(maps.Keys(inbox.groups)) {
		if slices.Contains(inbox.groups[group], user) {
			by.Principals = append(by.Principals, "group:"+group)
		}
	}
	return by
}

// Principals returns the approvers that the accounts hold when they sign
// in, sorted and without repeats: "inbox", each "inbox:<account>" and the
// groups they belong to. An approver a policy names that none holds is one
// nobody can hold on this inbox.
func (inbox *Inbox) Principals(accounts []string) []string {
	var held []string
	for _, account := range accounts {
		held = append(held, inbox.decider(account).Principals...)
	}
	slices.Sort(held)
	return slices.Compact(held)
}

// maxInboxForm bounds a decision form's body.
const maxInboxForm = 16 << 10

// inboxPageHeaders keep the page out of caches, frames and referrers.
var inboxPageHeaders = map[string]string{
	"Content-Type":            "text/html; charset=utf-8",
	"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
	"X-Frame-Options":         "DENY",
	"X-Content-Type-Options":  "nosniff",
	"Referrer-Policy":         "no-referrer",
	"Cache-Control":           "no-store",
}

// serveInbox serves the inbox to signed-in approvers: the page (GET) and
// its decisions (POST).
func (h *Handler) serveInbox(w http.ResponseWriter, r *http.Request) error {
	user, ok, err := h.inbox.authenticate(w, r)
	if err != nil {
		// At Info level, as refused callers are: anyone who reaches the
		// inbox can fail to sign in.
		h.logger.Info("inbox sign-in failed", zap.String("remote_ip", h.clientIP(r)), zap.String("error", display.Cut(err.Error(), maxLoggedError)))
	}
	if !ok {
		return refuse(http.StatusUnauthorized, errors.New("sign in to the approval inbox"))
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		return h.renderInbox(w, r, user)
	case http.MethodPost:
		return h.decideFromInbox(w, r, user)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		return refuse(http.StatusMethodNotAllowed, fmt.Errorf("method %s not allowed", r.Method))
	}
}

// decideFromInbox takes an approve or deny from the inbox page's form and
// sends the browser back to the page.
func (h *Handler) decideFromInbox(w http.ResponseWriter, r *http.Request, user string) error {
	if err := h.inbox.crossOrigin.Check(r); err != nil {
		return refuse(http.StatusForbidden, err)
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxInboxForm)
	if err := r.ParseForm(); err != nil {
		return refuse(http.StatusBadRequest, err)
	}
	for name, values := range r.Form {
		// A field given twice (in the body, or in the body and the URL)
		// is read one way here and could be read another elsewhere.
		if len(values) > 1 {
			return refuse(http.StatusBadRequest, fmt.Errorf("form field %q given %d times", name, len(values)))
		}
	}
	// The page the form was on, to come back to.
	number, err := inboxPageNumber(r.URL.Query())
	if err != nil {
		return refuse(http.StatusBadRequest, err)
	}
	id, decision := r.PostForm.Get("id"), r.PostForm.Get("decision")
	if decision != "approve" && decision != "deny" {
		return refuse(http.StatusBadRequest, fmt.Errorf("decision %q is neither approve nor deny", decision))
	}
	service, err := h.services.Find(r.Context(), id, nil)
	if err != nil {
		return refuse(Status(err), err)
	}
	if !service.CheckFormToken(r.PostForm.Get("token"), user, id) {
		h.logger.Warn("inbox decision refused: bad form token",
			zap.String("id", id), zap.String("approver", user), zap.String("remote_ip", h.clientIP(r)))
		return refuse(http.StatusForbidden, errors.New("the form's token does not match; reload the inbox"))
	}
	_, err = service.Decide(r.Context(), id, decision == "approve", h.inbox.decider(user), r.PostForm.Get("reason"))
	if err != nil && !errors.Is(err, approval.ErrConflict) {
		return refuse(Status(err), err)
	}
	// The page shows how the approval stands, whoever decided first.
	// Back to the page the form was posted from (it has no action), by a
	// reference of a query alone, which the browser resolves against the
	// URL it posted to: no path is written, so none can name another host
	// ("//host/", "/\\host/", "/./\\host/" after cleaning, as a page
	// mounted at a site's root may be reached), and a page behind a
	// stripped prefix (handle_path) comes back to itself. (http.Redirect
	// would make the reference a path again.)
	back := "?decided=" + url.QueryEscape(id)
	if number > 1 {
		back += "&page=" + strconv.Itoa(number)
	}
	w.Header().Set("Location", back)
	w.WriteHeader(http.StatusSeeOther)
	return nil
}

// inboxEntry is one approval as the page shows it, from service.
type inboxEntry struct {
	*approval.Approval
	Arguments string
	Token     string
	service   *approval.Service
}

// inboxPageSize is how many pending approvals one page of the inbox
// shows: a store may hold a thousand, each with up to 64 KiB of
// arguments, too many to show (and to indent and sign) on one page.
const inboxPageSize = 25

// inboxPage is what the page template sees.
type inboxPage struct {
	User string
	// Pending are the approvals on this page, oldest first (the soonest
	// to expire), of Total the account may decide, on Pages pages.
	Pending []inboxEntry
	Total   int
	Page    int
	Pages   int
	Decided *approval.Approval
	// Focused is the approval a link named (?approval=<id>), shown by its
	// state alone to an account that may not decide it (its tool, server
	// and approvers are the deciders' to read), with
	// whether the signed-in user may decide it.
	Focused  *approval.Approval
	Entitled bool
	// FocusedPage is the page the focused approval is on, when it is
	// pending and the user's to decide; 0 otherwise.
	FocusedPage int
}

// renderInbox lists the pending approvals, a page of them (?page=<n>,
// from 1; without one, the page of the approval a link names, else the
// first), each with its form.
func (h *Handler) renderInbox(w http.ResponseWriter, r *http.Request, user string) error {
	number, err := inboxPageNumber(r.URL.Query())
	if err != nil {
		return refuse(http.StatusBadRequest, err)
	}
	page := inboxPage{User: user}
	by := h.inbox.decider(user)
	seen := make(map[string]bool)
	var pending []inboxEntry
	var listErr error
	decided, focused := r.URL.Query().Get("decided"), r.URL.Query().Get("approval")
	h.services.Each(func(s *approval.Service) bool {
		list, err := s.List(r.Context())
		if err != nil {
			listErr = err
			return false
		}
		now := time.Now()
		for _, a := range list {
			if a.ID == decided && s.Owns(a) && a.Entitled(by) {
				page.Decided = a
			}
			if a.ID == focused && s.Owns(a) {
				page.Focused, page.Entitled = a, a.Entitled(by)
			}
			if seen[a.ID] || a.State != approval.Pending || !a.Live(now) || !s.Owns(a) || !a.Entitled(by) {
				continue
			}
			seen[a.ID] = true
			pending = append(pending, inboxEntry{Approval: a, service: s})
		}
		return true
	})
	if listErr != nil {
		return refuse(http.StatusInternalServerError, listErr)
	}
	// Oldest first across every service the inbox serves (each lists its
	// own oldest first, in no set order among them), so that a page
	// holds the same approvals however the services are walked.
	slices.SortFunc(pending, func(a, b inboxEntry) int { return approval.ByRequest(a.Approval, b.Approval) })
	if page.Focused != nil && page.Entitled {
		if at := slices.IndexFunc(pending, func(e inboxEntry) bool { return e.ID == page.Focused.ID }); at >= 0 {
			page.FocusedPage = at/inboxPageSize + 1
			if _, named := r.URL.Query()["page"]; !named {
				number = page.FocusedPage
			}
		}
	}
	page.Page, page.Total = number, len(pending)
	page.Pages = (page.Total + inboxPageSize - 1) / inboxPageSize
	// Only the page's own approvals are shown, so only theirs have their
	// arguments indented and their forms signed.
	if first := (number - 1) * inboxPageSize; first < len(pending) {
		for _, entry := range pending[first:min(first+inboxPageSize, len(pending))] {
			entry.Arguments, entry.Token = shownArguments(entry.Approval.Arguments), entry.service.FormToken(user, entry.ID)
			page.Pending = append(page.Pending, entry)
		}
	}
	var body bytes.Buffer
	if err := inboxTemplate.Execute(&body, page); err != nil {
		return refuse(http.StatusInternalServerError, err)
	}
	for name, value := range inboxPageHeaders {
		w.Header().Set(name, value)
	}
	_, err = w.Write(body.Bytes())
	return err
}

// maxInboxPage bounds the page number a request may name: more pages
// than a store's pending approvals could fill, and small enough that the
// first approval's position cannot overflow.
const maxInboxPage = 1 << 20

// inboxPageNumber reads the page a request asks for (?page=<n>, from 1;
// 1 when it names none), refusing anything but one number in decimal
// digits within bounds.
func inboxPageNumber(query url.Values) (int, error) {
	values, ok := query["page"]
	if !ok {
		return 1, nil
	}
	if len(values) != 1 {
		return 0, fmt.Errorf("page given %d times", len(values))
	}
	text := values[0]
	// strconv.Atoi alone would take "+2" and "-0", and a number of any
	// length; a page is digits, from 1.
	if text == "" || len(text) > 7 || strings.Trim(text, "0123456789") != "" {
		return 0, fmt.Errorf("page %q is not a page number (1, 2, ...)", display.Cut(text, 40))
	}
	number, err := strconv.Atoi(text)
	if err != nil || number < 1 || number > maxInboxPage {
		return 0, fmt.Errorf("page %q is not a page number (1, 2, ...)", text)
	}
	return number, nil
}

// shownArguments shows arguments whole, indented when that keeps them
// within a few times their size; else as they are, on few lines
// (indenting multiplies a deeply nested value by its depth: 64 KiB 60
// levels deep made 4 MiB of page, for each approval on it).
func shownArguments(raw []byte) string {
	indented, complete, err := display.IndentedJSON(raw, 4*len(raw)+4096)
	if err != nil || !complete {
		return display.Block(string(raw))
	}
	return display.Block(indented)
}

var inboxTemplate = template.Must(template.New("inbox").Funcs(template.FuncMap{
	"when": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
	"add":  func(a, b int) int { return a + b },
	// shown makes what the caller or the server wrote safe to read as
	// what runs: characters that could reorder or hide text, visible.
	"shown": display.Line,
}).Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>mcpgate approvals</title>
<style>
body { font: 15px/1.4 system-ui, sans-serif; margin: 2rem; color: #222; }
.approval { border: 1px solid #ccc; border-radius: 6px; padding: 1rem; margin: 1rem 0; max-width: 60rem; }
pre { background: #f5f5f5; padding: .5rem; white-space: pre-wrap; overflow-wrap: anywhere; }
dt { font-weight: 600; } dd { margin: 0 0 .4rem 0; }
.notice { background: #eef6ee; padding: .5rem 1rem; border-radius: 6px; }
button { font-size: 1rem; margin-right: .5rem; }
</style>
</head>
<body>
<h1>Pending approvals</h1>
<p>Signed in as <b>{{.User}}</b>.</p>
{{with .Decided}}<p class="notice" id="decided">Approval {{.ID}} is {{.State}}{{with .Approver}} ({{.}}){{end}}.</p>{{end}}
{{with .Focused}}<p class="notice" id="focused">Approval {{.ID}}{{if $.Entitled}} ({{shown .Tool}} on {{shown .Server}}){{end}} is {{.State}}.
{{if eq .State "pending"}}{{if not $.Entitled}}It is not yours to decide.{{else if eq $.FocusedPage $.Page}}You may decide it below.{{else if $.FocusedPage}}You may decide it on <a href="?approval={{.ID}}">page {{$.FocusedPage}}</a>.{{end}}{{end}}</p>{{end}}
{{range .Pending}}
<section class="approval" id="{{.ID}}">
<dl>
<dt>Tool</dt><dd><code class="tool">{{shown .Tool}}</code> on <code>{{shown .Server}}</code>{{with .ToolHash}}, definition <code class="hash">{{shown .}}</code>{{end}}</dd>
<dt>Arguments</dt><dd><pre class="arguments">{{.Arguments}}</pre></dd>
<dt>Why approval is needed</dt><dd>{{shown .Reason}}</dd>
<dt>Caller</dt><dd>{{with .User}}{{shown .}}{{else}}unknown{{end}}{{with .Session}} (session {{shown .}}){{end}}</dd>
<dt>Requested</dt><dd>{{when .RequestedAt}}, expires {{when .ExpiresAt}}</dd>
</dl>
<form method="post">
<input type="hidden" name="id" value="{{.ID}}">
<input type="hidden" name="token" value="{{.Token}}">
<label>Reason <input type="text" name="reason" size="50"></label>
<button type="submit" name="decision" value="approve" id="approve-{{.ID}}">Approve</button>
<button type="submit" name="decision" value="deny" id="deny-{{.ID}}">Deny</button>
</form>
</section>
{{else}}
{{if .Total}}<p id="past">Page {{.Page}} is past the last page, <a href="?page={{.Pages}}">{{.Pages}}</a>.</p>{{else}}<p id="empty">Nothing waits for approval.</p>{{end}}
{{end}}
{{if gt .Pages 1}}<nav id="pages">Page {{.Page}} of {{.Pages}}, {{.Total}} pending.
{{if gt .Page 1}}<a id="previous" href="?page={{if gt .Page .Pages}}{{.Pages}}{{else}}{{add .Page -1}}{{end}}">Previous</a>{{end}}
{{if lt .Page .Pages}}<a id="next" href="?page={{add .Page 1}}">Next</a>{{end}}</nav>{{end}}
</body>
</html>
`))
