// Package caddymodule is mcpgate's Caddy glue: it registers the mcp_policy
// HTTP handler, which parses every MCP message a client posts, decides it
// with Rego and passes only what the policy allows to the next handler
// (normally reverse_proxy).
package caddymodule

import (
	"errors"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"

	"github.com/mcpgate/mcpgate/caddymodule/approval"
	"github.com/mcpgate/mcpgate/caddymodule/catalog"
	"github.com/mcpgate/mcpgate/caddymodule/mcphttp"
	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
	"github.com/mcpgate/mcpgate/caddymodule/policy"
	"github.com/mcpgate/mcpgate/policies"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// DefaultMaxBody is the largest request body accepted when max_body is not
// set: 4 MiB, the same default as the MCP Go SDK's servers.
const DefaultMaxBody = 4 << 20

// Handler is an MCP policy gateway. Every JSON-RPC message a client posts
// (requests, notifications and responses, any method) is parsed strictly,
// evaluated against Rego policies, and either forwarded untouched to the
// next handler, or answered by the gateway itself with the policy's reason.
// GET streams and DELETE pass through.
type Handler struct {
	// Policies are Rego files or folders to load; folders are read
	// recursively and their .json and .yaml files load as data.
	Policies []string `json:"policies,omitempty"`

	// Decision is the Rego reference that yields the decision object
	// {"action": "allow"|"needs_approval"|"block", "reason": "..."}.
	// Default: data.mcp.decision.
	Decision string `json:"decision,omitempty"`

	// Server is the upstream's logical name, given to policies as
	// input.server. Default: the request's host name.
	Server string `json:"server,omitempty"`

	// MaxBody is the largest request body accepted, in bytes; larger
	// bodies are refused with 413. Default: 4 MiB.
	MaxBody int64 `json:"max_body,omitempty"`

	// MaxDepth is the deepest nesting of JSON objects and arrays accepted
	// in a message. Default: 64.
	MaxDepth int `json:"max_depth,omitempty"`

	// AllowedOrigins lists browser origins that may connect ("*" for any).
	// Default: on a loopback address, loopback origins only; elsewhere,
	// the site's own origin only. Requests without Origin are unaffected.
	AllowedOrigins []string `json:"allowed_origins,omitempty"`

	// EvalTimeout bounds one policy evaluation; a timeout blocks the
	// message. Default: 1s.
	EvalTimeout caddy.Duration `json:"eval_timeout,omitempty"`

	// DecisionCache is how many decisions are remembered, by the part of
	// the policy input the policy reads, so that a message the policy
	// would decide the same way is not evaluated again. Only a policy
	// that calls no non-deterministic built-in (time.now_ns, http.send,
	// rand.intn, ...) is cached, and a reload starts afresh; 0 turns
	// caching off. Default: 10000.
	DecisionCache *int `json:"decision_cache,omitempty"`

	// Permissions is the organization's tool table, given to the policy
	// as data.mcp.permissions. With a table and no policies, the shipped
	// library (embedded in the binary) decides.
	Permissions *Permissions `json:"permissions,omitempty"`

	// Bundle loads the policy from an OPA bundle server, through OPA's own
	// bundle plugin, so that many gateways share one policy.
	Bundle *BundleSource `json:"bundle,omitempty"`

	// DisableWatch stops the gateway from watching its policy files. By
	// default an edit takes effect without a restart, and a broken edit
	// keeps the previous policy (and is logged).
	DisableWatch bool `json:"disable_watch,omitempty"`

	// LogArguments includes tool arguments in decision logs. Off by
	// default: arguments often hold personal or secret data.
	LogArguments bool `json:"log_arguments,omitempty"`

	// Identity says how the gateway learns who is calling: verified JWT
	// bearer tokens, or the user an earlier Caddy handler authenticated.
	// The caller is given to policies as input.user, and sessions are
	// bound to the caller who created them.
	Identity *IdentityConfig `json:"identity,omitempty"`

	// ForwardToken forwards the caller's Authorization header upstream.
	// By default, when an identity is configured, the header (a token
	// issued for the gateway) is removed before forwarding.
	ForwardToken bool `json:"forward_token,omitempty"`

	// PinsFile is where accepted tool definitions (pins against changed
	// tool definitions) are kept. Default: in the approval store's Redis
	// when that is the store (so replicas share them), else
	// mcpgate/pins.json in Caddy's data directory.
	PinsFile string `json:"pins_file,omitempty"`

	// Approval holds the tool calls that the policy answers with
	// needs_approval until a person approves them (by signed webhook
	// callback, the admin API or the inbox page). Without it, such calls
	// are refused.
	Approval *ApprovalConfig `json:"approval,omitempty"`

	engine  *policy.Engine
	callers *callerGate
	// approvals is the shared approval service; approvalConfig is this
	// handler's resolved approval block.
	approvals      *approval.Service
	approvalConfig *resolvedApproval
	catalog        *catalog.Catalog
	pins           pinSource
	metrics        *gatewayMetrics
	// refreshes shares one tools/list fetch among concurrent calls.
	refreshes *singleflight.Group
	// sessions is what the gateway remembers of live sessions: the
	// HTTP+SSE streams open through it and the server requests it relayed.
	sessions *sessionState
	origins  mcphttp.OriginPolicy
	limits   mcpmsg.Limits
	logger   *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.mcp_policy",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision loads and compiles the policy, prepares its queries, and
// attaches the shared tool catalog and metrics.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	if h.MaxBody == 0 {
		h.MaxBody = DefaultMaxBody
	}
	h.limits = mcpmsg.Limits{MaxDepth: h.MaxDepth}
	h.origins = mcphttp.OriginPolicy{Allowed: h.AllowedOrigins}
	h.refreshes = new(singleflight.Group)

	repl := caddy.NewReplacer()
	opts := policy.Options{
		Query:   h.Decision,
		Timeout: time.Duration(h.EvalTimeout),
		Logger:  h.logger,
	}
	if h.DecisionCache != nil {
		opts.CacheSize = *h.DecisionCache
		if opts.CacheSize == 0 {
			opts.CacheSize = -1 // policy.Options: negative is off
		}
	}
	for _, path := range h.Policies {
		opts.Paths = append(opts.Paths, repl.ReplaceKnown(path, ""))
	}
	opts.Watch = len(opts.Paths) > 0 && !h.DisableWatch
	if h.Bundle != nil {
		opts.Bundle = h.Bundle.config(repl)
	}
	if h.Permissions != nil {
		opts.Data = h.Permissions.data()
		if len(opts.Paths) == 0 && opts.Bundle == nil {
			opts.Modules = policies.Library()
		}
	}
	engine, err := policy.New(ctx, opts)
	if err != nil {
		return fmt.Errorf("mcp_policy: %w", err)
	}
	h.engine = engine

	if h.Identity != nil {
		identityConfig := *h.Identity
		for _, field := range []*string{&identityConfig.JWKSURL, &identityConfig.Issuer, &identityConfig.Resource} {
			*field = repl.ReplaceKnown(*field, "")
		}
		if h.callers, err = newCallerGate(ctx, &identityConfig); err != nil {
			return fmt.Errorf("mcp_policy: %w", err)
		}
	}

	switch {
	case h.PinsFile != "":
		h.pins = pinSource{file: repl.ReplaceKnown(h.PinsFile, "")}
	case h.Approval != nil && h.Approval.Store == storeRedis:
		h.pins = pinSource{redis: repl.ReplaceKnown(h.Approval.Redis, "")}
	default:
		h.pins = pinSource{file: defaultPinsFile()}
	}
	h.catalog, err = loadCatalog(ctx, h.pins)
	if err != nil {
		return fmt.Errorf("mcp_policy: %w", err)
	}
	h.sessions = loadSessionState()
	h.metrics, err = newGatewayMetrics(ctx.GetMetricsRegistry())
	if err != nil {
		return fmt.Errorf("mcp_policy: %w", err)
	}
	if err := h.provisionApprovals(ctx); err != nil {
		return fmt.Errorf("mcp_policy: %w", err)
	}
	h.logger.Info("policy loaded",
		zap.Strings("paths", opts.Paths),
		zap.Bool("library", opts.Modules != nil),
		zap.Bool("bundle", opts.Bundle != nil),
		zap.String("decision", h.decisionQuery()))
	return nil
}

