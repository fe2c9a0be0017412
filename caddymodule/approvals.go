package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/caddyauth"
	"go.uber.org/zap"

	"github.com/mcpgate/mcpgate/caddymodule/approval"
)

func init() {
	caddy.RegisterModule(ApprovalsHandler{})
	httpcaddyfile.RegisterHandlerDirective("mcp_approvals", parseApprovalsCaddyfile)
	// A responder, as respond is; and so before mcp_policy, which is
	// ordered before reverse_proxy, when both are in one route.
	httpcaddyfile.RegisterDirectiveOrder("mcp_approvals", httpcaddyfile.Before, "respond")
}

// maxCallbackBody bounds a decision's body.
const maxCallbackBody = 64 << 10

// ApprovalsHandler serves the approval callback API wherever it is
// mounted: a decision for approval <id> is POSTed to a path whose last
// segment is <id> (callback_url/<id>), signed as a Standard Webhook with
// a decision secret:
//
//	{"id": "<id>", "decision": "approve" | "deny", "approver": "...", "reason": "..."}
//
// Answers: 200 with the approval's new state; 401 for an unsigned, badly
// signed or stale callback (timestamp more than 5 minutes off); 404 for an
// unknown id; 400 for a body that is not a decision for <id> (see
// approval.ParseCallback); 409 for a replayed webhook-id, or an approval
// already decided, cancelled or expired; 403 for an approval that signed
// callbacks may not decide. Only a 200 changes anything.
//
// With an inbox, it also serves an approval inbox page at its mount path
// (a path ending in "/"), to the accounts of the inbox's basic_auth only.
type ApprovalsHandler struct {
	// Instance ties the handler to the approval service of the mcp_policy
	// handlers whose approval block names this instance. Default: every
	// approval service of this process.
	Instance string `json:"instance,omitempty"`

	// Inbox serves a page of pending approvals, with their arguments and
	// approve and deny buttons. Without it no page is served.
	Inbox *ApprovalInbox `json:"inbox,omitempty"`

	logger *zap.Logger
}

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

	crossOrigin *http.CrossOriginProtection
}

// CaddyModule returns the Caddy module information.
func (ApprovalsHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.mcp_approvals",
		New: func() caddy.Module { return new(ApprovalsHandler) },
	}
}

// Provision sets up the inbox's authentication.
func (h *ApprovalsHandler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	if h.Inbox == nil {
		return nil
	}
	if h.Inbox.BasicAuth == nil || len(h.Inbox.BasicAuth.AccountList) == 0 {
		return errors.New("mcp_approvals: the inbox needs basic_auth accounts")
	}
	for group, members := range h.Inbox.Groups {
		for _, member := range members {
			if !slices.ContainsFunc(h.Inbox.BasicAuth.AccountList, func(a caddyauth.Account) bool { return a.Username == member }) {
				return fmt.Errorf("mcp_approvals: inbox group %s names %q, which is not a basic_auth account", group, member)
			}
		}
	}
	if h.Inbox.BasicAuth.HashCache == nil {
		// Password hashes are slow on purpose; the page is used often.
		h.Inbox.BasicAuth.HashCache = new(caddyauth.Cache)
	}
	if err := h.Inbox.BasicAuth.Provision(ctx); err != nil {
		return fmt.Errorf("mcp_approvals: inbox: %w", err)
	}
	h.Inbox.crossOrigin = http.NewCrossOriginProtection()
	return nil
}

// ServeHTTP answers callbacks (POST …/<id>), and the inbox page (GET and
// POST on a path ending in "/") when there is an inbox.
func (h *ApprovalsHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	id := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
	switch {
	case id != "" && r.Method == http.MethodPost:
		return h.serveCallback(w, r, id)
	case id != "":
		w.Header().Set("Allow", http.MethodPost)
		return caddyhttp.Error(http.StatusMethodNotAllowed, errors.New("decisions are POSTed"))
	case h.Inbox == nil:
		return caddyhttp.Error(http.StatusNotFound, errors.New("no approval inbox is configured"))
	default:
		return h.serveInbox(w, r)
	}
}

