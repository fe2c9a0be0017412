// Package caddymodule is mcpgate's Caddy glue: it registers the mcp_policy
// HTTP handler, which parses every MCP message a client posts, decides it
// with Rego and passes only what the policy allows to the next handler
// (normally reverse_proxy); the mcp_approvals inbox; mcp_bypass; the admin
// API's modules; and the mcpgate app, which holds what handlers share and
// checks that no route reaches an upstream around mcp_policy.
package caddymodule

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	jsonv2 "github.com/go-json-experiment/json"
	"go.uber.org/zap"

	"github.com/mcpgate/mcpgate/caddymodule/approval"
	"github.com/mcpgate/mcpgate/caddymodule/gateway"
	"github.com/mcpgate/mcpgate/caddymodule/mcphttp"
	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
	"github.com/mcpgate/mcpgate/caddymodule/permissions"
	"github.com/mcpgate/mcpgate/caddymodule/policy"
	"github.com/mcpgate/mcpgate/caddymodule/sessiontoken"
	"github.com/mcpgate/mcpgate/caddymodule/tooloverride"
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
// The replies are watched: tool lists filtered, server requests decided.
// A GET's stream is watched the same way (a 2xx reply that is not an
// event stream refused); DELETE, HEAD and OPTIONS pass, their replies
// isolated.
type Handler struct {
	// Policies are Rego files or folders to load; folders are read
	// recursively and their .json and .yaml files load as data.
	Policies []string `json:"policies,omitempty"`

	// Decision is the Rego reference that yields the decision object
	// {"action": "allow"|"needs_approval"|"block", "reason": "..."}.
	// Default: data.mcp.decision.
	Decision string `json:"decision,omitempty"`

	// Server is the upstream's logical name, given to policies as
	// input.server, and the name what the gateway learns of the
	// upstream's tools is kept under. Default: the port of the HTTP
	// server the handler is in (":8443"); one HTTP server may hold one
	// handler without a server. Two handlers of one configuration may
	// not name the same server unless both name the same upstream.
	Server string `json:"server,omitempty"`

	// Upstream declares that handlers front the same MCP server: handlers
	// with the same upstream share what the gateway learns of its tools
	// (categories, pins) and accept each other's sessions. Default: the
	// server name.
	Upstream string `json:"upstream,omitempty"`

	// SessionKeys seal the session ids the gateway hands clients (base64
	// AES-256 keys; placeholders such as {env.MCPGATE_SESSION_KEY} are
	// replaced). The first seals; all open, so a new key goes first and
	// the old one stays until its sessions may end. Default: a key kept in
	// Caddy's storage, made on first use (replicas that share storage
	// share it).
	SessionKeys []string `json:"session_keys,omitempty"`

	// MaxBody is the largest request body accepted, in bytes; larger
	// bodies are refused with 413. Default: 4 MiB.
	MaxBody int64 `json:"max_body,omitempty"`

	// MaxDepth is the deepest nesting of JSON objects and arrays accepted
	// in a message. Default: 64; at most 1000.
	MaxDepth int `json:"max_depth,omitempty"`

	// MaxValues is the most JSON values (objects, arrays, strings,
	// numbers, booleans, nulls, at any depth) accepted in a request body:
	// decoded, each costs some 70 bytes, so this, more than max_body,
	// bounds the memory a request's parse takes; a reply (a JSON body,
	// or one event) may hold 16 times as many. Default: 250000; at most
	// 10000000.
	MaxValues int `json:"max_values,omitempty"`

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
	// caching off. Default: 10000; at most 16777216.
	DecisionCache *int `json:"decision_cache,omitempty"`

	// Permissions is the organization's tool table, given to the policy
	// as data.mcp.permissions. With a table and no policies, the shipped
	// library (embedded in the binary) decides.
	Permissions *permissions.Table `json:"permissions,omitempty"`

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

	// BlockSecrets blocks every tool call whose arguments hold a
	// well-known credential (a cloud or service access key, a token, a
	// private key; docs/secrets.md), whatever the policy decides, and
	// every prompt, completion or resource request whose params do;
	// withholds a client's answer to the server that holds one; and
	// withholds every result, error or failed reply the server answers,
	// and every request or notification it sends the client, that holds
	// one (the results describing the server, of initialize and the
	// lists, are not read). Off by default; a policy may read what a call's
	// arguments hold as input.tool.secrets.
	BlockSecrets bool `json:"block_secrets,omitempty"`

	// ToolOverrides rename tools and replace their descriptions and
	// titles as clients see them, by the server's tool names:
	// {"search_issues_v2": {"name": "search_issues", "description":
	// "...", "title": "Search issues"}}. A new name is 1 to 128
	// letters, digits, "_", "-" or ".", and no two tools may be offered
	// under one name, or under names that differ only by case. Policies,
	// the
	// permissions table, approvals, logs and metrics name tools as the
	// server does; a renamed tool is called by its new name alone (its
	// old name is refused as a tool the server does not offer), and a
	// tool of the server's that keeps a name another is renamed to is
	// hidden (docs/tool-overrides.md).
	ToolOverrides map[string]tooloverride.Override `json:"tool_overrides,omitempty"`

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

	// RateLimits limit how often messages pass, per key (per user, per
	// tool, ...).
	RateLimits []RateLimit `json:"rate_limits,omitempty"`

	// Audit writes the audit trail to the logger mcpgate.audit.
	Audit *AuditConfig `json:"audit,omitempty"`

	// Approval holds the tool calls that the policy answers with
	// needs_approval until a person approves them (by signed webhook
	// callback, the admin API or the inbox page). Without it, such calls
	// are refused.
	Approval *ApprovalConfig `json:"approval,omitempty"`

	gateway *gateway.Gateway
	// releases give back, last first, the shared state the handler took
	// (its catalog, the session state, its rate limits' counts or
	// connection, its approval service).
	releases []func()
	logger   *zap.Logger
}

