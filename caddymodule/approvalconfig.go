package caddymodule

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	jsonv2 "github.com/go-json-experiment/json"

	"github.com/mcpgate/mcpgate/caddymodule/approval"
	"github.com/mcpgate/mcpgate/caddymodule/subdirective"
)

// Approval defaults.
const (
	defaultApprovalTimeout   = 10 * time.Minute
	defaultApprovalKeepalive = 15 * time.Second
	// defaultApprovalHold stays under the 60 seconds after which many MCP
	// clients give up on a call.
	defaultApprovalHold = 50 * time.Second
	// defaultApprovalInstance names the approval service of handlers
	// that do not name one.
	defaultApprovalInstance = "default"
)

// Approval store types.
const (
	storeMemory = "memory"
	storeRedis  = "redis"
)

// ApprovalConfig holds the tool calls that the policy answers with
// needs_approval until a person decides: an approval request goes out as a
// signed webhook, and the call is forwarded only once a signed approve
// comes back (to mcp_approvals, the admin API or the inbox page).
type ApprovalConfig struct {
	// Webhooks are the receivers that approval events
	// (approval.requested, approval.cancelled, approval.expired) are
	// POSTed to, signed as Standard Webhooks: each a URL, which gets the
	// event as JSON, or an object whose template renders what it gets
	// (see Webhook). At least one is required.
	Webhooks []Webhook `json:"webhooks,omitempty"`

	// WebhookSecrets are the Standard Webhooks secrets ("whsec_" and a
	// base64 key of at least 24 bytes) that sign webhooks: each webhook
	// carries one signature per secret, so receivers can rotate at their
	// own pace. At least one is required. Placeholders such as
	// {env.MCP_WEBHOOK_SECRET} are replaced.
	WebhookSecrets []string `json:"webhook_secrets,omitempty"`

	// DecisionSecrets are the Standard Webhooks secrets that verify
	// decision callbacks: one signed with any of them is authentic. New
	// approvals are bound to the first; list a new secret first and keep
	// the old one until the approvals announced under it are settled. At
	// least one is required, and none may also be a webhook secret, so
	// that receiving approval requests does not confer the power to
	// decide them. Placeholders are replaced.
	DecisionSecrets []string `json:"decision_secrets,omitempty"`

	// CallbackURL is the URL at which mcp_approvals is reached; decisions
	// are POSTed to CallbackURL/<id>. Required.
	CallbackURL string `json:"callback_url,omitempty"`

	// InboxURL is the URL of the inbox page, where mcp_approvals with an
	// inbox is mounted (e.g. https://gw.example.com/approvals/). When
	// set, webhook events carry a link to each approval there
	// (inbox_url: InboxURL?approval=<id>). It may have no query or
	// fragment. Placeholders are replaced. Optional.
	InboxURL string `json:"inbox_url,omitempty"`

	// Timeout is how long a call waits for a decision before it is
	// refused, and how long a decision waits for the call to be made
	// again. Default: 10m.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// Keepalive is how often a held call whose client sent a progress
	// token gets a notifications/progress. Default: 15s.
	Keepalive caddy.Duration `json:"keepalive,omitempty"`

	// Hold is the longest a call is held in one request. With no decision
	// by then, the client gets a tool result saying the approval is
	// pending, and the same call, made again, waits on the same approval
	// (or runs, once approved). Default: 50s.
	Hold caddy.Duration `json:"hold,omitempty"`

	// Store is where pending approvals live: "memory" (default; they
	// survive config reloads, not restarts) or "redis" (shared by every
	// gateway using the same Redis).
	Store string `json:"store,omitempty"`

	// Redis is the Redis address when Store is "redis": host:port, or a
	// redis:// or rediss:// URL.
	Redis string `json:"redis,omitempty"`

	// Instance names this handler's approval service. Handlers with the
	// same store and instance share one service (and its last loaded
	// settings); mcp_approvals can be tied to one instance. Default:
	// "default".
	Instance string `json:"instance,omitempty"`
}

