package caddymodule

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/caddyauth"

	"github.com/mcpgate/mcpgate/caddymodule/approvalhttp"
)

// The inbox page itself (what it shows, how it takes decisions, how its
// forms are guarded) is approvalhttp's; this file gives it Caddy's
// basic_auth for signing approvers in.

// ApprovalInbox is the approval inbox page's access: HTTP basic
// authentication (Caddy's basic_auth, with its hashes), and forms that
// carry a token bound to the signed-in approver and the approval.
type ApprovalInbox struct {
	// BasicAuth lists the approvers who may use the page. Required.
	BasicAuth *caddyauth.HTTPBasicAuth `json:"basic_auth,omitempty"`

	// Groups name groups of inbox accounts, for policies that say who may
	// approve a call ("group:<name>"). An account sees, and may decide,
	// only the approvals it is entitled to.
	Groups map[string][]string `json:"groups,omitempty"`

	// CallerIDs map inbox accounts to the caller ids (input.user.id) their
	// people call tools with, where those are not the account's name
	// (e.g. "alice": ["alice@example.com"]). An account never sees or
	// decides a call made under its name or one of these ids, unless the
	// call's approvers name "caller".
	CallerIDs map[string][]string `json:"caller_ids,omitempty"`
}

// provision checks the inbox's accounts and groups, and returns the inbox
// that signs them in with Caddy's basic_auth.
func (inbox *ApprovalInbox) provision(ctx caddy.Context) (*approvalhttp.Inbox, error) {
	if inbox.BasicAuth == nil || len(inbox.BasicAuth.AccountList) == 0 {
		return nil, errors.New("mcp_approvals: the inbox needs basic_auth accounts")
	}
	isAccount := func(name string) bool {
		return slices.ContainsFunc(inbox.BasicAuth.AccountList, func(a caddyauth.Account) bool { return a.Username == name })
	}
	for group, members := range inbox.Groups {
		for _, member := range members {
			if !isAccount(member) {
				return nil, fmt.Errorf("mcp_approvals: inbox group %s names %q, which is not a basic_auth account", group, member)
			}
		}
	}
	for account, ids := range inbox.CallerIDs {
		if !isAccount(account) {
			return nil, fmt.Errorf("mcp_approvals: inbox caller_ids names %q, which is not a basic_auth account", account)
		}
		if len(ids) == 0 || slices.Contains(ids, "") {
			return nil, fmt.Errorf("mcp_approvals: inbox caller_ids of %q needs caller ids, none of them empty", account)
		}
	}
	if inbox.BasicAuth.HashCache == nil {
		// Password hashes are slow on purpose; the page is used often.
		inbox.BasicAuth.HashCache = new(caddyauth.Cache)
	}
	if err := inbox.BasicAuth.Provision(ctx); err != nil {
		return nil, fmt.Errorf("mcp_approvals: inbox: %w", err)
	}
	return approvalhttp.NewInbox(inbox.authenticate, inbox.Groups, inbox.CallerIDs), nil
}

// fingerprint names who the inbox's principals are: its accounts (with
// their password hashes: two accounts of one name and another password
// are two people), groups and caller ids, in a canonical order.
func (inbox *ApprovalInbox) fingerprint() string {
	// By name: basic_auth refuses a name given twice.
	accounts := map[string]string{}
	if inbox.BasicAuth != nil {
		for _, a := range inbox.BasicAuth.AccountList {
			accounts[a.Username] = a.Password
		}
	}
	sorted := func(lists map[string][]string) map[string][]string {
		out := make(map[string][]string, len(lists))
		for name, members := range lists {
			out[name] = slices.Sorted(slices.Values(members))
		}
		return out
	}
	// Maps encode with their keys sorted.
	encoded, _ := json.Marshal(struct {
		Accounts  map[string]string
		Groups    map[string][]string
		CallerIDs map[string][]string
	}{accounts, sorted(inbox.Groups), sorted(inbox.CallerIDs)})
	sum := sha256.Sum256(encoded)
	return hex.EncodeToString(sum[:])
}

// authenticate signs an inbox account in with Caddy's basic_auth.
func (inbox *ApprovalInbox) authenticate(w http.ResponseWriter, r *http.Request) (string, bool, error) {
	user, ok, err := inbox.BasicAuth.Authenticate(w, r)
	return user.ID, ok, err
}