// UnmarshalJSON reads the handler's JSON configuration more strictly than
// Caddy's decoder: a member in another case than its name's is refused,
// at every depth, as are unknown members and, where the handler is given
// its JSON as written (its tests, other Go callers), a member given twice.
// (In a Caddy configuration, Caddy decodes each handler once to find its
// module's name and encodes it again before this runs, which keeps the
// last of a member given twice: docs/configuration.md says so.)
func (h *Handler) UnmarshalJSON(b []byte) error {
	type plain Handler
	if err := jsonv2.Unmarshal(b, (*plain)(h), jsonv2.RejectUnknownMembers(true)); err != nil {
		return fmt.Errorf("mcp_policy: %w", err)
	}
	return nil
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.mcp_policy",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision checks the configuration, loads and compiles the policy,
// attaches the shared tool catalog, session state and approval service,
// and builds the gateway.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	// Caddy calls Provision before Validate: the cheap checks go first,
	// so that a configuration that can never work loads nothing.
	if err := h.Validate(); err != nil {
		return err
	}
	if h.MaxBody == 0 {
		h.MaxBody = DefaultMaxBody
	}
	repl := caddy.NewReplacer()
	metrics, err := gateway.NewMetrics(ctx.GetMetricsRegistry())
	if err != nil {
		return fmt.Errorf("mcp_policy: %w", err)
	}
	opts, err := h.policyOptions(repl)
	if err != nil {
		return fmt.Errorf("mcp_policy: %w", err)
	}
	opts.OnReload = metrics.PolicyReloaded
	engine, err := policy.New(ctx, opts)
	if err != nil {
		return fmt.Errorf("mcp_policy: %w", err)
	}
	origins, err := h.allowedOrigins(repl)
	if err != nil {
		return errors.Join(fmt.Errorf("mcp_policy: %w", err), engine.Close())
	}
	// Checked by Validate.
	overrides, err := tooloverride.New(h.ToolOverrides)
	if err != nil {
		return errors.Join(fmt.Errorf("mcp_policy: %w", err), engine.Close())
	}
	cfg := gateway.Config{
		Engine:        engine,
		ToolOverrides: overrides,
		Server:        h.Server,
		Upstream:      h.Upstream,
		MaxBody:       h.MaxBody,
		Limits:        mcpmsg.Limits{MaxDepth: h.MaxDepth, MaxValues: h.MaxValues},
		Origins:       mcphttp.OriginPolicy{Allowed: origins},
		LogArguments:  h.LogArguments,
		BlockSecrets:  h.BlockSecrets,
		ForwardToken:  h.ForwardToken,
		Host:          h.host(),
		Metrics:       metrics,
		Logger:        h.logger,
	}
	if err := h.provisionShared(ctx, repl, opts, &cfg); err != nil {
		return errors.Join(fmt.Errorf("mcp_policy: %w", err), cfg.Engine.Close(), closeIdentity(cfg.Identity))
	}
	server := cfg.Server
	cfg.Running = func() []*gateway.Gateway { return running.serving(server) }
	if h.gateway, err = gateway.New(cfg); err != nil {
		return errors.Join(fmt.Errorf("mcp_policy: %w", err), cfg.Engine.Close(), closeIdentity(cfg.Identity))
	}
	app, err := appOf(ctx)
	if err != nil {
		return err
	}
	app.serve(server, h.gateway)
	for _, ignored := range h.ignoredOptions() {
		h.logger.Warn("an mcp_policy option does nothing in this configuration: "+ignored, zap.String("server", server))
	}
	h.logger.Info("policy loaded",
		zap.Strings("paths", h.Policies),
		zap.Bool("library", len(h.Policies) == 0 && h.Bundle == nil),
		zap.Bool("bundle", h.Bundle != nil),
		zap.String("decision", h.decisionQuery()))
	return nil
}