// serveCallback takes one signed decision.
func (h *ApprovalsHandler) serveCallback(w http.ResponseWriter, r *http.Request, id string) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxCallbackBody))
	if err != nil {
		return h.refuseCallback(w, r, id, http.StatusBadRequest, fmt.Errorf("reading the callback: %w", err))
	}
	// Any service whose decision secrets verify the callback may hold the
	// id; the one whose store knows it takes the decision.
	verified, verifyErr := false, approval.ErrUnsigned
	service, findErr := approvalServiceFor(r.Context(), h.Instance, id, func(s *approval.Service) bool {
		if _, err := s.VerifyDecision(r.Header, body, time.Now()); err != nil {
			verifyErr = err
			return false
		}
		verified = true
		return true
	})
	if !verified {
		return h.refuseCallback(w, r, id, http.StatusUnauthorized, verifyErr)
	}
	if findErr != nil {
		return h.refuseCallback(w, r, id, statusFor(findErr), findErr)
	}
	decision, err := approval.ParseCallback(body, id)
	if err != nil {
		return h.refuseCallback(w, r, id, http.StatusBadRequest, err)
	}
	// The decision is taken before its webhook-id is recorded, so that a
	// sender retrying after a failure (the store away: 503) is not refused
	// as a replay. The approval's own state machine is what stops a
	// replayed decision from deciding twice; the recorded id tells a
	// sender's retry of a delivered decision (answered as delivered) from
	// another decision arriving late (409).
	webhookID := r.Header.Get(approval.HeaderID)
	by := approval.Decider{ID: approval.PrincipalWebhook, Principals: []string{approval.PrincipalWebhook}, Claim: decision.Approver}
	a, err := service.Decide(r.Context(), id, decision.Decision == approval.DecisionApprove, by, decision.Reason)
	switch {
	case err == nil:
		if err := service.Claim(r.Context(), webhookID, approval.CallbackIDTTL); err != nil && !errors.Is(err, approval.ErrReplayed) {
			h.logger.Warn("recording a callback's webhook-id", zap.String("approval", id), zap.Error(err))
		}
	case errors.Is(err, approval.ErrConflict):
		if claimErr := service.Claim(r.Context(), webhookID, approval.CallbackIDTTL); !errors.Is(claimErr, approval.ErrReplayed) {
			return h.refuseCallback(w, r, id, statusFor(err), err)
		}
		// A retry of a message seen before: answered as delivered if it
		// is what decided the approval.
		settled, getErr := service.Get(r.Context(), id)
		if getErr != nil {
			return h.refuseCallback(w, r, id, statusFor(getErr), getErr)
		}
		if !decidedBy(settled, decision) {
			return h.refuseCallback(w, r, id, statusFor(err), err)
		}
		a = settled
	default:
		return h.refuseCallback(w, r, id, statusFor(err), err)
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(map[string]any{"id": a.ID, "state": a.State, "approver": a.Approver})
}

// decidedBy reports whether the approval stands as the webhook decision
// would have left it.
func decidedBy(a *approval.Approval, d approval.CallbackDecision) bool {
	want := approval.Denied
	if d.Decision == approval.DecisionApprove {
		want = approval.Approved
	}
	return a.State == want && a.Approver == approval.PrincipalWebhook
}

// statusFor maps approval errors to HTTP statuses.
func statusFor(err error) int {
	switch {
	case errors.Is(err, approval.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, approval.ErrNotEntitled):
		return http.StatusForbidden
	case errors.Is(err, approval.ErrConflict), errors.Is(err, approval.ErrReplayed):
		return http.StatusConflict
	default:
		// The store could not be reached: the decider should try again.
		return http.StatusServiceUnavailable
	}
}

