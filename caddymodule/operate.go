package caddymodule

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/mcpgate/mcpgate/caddymodule/gateway"
	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
	"github.com/mcpgate/mcpgate/caddymodule/policy"
	"github.com/mcpgate/mcpgate/caddymodule/ratelimit"
	"github.com/mcpgate/mcpgate/caddymodule/subdirective"
)

// This file shows the rest of Caddy what the gateway learns of each
// message (placeholders and variables), and configures what operators
// add: rate limits and the audit trail.

// placeholders maps the names of mcpgate's placeholders (and variables)
// to the facts they hold.
var placeholders = map[string]func(gateway.Facts) string{
	"mcp.method":           func(f gateway.Facts) string { return f.Method },
	"mcp.tool.name":        func(f gateway.Facts) string { return f.ToolName },
	"mcp.tool.category":    func(f gateway.Facts) string { return f.ToolCategory },
	"mcp.server":           func(f gateway.Facts) string { return f.Server },
	"mcp.session":          func(f gateway.Facts) string { return f.Session },
	"mcp.user.id":          func(f gateway.Facts) string { return f.UserID },
	"mcp.user.realm":       func(f gateway.Facts) string { return f.UserRealm },
	"mcp.decision.action":  func(f gateway.Facts) string { return f.Action },
	"mcp.decision.reason":  func(f gateway.Facts) string { return f.Reason },
	"mcp.protocol_version": func(f gateway.Facts) string { return f.ProtocolVersion },
}

// annotate sets mcpgate's placeholders ({mcp.tool.name}, ...) and the
// variables of the same names (for the vars matcher and
// {http.vars.mcp.tool.name}) on the request, for the rest of the route.
// The placeholders are answered from the facts when they are asked for,
// by one provider added to the request's replacer on the first call (a
// later call, for the same request, replaces the facts it answers from);
// the variables are set, since the vars matcher reads them as they are.
func annotate(r *http.Request, facts gateway.Facts) {
	// The variables map is found once, rather than by caddyhttp.SetVar
	// for each variable: each lookup walks the request context's chain.
	// (SetVar's one other effect, deleting a variable set to nil, never
	// applies: every value is a string.)
	if vars, ok := r.Context().Value(caddyhttp.VarsCtxKey).(map[string]any); ok {
		for name, get := range placeholders {
			vars[name] = get(facts)
		}
	}
	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if repl == nil {
		return
	}
	if known, ok := repl.Get(annotationKey); ok {
		if a, ok := known.(*annotation); ok {
			a.facts = facts
			return
		}
	}
	a := &annotation{facts: facts}
	repl.Map(a.placeholder)
}

// annotateNoMessage annotates a request of a route that read no MCP
// message (mcp_bypass, mcp_approvals) with empty facts, unless an
// mcp_policy before it on the route annotated it: its placeholders read
// empty, not as written.
func annotateNoMessage(r *http.Request) {
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		if _, annotated := repl.Get(annotationKey); annotated {
			return
		}
	}
	annotate(r, gateway.Facts{})
}

// annotationKey is the placeholder under which a request's replacer finds
// its annotation; no configuration can name it.
const annotationKey = "mcp\x00annotation"

// annotation is what a request's replacer answers mcpgate's placeholders
// from.
type annotation struct {
	facts gateway.Facts
}

// placeholder answers the value of one of mcpgate's placeholders.
func (a *annotation) placeholder(key string) (any, bool) {
	if !strings.HasPrefix(key, "mcp") {
		return nil, false
	}
	if key == annotationKey {
		return a, true
	}
	if get, ok := placeholders[key]; ok {
		return get(a.facts), true
	}
	return nil, false
}

// RateLimit limits how often messages pass through the gateway, per key.
// Over the limit, a tools/call is answered with a tool result (isError)
// that says when to retry, any other request with a JSON-RPC error
// (-31429), and the HTTP response carries Retry-After; nothing over the
// limit reaches the upstream. Counts live in the process, or, when the
// approval store is Redis, in that Redis, shared by replicas.
type RateLimit struct {
	// Key is what calls count against, with placeholders: mcpgate's
	// ({mcp.user.id}, {mcp.tool.name}, {mcp.tool.category}, ...) and any
	// of the request's ({http.vars.client_ip}, ...). Example:
	// "{mcp.user.id}/{mcp.tool.name}".
	Key string `json:"key"`
	// Rate is how many calls per period: "30/1m", "1000/1h", "5/1d".
	Rate string `json:"rate"`
	// Burst is how many calls may come at once. Default: the rate's
	// count.
	Burst int `json:"burst,omitempty"`
	// Methods are the methods counted. Default: tools/call.
	Methods []string `json:"methods,omitempty"`
	// Actions are the decisions counted: allow, needs_approval. Default:
	// both. With needs_approval alone, the limit bounds how often callers
	// ask for approval.
	Actions []string `json:"actions,omitempty"`
}