// Webhook is a receiver of approval events. In JSON it is either a URL
// string, which gets each event as JSON, or an object:
//
//	{"url": "https://hooks.slack.com/services/...", "template": "slack.json.tmpl"}
type Webhook struct {
	// URL is where events are POSTed. Placeholders such as
	// {env.SLACK_WEBHOOK_URL} are replaced. Required.
	URL string `json:"url"`

	// Template is the path of a Go text/template file that renders the
	// body of each event; the template's data is the event (the JSON
	// members' Go names: .Type, .ID, .Tool.Name, .Tool.Arguments,
	// .Reason, .User.ID, .InboxURL, ...), and besides text/template's own
	// functions it can call json, jsonIndent, truncate, join and
	// slackEscape. It is read when the config loads. Placeholders are
	// replaced. Default: none, the event is sent as JSON.
	Template string `json:"template,omitempty"`

	// ContentType is the media type of what the template renders.
	// With a JSON type (application/json or a +json one), a rendering
	// that is not valid JSON is logged and not sent. Only with a
	// template. Default: application/json.
	ContentType string `json:"content_type,omitempty"`
}

// UnmarshalJSON reads a webhook from a URL string or an object.
func (w *Webhook) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.HasPrefix(b, []byte(`"`)):
		*w = Webhook{}
		return json.Unmarshal(b, &w.URL)
	case bytes.HasPrefix(b, []byte("{")):
		// fields is Webhook without its methods. Read strictly, as the
		// handler is (see Handler.UnmarshalJSON): a member in another
		// case than its name's ("URL") is refused, not taken for it.
		type fields Webhook
		var f fields
		if err := jsonv2.Unmarshal(b, &f, jsonv2.RejectUnknownMembers(true)); err != nil {
			return fmt.Errorf("approval webhook: %w", err)
		}
		*w = Webhook(f)
		return nil
	default:
		return fmt.Errorf("approval webhook: want a URL or an object of url, template and content_type, got %s", b)
	}
}

// MarshalJSON writes a webhook without a template as its URL string.
func (w Webhook) MarshalJSON() ([]byte, error) {
	if w.Template == "" && w.ContentType == "" {
		return json.Marshal(w.URL)
	}
	type fields Webhook
	return json.Marshal(fields(w))
}

// unmarshalApproval reads an approval block:
//
//	approval {
//		webhook <url>...
//		webhook <url> {
//			template <path>
//			content_type <media type>
//		}
//		webhook_secret <whsec_...>...
//		decision_secret <whsec_...>...
//		callback_url <url>
//		inbox_url <url>
//		timeout <duration>
//		keepalive <duration>
//		hold <duration>
//		store memory|redis <address>
//		instance <name>
//	}
func unmarshalApproval(d *caddyfile.Dispenser) (*ApprovalConfig, error) {
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	c := new(ApprovalConfig)
	given := subdirective.Once{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if err := given.Check(d, "callback_url", "inbox_url", "timeout", "keepalive", "hold", "store", "instance"); err != nil {
			return nil, err
		}
		switch d.Val() {
		case "webhook":
			webhooks, err := unmarshalWebhook(d)
			if err != nil {
				return nil, err
			}
			c.Webhooks = append(c.Webhooks, webhooks...)
		case "webhook_secret":
			secrets := d.RemainingArgs()
			if len(secrets) == 0 {
				return nil, d.ArgErr()
			}
			c.WebhookSecrets = append(c.WebhookSecrets, secrets...)
		case "decision_secret":
			secrets := d.RemainingArgs()
			if len(secrets) == 0 {
				return nil, d.ArgErr()
			}
			c.DecisionSecrets = append(c.DecisionSecrets, secrets...)
		case "callback_url":
			if !d.AllArgs(&c.CallbackURL) {
				return nil, d.ArgErr()
			}
		case "inbox_url":
			if !d.AllArgs(&c.InboxURL) {
				return nil, d.ArgErr()
			}
		case "timeout":
			if err := positiveDuration(d, &c.Timeout); err != nil {
				return nil, err
			}
		case "keepalive":
			if err := positiveDuration(d, &c.Keepalive); err != nil {
				return nil, err
			}
		case "hold":
			if err := positiveDuration(d, &c.Hold); err != nil {
				return nil, err
			}
		case "store":
			args := d.RemainingArgs()
			switch {
			case len(args) == 1 && args[0] == storeMemory:
				c.Store = storeMemory
			case len(args) == 2 && args[0] == storeRedis:
				c.Store, c.Redis = storeRedis, args[1]
			default:
				return nil, d.Err("store: want `memory` or `redis <address>`")
			}
		case "instance":
			if !d.AllArgs(&c.Instance) {
				return nil, d.ArgErr()
			}
		default:
			return nil, d.Errf("unrecognized approval subdirective %q", d.Val())
		}
	}
	return c, nil
}

