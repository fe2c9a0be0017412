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

	"github.com/mcpgate/mcpgate/caddymodule/mcphttp"
	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
	"github.com/mcpgate/mcpgate/caddymodule/policy"
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

	engine  *policy.Engine
	origins mcphttp.OriginPolicy
	limits  mcpmsg.Limits
	logger  *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.mcp_policy",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision loads and compiles the policy and prepares its decision query.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	if h.MaxBody == 0 {
		h.MaxBody = DefaultMaxBody
	}
	h.limits = mcpmsg.Limits{MaxDepth: h.MaxDepth}
	h.origins = mcphttp.OriginPolicy{Allowed: h.AllowedOrigins}

	repl := caddy.NewReplacer()
	paths := make([]string, len(h.Policies))
	for i, path := range h.Policies {
		paths[i] = repl.ReplaceKnown(path, "")
	}
	engine, err := policy.New(ctx, policy.Options{
		Paths:   paths,
		Query:   h.Decision,
		Timeout: time.Duration(h.EvalTimeout),
	})
	if err != nil {
		return fmt.Errorf("mcp_policy: %w", err)
	}
	h.engine = engine
	h.logger.Info("policy loaded", zap.Strings("paths", paths), zap.String("decision", h.decisionQuery()))
	return nil
}

// Validate checks the configuration for values that can never work.
func (h *Handler) Validate() error {
	if len(h.Policies) == 0 {
		return errors.New("mcp_policy: at least one policy path is required")
	}
	if h.MaxBody < 0 {
		return fmt.Errorf("mcp_policy: max_body must not be negative, got %d", h.MaxBody)
	}
	if h.MaxDepth < 0 {
		return fmt.Errorf("mcp_policy: max_depth must not be negative, got %d", h.MaxDepth)
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
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