// actions are the decisions the limit counts, as the gateway names them;
// nil for all.
func (l *RateLimit) actions() []policy.Action {
	var actions []policy.Action
	for _, a := range l.Actions {
		actions = append(actions, policy.Action(a))
	}
	return actions
}

// limitActions are the decisions a rate limit can count (a blocked
// message never counts).
var limitActions = []string{string(policy.ActionAllow), string(policy.ActionNeedsApproval)}

// rule reads the limit's rate and burst.
func (l *RateLimit) rule() (ratelimit.Rule, error) {
	events, per, err := ratelimit.ParseRate(l.Rate)
	if err != nil {
		return ratelimit.Rule{}, fmt.Errorf("rate_limit %s: %w", l.Key, err)
	}
	rule := ratelimit.Rule{Events: events, Per: per, Burst: l.Burst}
	if err := rule.Validate(); err != nil {
		return ratelimit.Rule{}, fmt.Errorf("rate_limit %s: %w", l.Key, err)
	}
	if strings.TrimSpace(l.Key) == "" {
		return ratelimit.Rule{}, errors.New("rate_limit: a key is required")
	}
	keys, unbalanced := keyPlaceholders(l.Key)
	if unbalanced {
		// An unclosed placeholder is kept as written: every caller would
		// share one count.
		return ratelimit.Rule{}, fmt.Errorf("rate_limit %s: a placeholder is not closed (or a brace not opened): write {name}, and \\{ for a brace of the key's own", l.Key)
	}
	if name := unknownMCPPlaceholder(keys); name != "" {
		// Unknown, it would be replaced by nothing: every caller would
		// share one count.
		return ratelimit.Rule{}, fmt.Errorf("rate_limit %s: {%s} is no placeholder of mcpgate's (they are %s)", l.Key, name, strings.Join(slices.Sorted(maps.Keys(placeholders)), ", "))
	}
	for _, method := range l.Methods {
		if err := mcpmsg.CheckClientRequestMethod(method); err != nil {
			return ratelimit.Rule{}, fmt.Errorf("rate_limit %s: %w: a limit counts only client requests", l.Key, err)
		}
	}
	for _, action := range l.Actions {
		if !slices.Contains(limitActions, action) {
			return ratelimit.Rule{}, fmt.Errorf("rate_limit %s: unknown action %q (want %s)", l.Key, action, strings.Join(limitActions, " or "))
		}
	}
	return rule, nil
}

// callerApart are the placeholders, and the prefixes of placeholders,
// whose value tells callers apart without an identity: the session, the
// client's address, what its request carries of its own. A key by the
// caller's id without an identity is one count for every caller unless
// it holds one of them (a placeholder known to be the same for every
// caller, or one not known at all, does not count: the check fails
// safe).
var callerApart = []string{
	"mcp.session", "client_ip", "http.request.remote", "http.request.header.", "http.request.cookie.",
	"http.request.tls.client.", "http.request.uri.query.",
}

// userPlaceholder returns the first placeholder of the limit's key that
// names the caller ({mcp.user.id}, or its variable
// {http.vars.mcp.user.id}), when no other placeholder of the key tells
// callers apart (callerApart); else "".
func (l *RateLimit) userPlaceholder() string {
	keys, _ := keyPlaceholders(l.Key)
	user := ""
	for _, name := range keys {
		bare := strings.TrimPrefix(name, varsPrefix)
		if strings.HasPrefix(bare, "mcp.user.") {
			if user == "" {
				user = name
			}
			continue
		}
		for _, apart := range callerApart {
			if strings.HasPrefix(bare, apart) {
				return ""
			}
		}
	}
	return user
}

// methods are the methods the limit counts, sorted, without repeats.
func (l *RateLimit) methods() []string {
	if len(l.Methods) == 0 {
		return []string{"tools/call"}
	}
	methods := slices.Clone(l.Methods)
	slices.Sort(methods)
	return slices.Compact(methods)
}

// identity names the limit's counts apart from other limits' over the same
// template: the methods and decisions it counts. (The rule, its rate and
// burst, is part of every bucket's name already.) Two limits with one
// template and rate but other methods or actions are two limits, each
// counting its own messages, never one count that both use up.
func (l *RateLimit) identity() string {
	parts := l.methods()
	for i, m := range parts {
		parts[i] = escapeKeyPart(m)
	}
	actions := l.Actions
	if len(actions) == 0 {
		actions = limitActions
	}
	return strings.Join(parts, ",") + ";" + strings.Join(slices.Compact(slices.Sorted(slices.Values(actions))), ",")
}