// guards names what the handler decides and guards with, as its engine
// was configured (opts) and as it parses (limits): its policy (its
// files, resolved, and by content, or its bundle, and whether it follows
// their changes), its decision rule and timeout, its permissions table,
// block_secrets, its tool overrides, and the limits its strict parse
// reads messages (and replies) within, defaults filled in, so that two
// spellings of one setting agree (the approvals they hold calls in are
// held to agree by App.claimApprovals, who decides them by the policy);
// handlers that share a server name must agree on it (see App.claim). By
// configuration rather than by what the policy decides: two handlers
// loading the same files or bundle follow their changes alike.
func (h *Handler) guards(opts policy.Options, engine *policy.Engine, limits mcpmsg.Limits) (string, error) {
	revision := engine.Revision()
	if h.Bundle != nil {
		// Named by its bundle alone: two engines may have fetched two
		// revisions of it by now.
		revision = ""
	}
	paths := make([]string, 0, len(opts.Paths))
	for _, path := range opts.Paths {
		resolved, err := filepath.Abs(path)
		if err != nil {
			return "", fmt.Errorf("resolving the policy path %q: %w", path, err)
		}
		paths = append(paths, resolved)
	}
	b, err := json.Marshal(struct {
		Revision      string
		Policies      []string
		Decision      string
		EvalTimeout   time.Duration
		Permissions   *permissions.Table
		Bundle        *BundleSource
		Watch         bool
		BlockSecrets  bool
		ToolOverrides map[string]tooloverride.Override
		MaxDepth      int
		MaxValues     int
	}{revision, paths, h.decisionQuery(), cmp.Or(opts.Timeout, policy.DefaultTimeout), h.Permissions, h.Bundle, opts.Watch, h.BlockSecrets, h.ToolOverrides,
		limits.EffectiveMaxDepth(), limits.EffectiveMaxValues()})
	if err != nil {
		return "", fmt.Errorf("naming the handler's guards: %w", err)
	}
	return string(b), nil
}

// policyOptions are the policy engine's options for this handler.
func (h *Handler) policyOptions(repl *caddy.Replacer) (policy.Options, error) {
	opts := policy.Options{
		Query:         h.Decision,
		Timeout:       time.Duration(h.EvalTimeout),
		Logger:        h.logger,
		ValidApprover: approval.ValidPrincipal,
	}
	if h.DecisionCache != nil {
		opts.CacheSize = *h.DecisionCache
		if opts.CacheSize == 0 {
			opts.CacheSize = -1 // policy.Options: negative is off
		}
	}
	for _, path := range h.Policies {
		replaced := repl.ReplaceKnown(path, "")
		if strings.TrimSpace(replaced) == "" {
			return opts, fmt.Errorf("policy %q names no path once its placeholders are replaced", path)
		}
		opts.Paths = append(opts.Paths, replaced)
	}
	opts.Watch = len(opts.Paths) > 0 && !h.DisableWatch
	if h.Bundle != nil {
		var err error
		if opts.Bundle, err = h.Bundle.config(repl); err != nil {
			return opts, err
		}
	}
	if h.Permissions != nil {
		opts.Data = h.Permissions.Data()
		if len(opts.Paths) == 0 && opts.Bundle == nil {
			opts.Modules = policies.Library()
		}
	}
	return opts, nil
}

