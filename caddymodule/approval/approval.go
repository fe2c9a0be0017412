// Package approval keeps the tool calls that a policy sent for human
// approval: the approvals themselves (in memory or in Redis), the webhooks
// that announce them and the callbacks that decide them (both signed as
// Standard Webhooks), and the wait of the calls held until a decision.
//
// An approval is bound to one call: who makes it, on which server, with
// which tool and which arguments. It authorises that call once.
package approval

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-json-experiment/json/jsontext"
)

// State is where an approval stands.
type State string

// The states of an approval. Only pending approvals can be decided; every
// other state is final.
const (
	// Pending: announced, waiting for a decision.
	Pending State = "pending"
	// Approved: the call may run once.
	Approved State = "approved"
	// Denied: the call must not run; the reason goes to the caller.
	Denied State = "denied"
	// Cancelled: the caller went away or cancelled the call.
	Cancelled State = "cancelled"
	// Expired: no decision came in time.
	Expired State = "expired"
)

// Errors the stores and the service return, wrapped with details.
var (
	// ErrNotFound: no approval has this id (or it was forgotten).
	ErrNotFound = errors.New("no such approval")
	// ErrConflict: the approval is no longer in a state that allows the
	// change (a second decision, a decision after cancellation, a call
	// already run).
	ErrConflict = errors.New("approval already settled")
	// ErrReplayed: a callback reused a webhook-id.
	ErrReplayed = errors.New("webhook-id already used")
)

// Retention is how long an approval is remembered after it stops being
// live, so that a late callback learns it was settled (409) rather than
// unknown (404).
const Retention = time.Hour

// Approval is one call waiting for (or given) a human decision.
type Approval struct {
	// ID names the approval in callbacks, the admin API and logs.
	ID string `json:"id"`
	// Binding identifies the call it authorises; see Call.Binding.
	Binding string `json:"binding"`
	// Server is the upstream's logical name.
	Server string `json:"server"`
	// Tool is the tool to call.
	Tool string `json:"tool"`
	// Arguments are the call's arguments, canonical JSON (RFC 8785).
	Arguments json.RawMessage `json:"arguments"`
	// Reason is why the policy asked for approval.
	Reason string `json:"reason,omitempty"`
	// User is the caller's id, when the gateway knows it.
	User string `json:"user,omitempty"`
	// Session is the Mcp-Session-Id the call came with.
	Session string `json:"session,omitempty"`
	// KeyID names the secret the approval was announced with, the only
	// one that can decide it (see Secret.ID).
	KeyID string `json:"key_id"`
	// RequestedAt is when the approval was first asked for.
	RequestedAt time.Time `json:"requested_at"`
	// ExpiresAt is when a pending approval expires.
	ExpiresAt time.Time `json:"expires_at"`
	// State is where the approval stands.
	State State `json:"state"`
	// Approver is who decided (or what cancelled or expired it).
	Approver string `json:"approver,omitempty"`
	// DecisionReason is the reason given with the decision.
	DecisionReason string `json:"decision_reason,omitempty"`
	// DecidedAt is when the approval left the pending state.
	DecidedAt time.Time `json:"decided_at,omitzero"`
	// UsableUntil is how long an approval or denial waits for the call
	// to be made again, if no call was held when it came.
	UsableUntil time.Time `json:"usable_until,omitzero"`
	// Delivered is set once a call ran on the approval, or a caller was
	// told of the denial: the decision is used up.
	Delivered bool `json:"delivered,omitempty"`
}

// Live reports whether the approval still stands for its binding: pending
// and not expired, or decided and not yet used.
func (a *Approval) Live(now time.Time) bool {
	switch a.State {
	case Pending:
		return now.Before(a.ExpiresAt)
	case Approved, Denied:
		return !a.Delivered && now.Before(a.UsableUntil)
	default:
		return false
	}
}

// settled reports whether the approval can never stand for its binding
// again, whatever the time.
func (a *Approval) settled() bool {
	return a.State == Cancelled || a.State == Expired || a.Delivered
}

