package approval

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"go.uber.org/zap"
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

// Event is the JSON body of a webhook.
type Event struct {
	// Type is one of EventRequested, EventCancelled, EventExpired.
	Type string `json:"type"`
	// Timestamp is when the event happened.
	Timestamp time.Time `json:"timestamp"`
	// ID is the approval's id, the last path segment of CallbackURL.
	ID string `json:"id"`
	// CallbackURL is where to POST the decision.
	CallbackURL string `json:"callback_url"`
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
	Name      string          `json:"name"`
	Arguments json.RawMessage `json:"arguments"`
}

// EventUser is the caller of the call an approval is for.
type EventUser struct {
	ID string `json:"id"`
}

// newEvent describes a for a webhook of the given type.
func newEvent(eventType string, a *Approval, callbackURL string, now time.Time) Event {
	e := Event{
		Type:        eventType,
		Timestamp:   now.UTC(),
		ID:          a.ID,
		CallbackURL: callbackURL + "/" + a.ID,
		Server:      a.Server,
		Tool:        EventTool{Name: a.Tool, Arguments: a.Arguments},
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
	body, err := json.Marshal(newEvent(eventType, a, settings.CallbackURL, now))
	if err != nil {
		settings.Logger.Error("encoding approval webhook", zap.String("id", a.ID), zap.Error(err))
		return
	}
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
	for _, url := range settings.Webhooks {
		s.work.Go(func() {
			s.deliver(settings, url, messageID, body, until, wanted)
		})
	}
}

// deliver POSTs one webhook to url until a receiver answers 2xx, the
// event stops mattering (until passed, or wanted says no), or the service
// stops.
func (s *Service) deliver(settings *Settings, url, messageID string, body []byte, until time.Time, wanted func() bool) {
	delay := settings.FirstRetry
	for attempt := 1; ; attempt++ {
		err := s.post(settings, url, messageID, body)
		if err == nil {
			settings.Logger.Debug("approval webhook delivered",
				zap.String("url", url), zap.String("webhook_id", messageID), zap.Int("attempt", attempt))
			return
		}
		settings.Logger.Warn("approval webhook not delivered; will retry",
			zap.String("url", url), zap.String("webhook_id", messageID),
			zap.Int("attempt", attempt), zap.Duration("retry_in", delay), zap.Error(err))
		if !time.Now().Add(delay).Before(until) {
			settings.Logger.Error("approval webhook given up",
				zap.String("url", url), zap.String("webhook_id", messageID), zap.Int("attempts", attempt))
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

// post makes one delivery attempt, signed now.
func (s *Service) post(settings *Settings, url, messageID string, body []byte) error {
	ctx, cancel := context.WithTimeout(s.ctx, attemptTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "mcpgate")
	setHeaders(req.Header, messageID, time.Now(), body, settings.WebhookSecrets)
	resp, err := settings.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("receiver answered %s", resp.Status)
	}
	return nil
}