// Validate checks the configuration for values that can never work.
func (h *Handler) Validate() error {
	if len(h.Policies) == 0 && h.Permissions == nil && h.Bundle == nil {
		return errors.New("mcp_policy: a policy path, a permissions table or a bundle is required")
	}
	if len(h.Policies) > 0 && h.Bundle != nil {
		return errors.New("mcp_policy: policy paths and a bundle cannot be combined")
	}
	if h.Permissions != nil {
		if err := h.Permissions.validate(); err != nil {
			return fmt.Errorf("mcp_policy: %w", err)
		}
	}
	if h.MaxBody < 0 {
		return fmt.Errorf("mcp_policy: max_body must not be negative, got %d", h.MaxBody)
	}
	if h.MaxDepth < 0 {
		return fmt.Errorf("mcp_policy: max_depth must not be negative, got %d", h.MaxDepth)
	}
	if h.DecisionCache != nil && *h.DecisionCache < 0 {
		return fmt.Errorf("mcp_policy: decision_cache must not be negative (0 turns it off), got %d", *h.DecisionCache)
	}
	return nil
}

// Cleanup stops policy watchers and bundle polling and releases the tool
// catalog.
func (h *Handler) Cleanup() error {
	if h.catalog != nil {
		releaseCatalog(h.pins)
	}
	if h.sessions != nil {
		releaseSessionState()
	}
	if h.approvals != nil {
		releaseApprovals(h.approvalConfig.poolKey())
	}
	if h.callers != nil {
		if err := h.callers.close(); err != nil {
			h.logger.Warn("closing the identity verifier", zap.Error(err))
		}
	}
	if h.engine != nil {
		return h.engine.Close()
	}
	return nil
}

func (h *Handler) decisionQuery() string {
	if h.Decision == "" {
		return policy.DefaultDecisionQuery
	}
	return h.Decision
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