// liveUntil is the latest time the approval may be live.
func (a *Approval) liveUntil() time.Time {
	if a.State == Pending {
		return a.ExpiresAt
	}
	return a.UsableUntil
}

// forgetAt is when a store may drop the approval.
func (a *Approval) forgetAt() time.Time {
	return a.liveUntil().Add(Retention)
}

// Waited is how long the approval was (or has been) pending.
func (a *Approval) Waited(now time.Time) time.Duration {
	if !a.DecidedAt.IsZero() {
		return a.DecidedAt.Sub(a.RequestedAt)
	}
	return now.Sub(a.RequestedAt)
}

// decide moves a pending approval to state to.
func (a *Approval) decide(to State, by, reason string, now time.Time, usable time.Duration) error {
	if a.State != Pending {
		return fmt.Errorf("%w: approval %s is %s", ErrConflict, a.ID, a.State)
	}
	a.State, a.Approver, a.DecisionReason, a.DecidedAt = to, by, reason, now
	a.UsableUntil = now.Add(usable)
	return nil
}

// deliver uses up an approval or a denial.
func (a *Approval) deliver(now time.Time) error {
	if (a.State != Approved && a.State != Denied) || !a.Live(now) {
		return fmt.Errorf("%w: approval %s is %s", ErrConflict, a.ID, a.describe())
	}
	a.Delivered = true
	return nil
}

// describe names the state, saying when a decision was used up.
func (a *Approval) describe() string {
	if a.Delivered {
		return string(a.State) + " and used"
	}
	return string(a.State)
}

// Call is a tool call that needs approval.
type Call struct {
	// User is the caller's id; empty when the gateway knows nobody.
	User string
	// Session is the call's Mcp-Session-Id, if any.
	Session string
	// Server is the upstream's logical name.
	Server string
	// Tool is the tool's name.
	Tool string
	// Arguments are the call's decoded arguments.
	Arguments map[string]any
	// Reason is why the policy asked for approval.
	Reason string
}

// canonicalArguments returns the arguments as canonical JSON (RFC 8785),
// so that calls equal as JSON values have equal arguments whatever the
// member order, spacing or number spelling.
func (c *Call) canonicalArguments() (json.RawMessage, error) {
	args := c.Arguments
	if args == nil {
		args = map[string]any{}
	}
	raw, err := json.Marshal(args)
	if err != nil {
		return nil, fmt.Errorf("encoding arguments: %w", err)
	}
	v := jsontext.Value(raw)
	if err := v.Canonicalize(); err != nil {
		return nil, fmt.Errorf("canonicalizing arguments: %w", err)
	}
	return json.RawMessage(v), nil
}

// Binding returns what an approval for the call is bound to: a hash of the
// caller, the server, the tool and the canonical arguments. The caller is
// the user when known, else the session: without an identity, an approval
// granted in one session does not run a call made in another. Calls with
// neither share one anonymous caller.
func (c *Call) Binding() (string, error) {
	args, err := c.canonicalArguments()
	if err != nil {
		return "", err
	}
	caller := "anonymous"
	switch {
	case c.User != "":
		caller = "user:" + c.User
	case c.Session != "":
		caller = "session:" + c.Session
	}
	h := sha256.New()
	for _, part := range []string{caller, c.Server, c.Tool} {
		// Length-prefixed, so no two different calls hash the same parts.
		fmt.Fprintf(h, "%d:%s\n", len(part), part)
	}
	h.Write(args)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// idEncoding spells approval ids: lower-case, URL-safe, no padding.
var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// newID returns a fresh approval id with 128 random bits.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return "apr_" + idEncoding.EncodeToString(b[:])
}

// ValidID reports whether s is spelled as an approval id, so that a
// callback naming anything else is refused before a store sees it.
func ValidID(s string) bool {
	rest, ok := strings.CutPrefix(s, "apr_")
	if !ok || len(rest) != 26 {
		return false
	}
	_, err := idEncoding.DecodeString(rest)
	return err == nil
}