// unmarshalWebhook reads a webhook line: one or more URLs, or one URL
// and a block setting its template.
func unmarshalWebhook(d *caddyfile.Dispenser) ([]Webhook, error) {
	urls := d.RemainingArgs()
	if len(urls) == 0 {
		return nil, d.ArgErr()
	}
	webhooks := make([]Webhook, len(urls))
	for i, u := range urls {
		webhooks[i].URL = u
	}
	given := subdirective.Once{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if len(urls) > 1 {
			return nil, d.Err("webhook: a webhook with a block takes one URL")
		}
		if err := given.Check(d, "template", "content_type"); err != nil {
			return nil, err
		}
		switch d.Val() {
		case "template":
			if !d.AllArgs(&webhooks[0].Template) {
				return nil, d.ArgErr()
			}
		case "content_type":
			if !d.AllArgs(&webhooks[0].ContentType) {
				return nil, d.ArgErr()
			}
		default:
			return nil, d.Errf("unrecognized webhook subdirective %q", d.Val())
		}
	}
	return webhooks, nil
}

// positiveDuration reads the subdirective's one argument, a positive
// duration, into to.
func positiveDuration(d *caddyfile.Dispenser, to *caddy.Duration) error {
	name := d.Val()
	var value string
	if !d.AllArgs(&value) {
		return d.ArgErr()
	}
	duration, err := caddy.ParseDuration(value)
	if err != nil || duration <= 0 {
		return d.Errf("%s: invalid duration %q", name, value)
	}
	*to = caddy.Duration(duration)
	return nil
}

// validate checks what can be checked before placeholders are replaced.
func (c *ApprovalConfig) validate() error {
	if len(c.Webhooks) == 0 {
		return errors.New("approval: at least one webhook is required")
	}
	for _, w := range c.Webhooks {
		if w.URL == "" {
			return errors.New("approval: a webhook needs a url")
		}
		if w.ContentType != "" && w.Template == "" {
			return fmt.Errorf("approval: webhook %s: content_type needs a template (without one, the event is sent as JSON)", approval.Receiver(w.URL))
		}
	}
	if len(c.WebhookSecrets) == 0 {
		return errors.New("approval: a webhook secret is required")
	}
	if len(c.DecisionSecrets) == 0 {
		return errors.New("approval: a decision secret is required")
	}
	if c.CallbackURL == "" {
		return errors.New("approval: callback_url is required")
	}
	switch c.Store {
	case "", storeMemory:
		if c.Redis != "" {
			return errors.New("approval: a redis address needs store redis")
		}
	case storeRedis:
		if c.Redis == "" {
			return errors.New("approval: store redis needs an address")
		}
	default:
		return fmt.Errorf("approval: unknown store %q, want memory or redis", c.Store)
	}
	for _, d := range []struct {
		name     string
		value    caddy.Duration
		min, max time.Duration
	}{
		// Past these a setting is a mistake: a keepalive of a nanosecond
		// sends a held client progress as fast as it can be written; an
		// approval that waits a year for a decision is never decided.
		{"timeout", c.Timeout, time.Nanosecond, 7 * 24 * time.Hour},
		{"keepalive", c.Keepalive, 100 * time.Millisecond, 10 * time.Minute},
		{"hold", c.Hold, time.Nanosecond, time.Hour},
	} {
		if d.value != 0 && (time.Duration(d.value) < d.min || time.Duration(d.value) > d.max) {
			return fmt.Errorf("approval: %s must be from %s to %s, got %s", d.name, d.min, d.max, time.Duration(d.value))
		}
	}
	return nil
}