// provisionShared fills in the parts of the gateway's configuration that
// outlive it or own resources: identity, catalog, session state, metrics
// and approvals. What it attached is released by Cleanup. The names the
// permissions table of its policy gives (the configuration's, or one in
// the policy's data) are recorded for the app's checks (see App.Start),
// and what it decides and guards with (opts, its engine's options: see
// guards).
func (h *Handler) provisionShared(ctx caddy.Context, repl *caddy.Replacer, opts policy.Options, cfg *gateway.Config) error {
	app, err := appOf(ctx)
	if err != nil {
		return err
	}
	if cfg.Server == "" {
		if cfg.Server, err = app.defaultServer(ctx); err != nil {
			return err
		}
	}
	if cfg.Upstream == "" {
		cfg.Upstream = cfg.Server
	}
	guards, err := h.guards(opts, cfg.Engine, cfg.Limits)
	if err != nil {
		return err
	}
	if err := app.claim(cfg.Server, cfg.Upstream, h.Upstream != "", callerRealm{name: h.Identity.realm(repl, cfg.Upstream), shared: h.Identity.realmShared()}, guards); err != nil {
		return err
	}
	app.nameTableServers(cfg.Engine.TableServers())
	if cfg.Sealer, err = h.sessionSealer(ctx, repl); err != nil {
		return err
	}
	if h.Identity != nil {
		if cfg.Identity, err = h.Identity.gatewayIdentity(ctx, repl, cfg.Upstream); err != nil {
			return err
		}
	}
	// The approval settings are checked against the other handlers' before
	// anything connects to the store they name.
	var resolved *resolvedApproval
	if h.Approval != nil {
		if resolved, err = h.Approval.resolve(repl); err != nil {
			return err
		}
		resolved.audited = h.Audit != nil
		if err := app.claimApprovals(resolved, cfg.Server, cfg.Engine.TableApprovers(cfg.Server)); err != nil {
			return err
		}
	}
	var pins pinSource
	switch {
	case h.PinsFile != "":
		file := repl.ReplaceKnown(h.PinsFile, "")
		if strings.TrimSpace(file) == "" {
			return fmt.Errorf("pins_file %q names no file once its placeholders are replaced", h.PinsFile)
		}
		pins = pinSource{file: file}
	case h.Approval != nil && h.Approval.Store == storeRedis:
		pins = pinSource{redis: repl.ReplaceKnown(h.Approval.Redis, ""), instance: cmp.Or(h.Approval.Instance, defaultApprovalInstance)}
	default:
		pins = pinSource{file: defaultPinsFile()}
	}
	if cfg.Catalog, err = loadCatalog(ctx, pins); err != nil {
		return err
	}
	h.releases = append(h.releases, func() { releaseCatalog(pins) })
	// This configuration may route the name to another MCP server than
	// the last did: the list becomes its own when it starts (see
	// App.Start), and is then fetched anew.
	cfg.Epoch = app.epoch
	app.guard(ctx)
	cfg.Sessions = loadSessions()
	h.releases = append(h.releases, releaseSessions)
	redisAddr := ""
	if h.Approval != nil && h.Approval.Store == storeRedis {
		redisAddr = repl.ReplaceKnown(h.Approval.Redis, "")
	}
	var releaseLimits func()
	if cfg.RateLimits, releaseLimits, err = h.rateLimits(redisAddr, cfg.Upstream); err != nil {
		return err
	}
	h.releases = append(h.releases, releaseLimits)
	if h.Audit != nil {
		cfg.Audit = h.Audit.audit(ctx)
	}
	if resolved != nil {
		var audit *zap.Logger
		if cfg.Audit != nil {
			audit = cfg.Audit.Logger
		}
		service, err := loadApprovals(ctx, resolved, audit)
		if err != nil {
			return err
		}
		key := resolved.poolKey()
		h.releases = append(h.releases, func() { releaseApprovals(key) })
		cfg.Approvals = &gateway.Approvals{Service: service, Hold: resolved.hold, Keepalive: resolved.keepalive}
		if server, ok := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok && server.WriteTimeout > 0 && time.Duration(server.WriteTimeout) <= resolved.hold {
			h.logger.Warn("the server's write timeout is shorter than hold: held calls are answered pending before it, sooner than hold says; "+
				"event streams, which stay open for hours, are cut by it too (leave timeouts write unset, or set write_idle)",
				zap.Duration("write_timeout", time.Duration(server.WriteTimeout)), zap.Duration("hold", resolved.hold))
		}
	} else if reviewers := tableReviewers(cfg.Engine.TableApprovers(cfg.Server)); len(reviewers) > 0 {
		// Named reviewers show that someone was meant to review; without
		// an approval block nobody can (the caller alone may be asked).
		h.logger.Warn("the permissions table names reviewers, but this mcp_policy has no approval block: the calls they were to review are refused (add an approval block, or name caller alone)",
			zap.String("server", cfg.Server), zap.Strings("approvers", reviewers))
	}
	return nil
}