// refusalText is what a decider is told of a refused decision, by its
// status: a fixed text that says what to do, and nothing of the gateway's
// internals (the log has the details).
func refusalText(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "the body is not a decision for this approval: want {\"id\": <the URL's id>, \"decision\": \"approve\"|\"deny\", \"approver\", \"reason\"}"
	case http.StatusUnauthorized:
		return "the decision is unsigned, not signed with a decision secret, or too old or new"
	case http.StatusForbidden:
		return "you are not among those who may decide this approval"
	case http.StatusNotFound:
		return "no such approval"
	case http.StatusConflict:
		return "this approval is already decided, cancelled or expired, or this webhook-id was used before"
	default:
		return "the gateway could not take the decision just now; try again"
	}
}

// refuseCallback logs a refused callback (who sent what matters when
// someone forges decisions) and answers with status and a fixed text.
func (h *ApprovalsHandler) refuseCallback(w http.ResponseWriter, r *http.Request, id string, status int, err error) error {
	h.logger.Warn("approval callback refused",
		zap.String("id", id), zap.Int("status", status),
		zap.String("remote_ip", clientIP(r)), zap.Error(err))
	body, _ := json.Marshal(map[string]string{"error": refusalText(status)})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
	return nil
}

// parseApprovalsCaddyfile reads:
//
//	mcp_approvals {
//		instance <name>
//		inbox {
//			basic_auth [<hash_algorithm> [<realm>]] {
//				<username> <hashed_password>
//			}
//			group <name> <username>...
//		}
//	}
func parseApprovalsCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	handler := new(ApprovalsHandler)
	err := handler.UnmarshalCaddyfile(h.Dispenser)
	return handler, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens.
func (h *ApprovalsHandler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "instance":
			if !d.AllArgs(&h.Instance) {
				return d.ArgErr()
			}
		case "inbox":
			if h.Inbox != nil {
				return d.Err("inbox given twice")
			}
			inbox, err := unmarshalInbox(d)
			if err != nil {
				return err
			}
			h.Inbox = inbox
		default:
			return d.Errf("unrecognized mcp_approvals subdirective %q", d.Val())
		}
	}
	return nil
}

// unmarshalInbox reads an inbox block, whose basic_auth reads as Caddy's.
func unmarshalInbox(d *caddyfile.Dispenser) (*ApprovalInbox, error) {
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	inbox := new(ApprovalInbox)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if d.Val() == "group" {
			args := d.RemainingArgs()
			if len(args) < 2 {
				return nil, d.Err("group takes a name and its accounts")
			}
			if inbox.Groups == nil {
				inbox.Groups = make(map[string][]string)
			}
			if _, dup := inbox.Groups[args[0]]; dup {
				return nil, d.Errf("group %s given twice", args[0])
			}
			inbox.Groups[args[0]] = args[1:]
			continue
		}
		if d.Val() != "basic_auth" {
			return nil, d.Errf("unrecognized inbox subdirective %q", d.Val())
		}
		auth := &caddyauth.HTTPBasicAuth{HashCache: new(caddyauth.Cache)}
		var comparer caddyauth.Comparer
		algorithm := "bcrypt"
		switch args := d.RemainingArgs(); len(args) {
		case 0:
		case 2:
			auth.Realm = args[1]
			fallthrough
		case 1:
			algorithm = args[0]
		default:
			return nil, d.ArgErr()
		}
		switch algorithm {
		case "bcrypt":
			comparer = caddyauth.BcryptHash{}
		case "argon2id":
			comparer = caddyauth.Argon2idHash{}
		default:
			return nil, d.Errf("unrecognized hash algorithm: %s", algorithm)
		}
		auth.HashRaw = caddyconfig.JSONModuleObject(comparer, "algorithm", algorithm, nil)
		for accounts := d.Nesting(); d.NextBlock(accounts); {
			username := d.Val()
			var hash string
			if !d.AllArgs(&hash) {
				return nil, d.ArgErr()
			}
			auth.AccountList = append(auth.AccountList, caddyauth.Account{Username: username, Password: hash})
		}
		inbox.BasicAuth = auth
	}
	if inbox.BasicAuth == nil {
		return nil, d.Err("inbox needs basic_auth")
	}
	return inbox, nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*ApprovalsHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*ApprovalsHandler)(nil)
	_ caddyfile.Unmarshaler       = (*ApprovalsHandler)(nil)
)
