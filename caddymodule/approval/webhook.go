package approval

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/template"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/mcpgate/mcpgate/caddymodule/display"
)

// The types of the webhooks the gateway sends.
const (
	// EventRequested asks for a decision.
	EventRequested = "approval.requested"
	// EventCancelled says the caller cancelled the call or went away: a
	// decision is no longer wanted.
	EventCancelled = "approval.cancelled"
	// EventExpired says no decision came in time: the call was refused.
	EventExpired = "approval.expired"
)

// Event is the JSON body of a webhook, and what a webhook template
// renders.
type Event struct {
	// Type is one of EventRequested, EventCancelled, EventExpired.
	Type string `json:"type"`
	// Timestamp is when the event happened.
	Timestamp time.Time `json:"timestamp"`
	// ID is the approval's id, the last path segment of CallbackURL.
	ID string `json:"id"`
	// CallbackURL is where to POST the decision.
	CallbackURL string `json:"callback_url"`
	// InboxURL is the approval on the inbox page (see
	// Service.InboxLink); empty without an inbox.
	InboxURL string `json:"inbox_url,omitempty"`
	// Server is the upstream's logical name.
	Server string `json:"server"`
	// Tool is the call to approve.
	Tool EventTool `json:"tool"`
	// Reason is why the policy asked for approval.
	Reason string `json:"reason,omitempty"`
	// User is the caller, when the gateway knows who it is.
	User *EventUser `json:"user,omitempty"`
	// Session is the call's Mcp-Session-Id, if any.
	Session string `json:"session,omitempty"`
	// Approvers are the principals entitled to decide (see
	// Call.Approvers); absent when any reviewer may.
	Approvers []string `json:"approvers,omitempty"`
	// State is the approval's state when the event was sent.
	State State `json:"state"`
	// RequestedAt and ExpiresAt bound the time to decide.
	RequestedAt time.Time `json:"requested_at"`
	ExpiresAt   time.Time `json:"expires_at"`
	// SettledReason says why a cancelled approval was cancelled.
	SettledReason string `json:"settled_reason,omitempty"`
}

// EventTool is the tool call an approval is for.
type EventTool struct {
	Name string `json:"name"`
	// Hash names the definition the call was decided on (as `mcpgate
	// tools show` prints it): the approval runs the call only while the
	// upstream still offers that definition.
	Hash      string          `json:"hash,omitempty"`
	Arguments json.RawMessage `json:"arguments"`
}

// EventUser is the caller of the call an approval is for.
type EventUser struct {
	ID string `json:"id"`
}

// newEvent describes a for a webhook of the given type.
func newEvent(eventType string, a *Approval, settings *Settings, now time.Time) Event {
	e := Event{
		Type:        eventType,
		Timestamp:   now.UTC(),
		ID:          a.ID,
		CallbackURL: settings.CallbackURL + "/" + a.ID,
		InboxURL:    settings.inboxLink(a.ID),
		Server:      a.Server,
		Tool:        EventTool{Name: a.Tool, Hash: a.ToolHash, Arguments: a.Arguments},
		Reason:      a.Reason,
		Session:     a.Session,
		Approvers:   a.Approvers,
		State:       a.State,
		RequestedAt: a.RequestedAt.UTC(),
		ExpiresAt:   a.ExpiresAt.UTC(),
	}
	if a.User != "" {
		e.User = &EventUser{ID: a.User}
	}
	if a.State == Cancelled {
		e.SettledReason = a.DecisionReason
	}
	return e
}

// InboxLink returns the link to approval id on the inbox page, as webhook
// events carry it: Settings.InboxURL with ?approval=<id>; empty without
// an inbox URL.
func (s *Service) InboxLink(id string) string {
	return s.settings.Load().inboxLink(id)
}

// inboxLink is the link to approval id on the inbox page, if any.
func (s *Settings) inboxLink(id string) string {
	if s.InboxURL == "" {
		return ""
	}
	return s.InboxURL + "?approval=" + url.QueryEscape(id)
}

// Webhook is a receiver of approval events, and how the bodies it gets
// are made.
type Webhook struct {
	// URL is where the events are POSTed.
	URL string
	// Template, when set, renders each event (see LoadTemplate); nil
	// sends the Event as JSON.
	Template *template.Template
	// ContentType is the media type of the body; empty means
	// application/json. A template's output with a JSON media type
	// (application/json, or a +json one) must be valid JSON to be sent.
	ContentType string
}