// tableReviewers returns the approvers but the caller that entries of a
// permissions table name, sorted, each once.
func tableReviewers(entries []policy.TableApprovers) []string {
	var reviewers []string
	for _, entry := range entries {
		for _, approver := range entry.Approvers {
			if approver != approval.PrincipalCaller {
				reviewers = append(reviewers, approver)
			}
		}
	}
	slices.Sort(reviewers)
	return slices.Compact(reviewers)
}

// sessionSealer returns the sealer of the configured session keys, or of
// the key kept in Caddy's storage.
func (h *Handler) sessionSealer(ctx caddy.Context, repl *caddy.Replacer) (*sessiontoken.Sealer, error) {
	if len(h.SessionKeys) == 0 {
		key, err := storedSessionKey(ctx, ctx.Storage())
		if err != nil {
			return nil, err
		}
		return sessiontoken.New(key)
	}
	keys := make([][]byte, 0, len(h.SessionKeys))
	for i, encoded := range h.SessionKeys {
		key, err := sessiontoken.ParseKey(repl.ReplaceKnown(encoded, ""))
		if err != nil {
			return nil, fmt.Errorf("session key %d: %w", i+1, err)
		}
		keys = append(keys, key)
	}
	return sessiontoken.New(keys...)
}

// closeIdentity closes the token verifier of an identity the gateway did
// not take over.
func closeIdentity(id *gateway.Identity) error {
	if id == nil || id.Verifier == nil {
		return nil
	}
	return id.Verifier.Close()
}

// The largest settings accepted: past them a setting is a mistake (and,
// over 2^53, Caddy's configuration would not even carry it exactly).
const (
	// An evaluation bound under a millisecond times every evaluation out
	// (blocking everything); one over a minute holds requests for as
	// long on a policy that hangs.
	minEvalTimeout   = time.Millisecond
	maxEvalTimeout   = time.Minute
	maxDecisionCache = 1 << 24
	maxMaxDepth      = mcpmsg.MaxDepthLimit
	maxMaxValues     = mcpmsg.MaxValuesLimit
	maxMaxBody       = 1 << 40
)