// keyOf returns the limit's key function: its placeholders replaced with
// the message's facts, then the request's, each value escaped (see
// escapeKeyPart) so that the key's own separators cannot be forged; after
// the scope and the limit's identity.
func (l *RateLimit) keyOf(scope string) func(*http.Request, gateway.Facts) string {
	prefix := scope + "\x00" + l.identity() + "\x00"
	return func(r *http.Request, facts gateway.Facts) string {
		requestRepl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
		repl := caddy.NewEmptyReplacer()
		repl.Map(func(key string) (any, bool) {
			// The variables of mcpgate's facts ({http.vars.mcp.tool.name})
			// are set on the request only after its limits are counted
			// (annotate): they are answered from the message's facts, as
			// the placeholders of the same names are.
			if get, ok := placeholders[strings.TrimPrefix(key, varsPrefix)]; ok {
				return escapeKeyPart(get(facts)), true
			}
			if requestRepl != nil {
				if value, ok := requestRepl.Get(key); ok {
					return escapeKeyPart(caddy.ToString(value)), true
				}
			}
			return nil, false
		})
		return boundedKey(prefix, prefix+repl.ReplaceAll(l.Key, ""))
	}
}

// varsPrefix is how a placeholder names one of the request's variables.
const varsPrefix = "http.vars."

// keyPlaceholders returns the placeholders a key template names, as
// Caddy's replacer reads it (its escapes and nesting), and whether a
// brace is left that opens or closes none ("{mcp.tool.name", "mcp}"),
// which the replacer keeps as written, or opens one inside another
// ("{{mcp.user.id}", a placeholder named "{mcp.user.id", which none is).
func keyPlaceholders(template string) (keys []string, unbalanced bool) {
	repl := caddy.NewEmptyReplacer()
	repl.Map(func(key string) (any, bool) {
		keys = append(keys, key)
		return "", true
	})
	if _, err := repl.ReplaceOrErr(template, false, false); err != nil {
		return keys, true // too many left open
	}
	for _, key := range keys {
		if strings.Contains(key, "{") {
			return keys, true // "{{mcp.user.id}" names "{mcp.user.id", no placeholder
		}
	}
	// Escaped braces are the key's own: taken out, any brace left in what
	// the replacer gives back is one it read as no placeholder's.
	empty := caddy.NewEmptyReplacer()
	empty.Map(func(string) (any, bool) { return "", true })
	left, err := empty.ReplaceOrErr(withoutEscapedBraces(template), false, false)
	return keys, err != nil || strings.ContainsAny(left, "{}")
}

// withoutEscapedBraces is template without the braces Caddy's replacer
// reads as escaped (those after a backslash), nor their backslashes.
func withoutEscapedBraces(template string) string {
	var b strings.Builder
	for i := 0; i < len(template); i++ {
		if template[i] == '\\' && i+1 < len(template) && (template[i+1] == '{' || template[i+1] == '}') {
			i++
			continue
		}
		b.WriteByte(template[i])
	}
	return b.String()
}

// unknownMCPPlaceholder returns the first placeholder of a key template
// that names one of mcpgate's ({mcp.*}, {http.vars.mcp.*}) that does not
// exist, or "".
func unknownMCPPlaceholder(keys []string) string {
	for _, name := range keys {
		mcp := strings.TrimPrefix(name, varsPrefix)
		if _, known := placeholders[mcp]; strings.HasPrefix(mcp, "mcp.") && !known {
			return name
		}
	}
	return ""
}

// maxKeyLength is the longest rate limit key kept as it is; a longer one
// (a placeholder of a header's value, say) is kept as its SHA-256, so that
// what a key costs does not grow with what a client sends.
const maxKeyLength = 256

