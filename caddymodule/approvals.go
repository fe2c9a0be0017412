package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/caddyauth"

	"github.com/mcpgate/mcpgate/caddymodule/approval"
	"github.com/mcpgate/mcpgate/caddymodule/approvalhttp"
	"github.com/mcpgate/mcpgate/caddymodule/subdirective"
)

func init() {
	caddy.RegisterModule(ApprovalsHandler{})
	httpcaddyfile.RegisterHandlerDirective("mcp_approvals", parseApprovalsCaddyfile)
	// A responder, as respond is; and so before mcp_policy, which is
	// ordered before reverse_proxy, when both are in one route.
	httpcaddyfile.RegisterDirectiveOrder("mcp_approvals", httpcaddyfile.Before, "respond")
}

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

	approvals *approvalhttp.Handler
}

// CaddyModule returns the Caddy module information.
func (ApprovalsHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.mcp_approvals",
		New: func() caddy.Module { return new(ApprovalsHandler) },
	}
}

// Provision resolves the handler's approval services and sets up the
// inbox's authentication.
func (h *ApprovalsHandler) Provision(ctx caddy.Context) error {
	cfg := approvalhttp.Config{
		Services: instanceApprovals(h.Instance),
		Logger:   ctx.Logger(),
		ClientIP: clientIP,
	}
	app, err := appOf(ctx)
	if err != nil {
		return err
	}
	app.serveApprovals(h.Instance)
	if h.Inbox != nil {
		// Before provision, which leaves only the accounts' names.
		fingerprint := h.Inbox.fingerprint()
		inbox, err := h.Inbox.provision(ctx)
		if err != nil {
			return err
		}
		if err := app.claimInbox(h.Instance, fingerprint, inbox.Principals(slices.Collect(maps.Keys(h.Inbox.BasicAuth.Accounts)))); err != nil {
			return fmt.Errorf("mcp_approvals: %w", err)
		}
		cfg.Inbox = inbox
	}
	h.approvals = approvalhttp.New(cfg)
	return nil
}

// ServeHTTP answers callbacks (POST …/<id>), and the inbox page (GET and
// POST on a path ending in "/") when there is an inbox, with approvalhttp;
// its refusals become Caddy handler errors, for the server's error
// handling.
func (h *ApprovalsHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	// No MCP message: mcpgate's placeholders are empty here, not left as
	// written (a site's `header >X-MCP-Decision {mcp.decision.action}`).
	annotateNoMessage(r)
	err := h.approvals.Serve(w, r)
	if refused, ok := errors.AsType[*approvalhttp.Error](err); ok {
		return caddyhttp.Error(refused.Status, refused.Err)
	}
	return err
}

// instanceApprovals are the approval services of the mcp_policy handlers
// whose approval block names an instance (every one, when it is empty), as
// the process's usage pool keeps them across config reloads.
type instanceApprovals string

// Find returns the service of the instance that holds approval id (see
// approval.Find).
func (instance instanceApprovals) Find(ctx context.Context, id string, accept func(*approval.Service) bool) (*approval.Service, error) {
	return approval.Find(ctx, instance.Each, id, accept)
}

// Each calls f for every service of the instance.
func (instance instanceApprovals) Each(f func(*approval.Service) bool) {
	eachApprovalService(string(instance), f)
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
	given := subdirective.Once{}
	for d.NextBlock(0) {
		if err := given.Check(d, "instance", "inbox"); err != nil {
			return err
		}
		switch d.Val() {
		case "instance":
			if !d.AllArgs(&h.Instance) {
				return d.ArgErr()
			}
		case "inbox":
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

// addNamedList reads a line of a name and its values (at least one) into
// *lists, refusing a name given twice: usage says what the line takes,
// twice (with the name) that it was given twice.
func addNamedList(d *caddyfile.Dispenser, lists *map[string][]string, usage, twice string) error {
	args := d.RemainingArgs()
	if len(args) < 2 {
		return d.Err(usage)
	}
	if *lists == nil {
		*lists = make(map[string][]string)
	}
	if _, dup := (*lists)[args[0]]; dup {
		return d.Errf(twice, args[0])
	}
	(*lists)[args[0]] = args[1:]
	return nil
}

// unmarshalInbox reads an inbox block, whose basic_auth reads as Caddy's.
func unmarshalInbox(d *caddyfile.Dispenser) (*ApprovalInbox, error) {
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	inbox := new(ApprovalInbox)
	given := subdirective.Once{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if err := given.Check(d, "basic_auth"); err != nil {
			return nil, err
		}
		switch d.Val() {
		case "group":
			if err := addNamedList(d, &inbox.Groups, "group takes a name and its accounts", "group %s given twice"); err != nil {
				return nil, err
			}
			continue
		case "caller_ids":
			if err := addNamedList(d, &inbox.CallerIDs, "caller_ids takes an account and the caller ids its person calls with", "caller_ids of %s given twice"); err != nil {
				return nil, err
			}
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
	_ approvalhttp.Services       = instanceApprovals("")
)