// Validate checks the configuration for values that can never work.
func (h *Handler) Validate() error {
	if len(h.Policies) == 0 && h.Permissions == nil && h.Bundle == nil {
		return errors.New("mcp_policy: a policy path, a permissions table or a bundle is required")
	}
	if len(h.Policies) > 0 && h.Bundle != nil {
		return errors.New("mcp_policy: policy paths and a bundle cannot be combined")
	}
	if h.Permissions != nil {
		if err := h.Permissions.Validate(); err != nil {
			return fmt.Errorf("mcp_policy: %w", err)
		}
	}
	if _, err := tooloverride.New(h.ToolOverrides); err != nil {
		return fmt.Errorf("mcp_policy: %w", err)
	}
	if h.MaxBody < 0 {
		return fmt.Errorf("mcp_policy: max_body must not be negative, got %d", h.MaxBody)
	}
	if h.MaxDepth < 0 {
		return fmt.Errorf("mcp_policy: max_depth must not be negative, got %d", h.MaxDepth)
	}
	if h.MaxValues < 0 || h.MaxValues > maxMaxValues {
		return fmt.Errorf("mcp_policy: max_values must be from 1 to %d (0 is the default), got %d", maxMaxValues, h.MaxValues)
	}
	if h.EvalTimeout != 0 && (time.Duration(h.EvalTimeout) < minEvalTimeout || time.Duration(h.EvalTimeout) > maxEvalTimeout) {
		return fmt.Errorf("mcp_policy: eval_timeout must be from %s to %s, got %s", minEvalTimeout, maxEvalTimeout, time.Duration(h.EvalTimeout))
	}
	if h.DecisionCache != nil && (*h.DecisionCache < 0 || *h.DecisionCache > maxDecisionCache) {
		return fmt.Errorf("mcp_policy: decision_cache must be from 0 (off) to %d, got %d", maxDecisionCache, *h.DecisionCache)
	}
	for name, value := range map[string]string{"server": h.Server, "upstream": h.Upstream} {
		if value != "" && strings.TrimSpace(value) == "" {
			return fmt.Errorf("mcp_policy: %s must not be blank", name)
		}
	}
	if h.MaxBody > maxMaxBody {
		return fmt.Errorf("mcp_policy: max_body must be at most %d bytes (1 TiB), got %d", int64(maxMaxBody), h.MaxBody)
	}
	if h.MaxDepth > maxMaxDepth {
		return fmt.Errorf("mcp_policy: max_depth must be at most %d, got %d", maxMaxDepth, h.MaxDepth)
	}
	if h.Identity != nil && h.Identity.Source != IdentityJWT && h.Identity.Source != IdentityCaddy {
		return fmt.Errorf("mcp_policy: identity: unknown source %q (want jwt or caddy)", h.Identity.Source)
	}
	if h.Approval != nil {
		if err := h.Approval.validate(); err != nil {
			return fmt.Errorf("mcp_policy: %w", err)
		}
	}
	for i := range h.RateLimits {
		if _, err := h.RateLimits[i].rule(); err != nil {
			return fmt.Errorf("mcp_policy: %w", err)
		}
		// Only an identity names the caller (gateway.Facts.UserID):
		// without one, a key by user is one count for every caller.
		if name := h.RateLimits[i].userPlaceholder(); name != "" && h.Identity == nil {
			return fmt.Errorf("mcp_policy: rate_limit %s: {%s} is always empty without an `identity`, so every caller would share one count and one client could use up everyone's limit: "+
				"configure an identity, or key the limit by {mcp.session} or {http.vars.client_ip}", h.RateLimits[i].Key, name)
		}
	}
	return nil
}

// ignoredOptions says which options the handler is given that do nothing
// beside the others: each was evidently meant to do something, so it is
// warned of as the configuration loads (not refused: it is harmless).
func (h *Handler) ignoredOptions() []string {
	var ignored []string
	// (forward_token without an identity is not among them: the header
	// passes anyway, and examples/egress keeps it for the day an identity
	// is added.)
	if h.Identity == nil && h.Audit != nil && len(h.Audit.Claims) > 0 {
		ignored = append(ignored, "audit claims records the claims of the caller an identity names; without an identity there are none")
	}
	if h.DisableWatch && len(h.Policies) == 0 {
		ignored = append(ignored, "disable_watch stops watching policy paths, and none are given")
	}
	return ignored
}

// ServeHTTP runs the request through the gateway.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	return h.gateway.Serve(w, r, next)
}

// Cleanup closes the gateway and releases the shared state it used.
func (h *Handler) Cleanup() error {
	for _, release := range slices.Backward(h.releases) {
		release()
	}
	h.releases = nil
	if h.gateway != nil {
		return h.gateway.Close()
	}
	return nil
}

func (h *Handler) decisionQuery() string {
	if h.Decision == "" {
		return policy.DefaultDecisionQuery
	}
	return h.Decision
}

// caddyHost tells the gateway what Caddy knows of a request.
var caddyHost = gateway.Host{
	ClientIP:     clientIP,
	TrustedProxy: trustedProxy,
	RequestID:    requestID,
	Annotate:     annotate,
	HostChanged:  hostChanged,
	WriteTimeout: func(r *http.Request) time.Duration {
		if server, ok := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok {
			return time.Duration(server.WriteTimeout)
		}
		return 0
	},
	OriginalPath: func(r *http.Request) string {
		original, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request)
		if !ok || original.URL == nil {
			return ""
		}
		return original.URL.Path
	},
}