// resolved is an approval configuration with placeholders replaced and
// defaults applied.
type resolvedApproval struct {
	settings  approval.Settings
	keepalive time.Duration
	hold      time.Duration
	store     string
	redis     string
	// redisDatabase is the database redis reaches, and redisConnection
	// how (approval.RedisDatabase).
	redisDatabase, redisConnection string
	instance                       string
	// audited says whether the handler writes audit records: the service
	// writes the records of approvals settled with the audit logger of
	// whichever of its handlers loaded last.
	audited bool
}

// resolve replaces placeholders, applies defaults and checks the values.
func (c *ApprovalConfig) resolve(repl *caddy.Replacer) (*resolvedApproval, error) {
	r := &resolvedApproval{
		keepalive: durationOr(c.Keepalive, defaultApprovalKeepalive),
		hold:      durationOr(c.Hold, defaultApprovalHold),
		store:     c.Store,
		redis:     repl.ReplaceKnown(c.Redis, ""),
		instance:  c.Instance,
	}
	if r.store == "" {
		r.store = storeMemory
	}
	if r.store == storeRedis {
		var err error
		if r.redisDatabase, r.redisConnection, err = approval.RedisDatabase(r.redis); err != nil {
			return nil, fmt.Errorf("approval: %w", err)
		}
	}
	if r.instance == "" {
		r.instance = defaultApprovalInstance
	}
	r.settings.Timeout = durationOr(c.Timeout, defaultApprovalTimeout)
	var err error
	if r.settings.WebhookSecrets, err = parseSecrets(repl, "webhook_secrets", c.WebhookSecrets); err != nil {
		return nil, err
	}
	if r.settings.DecisionSecrets, err = parseSecrets(repl, "decision_secrets", c.DecisionSecrets); err != nil {
		return nil, err
	}
	if err := approval.CheckDistinctSecrets(r.settings.WebhookSecrets, r.settings.DecisionSecrets); err != nil {
		return nil, fmt.Errorf("approval: %w", err)
	}
	callback := repl.ReplaceKnown(c.CallbackURL, "")
	if _, err := absoluteURL(callback); err != nil {
		return nil, fmt.Errorf("approval: callback_url: %q %w", callback, err)
	}
	r.settings.CallbackURL = strings.TrimSuffix(callback, "/")
	if c.InboxURL != "" {
		if r.settings.InboxURL, err = inboxURL(repl.ReplaceKnown(c.InboxURL, "")); err != nil {
			return nil, fmt.Errorf("approval: inbox_url: %w", err)
		}
	}
	for _, w := range c.Webhooks {
		webhook, err := w.resolve(repl)
		if err != nil {
			return nil, fmt.Errorf("approval: webhook %s: %w", approval.Receiver(repl.ReplaceKnown(w.URL, "")), err)
		}
		r.settings.Webhooks = append(r.settings.Webhooks, webhook)
	}
	return r, nil
}