// Render returns the body that the webhook gets for e: the template's
// output over e, or without a template, e as JSON. A template that fails,
// or renders invalid JSON for a JSON media type, is an error: its
// receiver is sent nothing rather than a malformed body.
func (w *Webhook) Render(e *Event) ([]byte, error) {
	if w.Template == nil {
		return json.Marshal(e)
	}
	var body bytes.Buffer
	if err := w.Template.Execute(&body, e); err != nil {
		return nil, fmt.Errorf("rendering webhook template: %w", err)
	}
	if isJSON(w.contentType()) {
		if err := json.Unmarshal(body.Bytes(), new(json.RawMessage)); err != nil {
			if syntax, ok := errors.AsType[*json.SyntaxError](err); ok {
				return nil, fmt.Errorf("webhook template %s rendered invalid JSON at byte %d: %w", w.Template.Name(), syntax.Offset, err)
			}
			return nil, fmt.Errorf("webhook template %s rendered invalid JSON: %w", w.Template.Name(), err)
		}
	}
	return body.Bytes(), nil
}

// contentType is the media type of the webhook's bodies.
func (w *Webhook) contentType() string {
	if w.ContentType == "" {
		return "application/json"
	}
	return w.ContentType
}

// isJSON reports whether the media type is JSON: application/json or a
// structured syntax suffix +json (RFC 6839).
func isJSON(contentType string) bool {
	mediaType, _, err := mime.ParseMediaType(contentType)
	return err == nil && (mediaType == "application/json" || strings.HasSuffix(mediaType, "+json"))
}

// LoadTemplate reads and parses the webhook template at path, a Go
// text/template over an Event. Errors name the file, and for syntax
// errors the line. Besides text/template's built-in functions, a
// template can call:
//
//	json v          v as JSON: strings quoted and escaped, to embed any
//	                value in a JSON body ({{json .Reason}})
//	jsonIndent v    v as indented JSON, for people to read
//	truncate n s    s cut to at most n characters, ending in "…" if cut
//	join sep list   the strings of list joined by sep
//	slackEscape s   s with &, < and > escaped, as Slack's mrkdwn text
//	                wants, so that no caller's text becomes a mention or
//	                a link
func LoadTemplate(path string) (*template.Template, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading webhook template: %w", err)
	}
	return parseTemplate(path, string(text))
}

// parseTemplate parses a webhook template named name.
func parseTemplate(name, text string) (*template.Template, error) {
	t, err := template.New(name).Funcs(templateFuncs).Parse(text)
	if err != nil {
		return nil, fmt.Errorf("parsing webhook template: %w", err)
	}
	return t, nil
}

// templateFuncs are the functions of webhook templates (see
// LoadTemplate).
var templateFuncs = template.FuncMap{
	"json": func(v any) (string, error) {
		return encodeJSON(v, "")
	},
	"jsonIndent": func(v any) (string, error) {
		return encodeJSON(v, "  ")
	},
	"truncate": truncate,
	"join": func(sep string, list []string) string {
		return strings.Join(list, sep)
	},
	"slackEscape": strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace,
	// line keeps a text of the call's (a tool's or server's name, which
	// the upstream chose, a caller's id) on one line, as the inbox and the
	// CLI show it: a line break in it cannot pass for a line of the
	// message's own.
	"line": display.Line,
	// visible shows free text of the call's (the arguments, a reason) as
	// the inbox does: line breaks kept, every other character that could
	// act on the display (a bidirectional override reordering what
	// follows, a zero-width character) made visible.
	"visible": display.Block,
	// cut cuts a text at n bytes with a note of how many were left out,
	// so that what the reader does not see is never taken for nothing
	// (truncate's bare "…" lets padding push the end of an argument out
	// of sight).
	"cut": func(n int, s string) string { return display.Cut(s, n) },
}

// encodeJSON encodes v as JSON, indented by indent if not empty, leaving
// HTML characters as they are (bodies are not HTML, and people read
// them).
func encodeJSON(v any, indent string) (string, error) {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", indent)
	if err := enc.Encode(v); err != nil {
		return "", err
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}

// truncate cuts s to at most n characters (runes), the last of them "…"
// when s was longer.
func truncate(n int, s string) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	if n <= 0 {
		return ""
	}
	end := 0
	for range n - 1 {
		_, size := utf8.DecodeRuneInString(s[end:])
		end += size
	}
	return s[:end] + "…"
}

// Delivery retries: the first retry after Settings.FirstRetry, each next
// one twice as late, never more than maxRetryDelay apart.
const (
	defaultFirstRetry = time.Second
	maxRetryDelay     = time.Minute
	attemptTimeout    = 10 * time.Second
)