// boundedKey is key, or, past maxKeyLength, its prefix (its limit's) and
// the SHA-256 of the whole.
func boundedKey(prefix, key string) string {
	if len(key) <= maxKeyLength {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	return prefix + "sha256:" + hex.EncodeToString(sum[:])
}

// escapeKeyPart escapes a placeholder's value in a rate limit's key: every
// byte but ASCII letters and digits becomes %XX, so that no value holds a
// separator the key's template puts between values ("/", ":", "-", ...),
// and user "a/b" calling tool "c" is never user "a" calling "b/c".
// (url.PathEscape and its kin leave some separators as they are.)
func escapeKeyPart(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// rateLimits builds the gateway's rate limits, over Redis when redisAddr
// is set, else over counts this process keeps for each limit of the
// upstream (across reloads). The returned function releases what was
// built.
func (h *Handler) rateLimits(redisAddr, upstream string) (_ []gateway.RateLimit, _ func(), err error) {
	var releases []func()
	releaseAll := func() {
		for _, r := range slices.Backward(releases) {
			r()
		}
	}
	defer func() {
		if err != nil {
			releaseAll()
		}
	}()
	var shared ratelimit.Limiter
	if redisAddr != "" && len(h.RateLimits) > 0 {
		client, releaseRedis, err := loadRedis(redisAddr)
		if err != nil {
			return nil, nil, err
		}
		releases = append(releases, releaseRedis)
		shared = ratelimit.NewRedis(client, "mcpgate:")
	}
	limits := make([]gateway.RateLimit, 0, len(h.RateLimits))
	given := make(map[string]bool, len(h.RateLimits))
	for i := range h.RateLimits {
		l := &h.RateLimits[i]
		rule, err := l.rule()
		if err != nil {
			return nil, nil, err
		}
		// A limit given twice would count each message twice, against one
		// count.
		same := fmt.Sprintf("%q %s %+v", l.Key, l.identity(), rule)
		if given[same] {
			return nil, nil, fmt.Errorf("rate_limit %s %s is given twice (with the same methods and actions): each message would be counted twice against it", l.Key, l.Rate)
		}
		given[same] = true
		limiter := shared
		if limiter == nil {
			// Counts of its own, bounded on their own: a client varying the
			// key of a cheap limit (a ping per address) would otherwise
			// push a strict limit's counts out, and start them full.
			key := upstream + "\x00" + same
			local, err := loadLocalLimiter(key)
			if err != nil {
				return nil, nil, err
			}
			releases = append(releases, func() { releaseLocalLimiter(key) })
			limiter = local
		}
		limits = append(limits, gateway.RateLimit{
			Name: l.Key + " " + l.Rate, Key: l.keyOf(upstream), Rule: rule, Methods: l.Methods, Actions: l.actions(), Limiter: limiter,
		})
	}
	return limits, releaseAll, nil
}

// unmarshalRateLimit parses `rate_limit <key> <rate> [burst <n>] [{
// methods <method>...; actions <action>... }]`.
func unmarshalRateLimit(d *caddyfile.Dispenser) (RateLimit, error) {
	var l RateLimit
	if !d.Args(&l.Key, &l.Rate) {
		return l, d.ArgErr()
	}
	if d.NextArg() {
		if d.Val() != "burst" || !d.NextArg() {
			return l, d.Err("rate_limit: want `burst <n>` after the rate")
		}
		burst, err := strconv.Atoi(d.Val())
		if err != nil || burst <= 0 {
			return l, d.Errf("rate_limit: invalid burst %q: want a whole number above 0", d.Val())
		}
		l.Burst = burst
	}
	if d.NextArg() {
		return l, d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		subdirective := d.Val()
		values := d.RemainingArgs()
		if len(values) == 0 {
			return l, d.ArgErr()
		}
		switch subdirective {
		case "methods":
			l.Methods = append(l.Methods, values...)
		case "actions":
			l.Actions = append(l.Actions, values...)
		default:
			return l, d.Errf("rate_limit: unrecognized subdirective %q", subdirective)
		}
	}
	if _, err := l.rule(); err != nil {
		return l, d.Err(err.Error())
	}
	return l, nil
}

// AuditConfig writes the audit trail: one record per message the gateway
// decided or refused, and one per approval settled, to the logger named
// mcpgate.audit, which Caddy's log configuration can send to a sink of
// its own (`log audit { include mcpgate.audit; output file audit.log }`).
type AuditConfig struct {
	// Arguments records tool calls' arguments in full; by default, their
	// SHA-256 only (they often hold personal or secret data).
	Arguments bool `json:"arguments,omitempty"`
	// Claims names the caller's claims to record.
	Claims []string `json:"claims,omitempty"`
}

// auditLog names the audit trail's logger in Caddy's logging.
type auditLog struct{}

// CaddyModule names the logger; it is not a module anyone loads.
func (auditLog) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "mcpgate.audit"}
}

// audit builds the gateway's audit trail.
func (c *AuditConfig) audit(ctx caddy.Context) *gateway.Audit {
	return &gateway.Audit{Logger: ctx.Logger(auditLog{}), Arguments: c.Arguments, Claims: c.Claims}
}

// unmarshalAudit parses `audit [{ arguments; claims <name>... }]`.
func unmarshalAudit(d *caddyfile.Dispenser) (*AuditConfig, error) {
	c := new(AuditConfig)
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	given := subdirective.Once{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if err := given.Check(d, "arguments"); err != nil {
			return nil, err
		}
		switch d.Val() {
		case "arguments":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			c.Arguments = true
		case "claims":
			claims := d.RemainingArgs()
			if len(claims) == 0 {
				return nil, d.ArgErr()
			}
			c.Claims = append(c.Claims, claims...)
		default:
			return nil, d.Errf("audit: unrecognized subdirective %q", d.Val())
		}
	}
	return c, nil
}