// resolve replaces the webhook's placeholders, checks its URL and
// content type, and loads its template.
func (w *Webhook) resolve(repl *caddy.Replacer) (approval.Webhook, error) {
	u := repl.ReplaceKnown(w.URL, "")
	if _, err := absoluteURL(u); err != nil {
		// Not the URL itself: its path is often the webhook's credential.
		return approval.Webhook{}, fmt.Errorf("the url %w", err)
	}
	webhook := approval.Webhook{URL: u, ContentType: w.ContentType}
	if w.ContentType != "" {
		if _, _, err := mime.ParseMediaType(w.ContentType); err != nil {
			return approval.Webhook{}, fmt.Errorf("content_type %q: %w", w.ContentType, err)
		}
	}
	if w.Template != "" {
		template, err := approval.LoadTemplate(repl.ReplaceKnown(w.Template, ""))
		if err != nil {
			return approval.Webhook{}, err
		}
		webhook.Template = template
	}
	return webhook, nil
}

// inboxURL checks that s is an absolute http(s) URL to which a query can
// be added.
func inboxURL(s string) (string, error) {
	u, err := absoluteURL(s)
	if err != nil {
		return "", fmt.Errorf("%q %w", s, err)
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return "", fmt.Errorf("%q has a query or fragment; the inbox link adds ?approval=<id>", s)
	}
	return s, nil
}

// parseSecrets replaces the placeholders in the secrets of the field and
// reads them.
func parseSecrets(repl *caddy.Replacer, field string, secrets []string) ([]approval.Secret, error) {
	parsed := make([]approval.Secret, len(secrets))
	for i, secret := range secrets {
		var err error
		if parsed[i], err = approval.ParseSecret(repl.ReplaceKnown(secret, "")); err != nil {
			return nil, fmt.Errorf("approval: %s: %w", field, err)
		}
	}
	return parsed, nil
}

// poolKey names the approval service a handler uses: the store's identity
// (for Redis, the database its address reaches, however it is spelt) and
// the instance. Handlers of one config that name distinct instances get
// distinct services even over one Redis (as two replicas would).
func (r *resolvedApproval) poolKey() string {
	if r.store == storeRedis {
		return storeRedis + "|" + r.redisDatabase + "|" + r.instance
	}
	return storeMemory + "|" + r.instance
}

func durationOr(d caddy.Duration, fallback time.Duration) time.Duration {
	if d > 0 {
		return time.Duration(d)
	}
	return fallback
}

// absoluteURL reads s, an absolute http or https URL. Its error does not
// quote s (a webhook URL is often its credential): callers name it.
func absoluteURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errNotAbsoluteURL
	}
	return u, nil
}

// errNotAbsoluteURL is absoluteURL's error.
var errNotAbsoluteURL = errors.New("is not an absolute http(s) URL")

// fingerprint names the settings that handlers sharing one approval
// service (one store and instance) must agree on: the service runs with
// one set, and a second handler's would silently replace the first's
// (its webhooks, and who may decide its calls).
func (r *resolvedApproval) fingerprint() string {
	var b strings.Builder
	for _, w := range r.settings.Webhooks {
		fmt.Fprintf(&b, "webhook %q %q\n", w.URL, w.ContentType)
	}
	for _, secret := range r.settings.WebhookSecrets {
		fmt.Fprintf(&b, "webhook secret %s\n", secret.ID())
	}
	for _, secret := range r.settings.DecisionSecrets {
		fmt.Fprintf(&b, "decision secret %s\n", secret.ID())
	}
	fmt.Fprintf(&b, "callback %q inbox %q timeout %s hold %s keepalive %s\n",
		r.settings.CallbackURL, r.settings.InboxURL, r.settings.Timeout, r.hold, r.keepalive)
	// One service connects one way: handlers naming its Redis with TLS
	// and without, or with two passwords, disagree.
	fmt.Fprintf(&b, "redis %s\n", r.redisConnection)
	fmt.Fprintf(&b, "audit %t\n", r.audited)
	return b.String()
}