// announce sends a webhook of the given type about a to every configured
// receiver, each in its own goroutine that the service owns. An
// approval.requested webhook is retried while the approval is pending;
// the others for as long as a decision could have taken (timeout).
func (s *Service) announce(eventType string, a *Approval) {
	settings := s.settings.Load()
	now := time.Now()
	event := newEvent(eventType, a, settings, now)
	// One webhook-id per event, kept across retries, so that receivers
	// can tell a retry from a new event.
	messageID := "msg_" + a.ID + "_" + eventType[len("approval."):]
	until, wanted := now.Add(settings.Timeout), func() bool { return true }
	if eventType == EventRequested {
		until = a.ExpiresAt
		wanted = func() bool {
			current, err := s.store.Get(s.ctx, a.ID)
			return err != nil || current.State == Pending
		}
	}
	for _, webhook := range settings.Webhooks {
		body, err := webhook.Render(&event)
		if err != nil {
			settings.Logger.Error("approval webhook not sent",
				zap.String("receiver", webhook.receiver()), zap.String("webhook_id", messageID), zap.Error(err))
			continue
		}
		select {
		case s.deliveries <- struct{}{}:
		default:
			settings.Logger.Error("approval webhook not sent: too many deliveries under way (receivers down, or a flood of held calls)",
				zap.String("receiver", webhook.receiver()), zap.String("webhook_id", messageID), zap.Int("deliveries", maxDeliveries))
			continue
		}
		s.work.Go(func() {
			defer func() { <-s.deliveries }()
			s.deliver(settings, &webhook, messageID, body, until, wanted)
		})
	}
}

// maxDeliveries is the most webhook deliveries (each retrying until its
// event stops mattering) a service runs at once: receivers that are down
// while held calls come and go would otherwise have a goroutine each, for
// up to the approval timeout. Past it, an event is not sent (and logged);
// its approval is still in the inbox and the admin API.
const maxDeliveries = 1024

// receiver names the webhook's receiver in logs (see Receiver).
func (w *Webhook) receiver() string {
	return Receiver(w.URL)
}

// Receiver names a webhook's receiver where people read it (logs,
// configuration errors): the URL's scheme and host, since the rest of a
// webhook URL is often its credential (as in Slack's incoming webhooks).
func Receiver(webhookURL string) string {
	u, err := url.Parse(webhookURL)
	if err != nil || u.Host == "" {
		return "(a URL without a host)"
	}
	return u.Scheme + "://" + u.Host
}

// deliver POSTs one webhook until its receiver answers 2xx, the event
// stops mattering (until passed, or wanted says no), or the service
// stops.
func (s *Service) deliver(settings *Settings, webhook *Webhook, messageID string, body []byte, until time.Time, wanted func() bool) {
	receiver := zap.String("receiver", webhook.receiver())
	delay := settings.FirstRetry
	for attempt := 1; ; attempt++ {
		err := s.post(settings, webhook, messageID, body)
		if err == nil {
			settings.Logger.Debug("approval webhook delivered",
				receiver, zap.String("webhook_id", messageID), zap.Int("attempt", attempt))
			return
		}
		settings.Logger.Warn("approval webhook not delivered; will retry",
			receiver, zap.String("webhook_id", messageID),
			zap.Int("attempt", attempt), zap.Duration("retry_in", delay), zap.Error(err))
		if !time.Now().Add(delay).Before(until) {
			settings.Logger.Error("approval webhook given up",
				receiver, zap.String("webhook_id", messageID), zap.Int("attempts", attempt))
			return
		}
		timer := time.NewTimer(delay)
		select {
		case <-s.ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		if !wanted() {
			return
		}
		delay = min(2*delay, maxRetryDelay)
	}
}

// post makes one delivery attempt, signed now. Its errors leave out the
// webhook's URL, which may be a credential.
func (s *Service) post(settings *Settings, webhook *Webhook, messageID string, body []byte) error {
	ctx, cancel := context.WithTimeout(s.ctx, attemptTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, webhook.URL, bytes.NewReader(body))
	if err != nil {
		return withoutURL(err)
	}
	req.Header.Set("Content-Type", webhook.contentType())
	req.Header.Set("User-Agent", "mcpgate")
	setHeaders(req.Header, messageID, time.Now(), body, settings.WebhookSecrets)
	resp, err := settings.Client.Do(req)
	if err != nil {
		return withoutURL(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("receiver answered %s", resp.Status)
	}
	return nil
}

// withoutURL strips the URL from the errors of net/http and net/url.
func withoutURL(err error) error {
	if urlErr, ok := errors.AsType[*url.Error](err); ok {
		return fmt.Errorf("%s: %w", urlErr.Op, urlErr.Err)
	}
	return err
}