// clientIP returns the client address as Caddy determined it (honouring
// the server's trusted_proxies), falling back to the peer address.
func clientIP(r *http.Request) string {
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok && ip != "" {
		return ip
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

// trustedProxy reports whether the request's peer is one of the server's
// trusted_proxies.
func trustedProxy(r *http.Request) bool {
	trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool)
	return trusted
}

// host is caddyHost, telling the handler's gateway what Caddy knows of a
// request, with a warning, once, the first time a request comes through
// a trusted proxy of a server without trusted_proxies_strict: Caddy then
// takes the client's address from the left of X-Forwarded-For, which a
// client writes itself behind a load balancer that appends to the header
// (as most do), so that a client_ip allowlist, a rate limit keyed by
// {http.vars.client_ip} and a policy reading input.request.remote_ip read
// an address the client chose. Strict, Caddy reads from the right,
// skipping the trusted proxies: the same address behind a balancer that
// replaces the header. (Found when a request comes, since Caddy keeps no
// trusted_proxies of a server that the configuration's start could read.)
func (h *Handler) host() gateway.Host {
	host := caddyHost
	var warned atomic.Bool
	host.TrustedProxy = func(r *http.Request) bool {
		trusted := trustedProxy(r)
		if trusted && !warned.Load() {
			if server, ok := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok && server != nil && server.TrustedProxiesStrict <= 0 &&
				warned.CompareAndSwap(false, true) {
				h.logger.Warn("a request came through a trusted proxy of a server without trusted_proxies_strict: Caddy takes the client's address from the left of X-Forwarded-For, "+
					"which a client writes itself behind a load balancer that appends to the header, so client_ip matchers (an IP allowlist), "+
					"{http.vars.client_ip} in rate limits, input.request.remote_ip and mcp_stdio's max_sessions_per_caller read an address the client chose; add trusted_proxies_strict to the server's options",
					zap.Strings("listen", server.Listen))
			}
		}
		return trusted
	}
	return host
}

// hostChanged sets the Host placeholders to the request's Host, which the
// gateway rewrote (in lower case, an IPv6 address as netip writes it):
// Caddy reads them from the request it received, which handlers before
// the gateway may have copied rather than passed on (tracing does), so
// that {host} would read the Host as sent. The port does not change.
func hostChanged(r *http.Request) {
	repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !ok {
		return
	}
	sent, _ := repl.GetString("http.request.host") // without its port
	host, _, err := net.SplitHostPort(r.Host)
	if err != nil {
		host = r.Host // no port
	}
	repl.Set("http.request.host", host)
	repl.Set("http.request.hostport", r.Host)
	// {http.request.host.labels.N}, from the right; those the Host as
	// sent had beyond the new one's are empty, as Caddy gives them.
	now := strings.Split(host, ".")
	for i := range max(len(now), strings.Count(sent, ".")+1) {
		label := ""
		if i < len(now) {
			label = now[len(now)-1-i]
		}
		repl.Set("http.request.host.labels."+strconv.Itoa(i), label)
	}
}

// requestID is Caddy's unique id of the request ({http.request.uuid}).
func requestID(r *http.Request) string {
	repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !ok {
		return ""
	}
	id, _ := repl.GetString("http.request.uuid")
	return id
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)

// allowedOrigins returns the allowed origins, placeholders replaced. An
// empty one and "null" are refused: "null" is the origin of sandboxed
// frames and data: documents, which any page can make.
// isOrigin reports whether s is an origin as a browser sends one in its
// Origin header: a scheme and a host, with a port perhaps, and nothing
// else (a final slash is let pass: OriginPolicy ignores it).
func isOrigin(s string) bool {
	u, err := url.Parse(s)
	return err == nil && u.Scheme != "" && u.Host != "" && u.User == nil && (u.Path == "" || u.Path == "/") &&
		!u.ForceQuery && u.RawQuery == "" && u.Fragment == "" && !strings.HasSuffix(u.Host, ":")
}

func (h *Handler) allowedOrigins(repl *caddy.Replacer) ([]string, error) {
	origins := make([]string, 0, len(h.AllowedOrigins))
	for _, origin := range h.AllowedOrigins {
		resolved := strings.TrimSpace(repl.ReplaceKnown(origin, ""))
		switch {
		case resolved == "":
			return nil, fmt.Errorf("allowed_origins %q is empty once its placeholders are replaced", origin)
		case strings.EqualFold(resolved, "null"):
			return nil, errors.New(`allowed_origins "null" would let any page in (sandboxed frames and data: documents send it): list real origins`)
		case resolved != "*" && !isOrigin(resolved):
			return nil, fmt.Errorf("allowed_origins %q is not an origin as browsers send it (scheme://host[:port], as https://app.example.com, without a path), nor \"*\": no request would match it", resolved)
		}
		origins = append(origins, resolved)
	}
	return origins, nil
}
