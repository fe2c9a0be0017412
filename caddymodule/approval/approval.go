// Package approval keeps the tool calls that a policy sent for human
// approval: the approvals themselves (in memory or in Redis), the webhooks
// that announce them and the callbacks that decide them (both signed as
// Standard Webhooks), and the wait of the calls held until a decision.
//
// An approval is bound to one call: who makes it, on which server, with
// which tool and which arguments (every number exactly as written), and
// who may decide it. It authorises that call once, and only a decider
// entitled to (see Approval.Entitled) decides it.
package approval

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
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
	// ErrReplayed: a one-time key (a caller's confirmation nonce) was
	// claimed already.
	ErrReplayed = errors.New("one-time key already claimed")
	// ErrNotEntitled: the decider holds none of the principals entitled
	// to decide the approval.
	ErrNotEntitled = errors.New("not entitled to decide this approval")
	// ErrTooLarge: the call's arguments are too large to be kept, shown
	// and announced for approval (see MaxArguments).
	ErrTooLarge = errors.New("arguments too large to approve")
	// ErrTooManyPending: the store (MaxPending), or the caller
	// (MaxPendingPerCaller), has as many approvals pending as it may.
	ErrTooManyPending = errors.New("too many approvals pending")
)

// Bounds on the approvals a store holds, so that callers making held calls
// faster than anyone decides them (each keeps up to MaxArguments, for its
// timeout and Retention after) fill neither the gateway's memory nor the
// reviewers' inbox.
const (
	// MaxPending is the most approvals pending at once in one store
	// (shared by the gateways sharing a Redis).
	MaxPending = 1000
	// MaxPendingPerCaller is the most approvals one caller (a user, or
	// without identity a session) may have pending at once through one
	// gateway process: one caller cannot take all of MaxPending. Callers
	// with neither a user nor a session cannot be told apart, and count
	// against MaxPending alone.
	MaxPendingPerCaller = 20
	// maxRemembered is the most approvals that are no longer live a
	// memory store remembers (for Retention); past it, the one that
	// would be forgotten first goes first.
	maxRemembered = 4096
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
	// ToolHash names the tool's definition the call was decided on (the
	// hash `mcpgate tools` shows); the approval runs no call to another.
	ToolHash string `json:"tool_hash,omitempty"`
	// Arguments are the call's arguments, canonical JSON (RFC 8785).
	Arguments json.RawMessage `json:"arguments"`
	// Reason is why the policy asked for approval.
	Reason string `json:"reason,omitempty"`
	// User is the caller's id, when the gateway knows it.
	User string `json:"user,omitempty"`
	// Session is the Mcp-Session-Id the call came with.
	Session string `json:"session,omitempty"`
	// Approvers are the principals entitled to decide, sorted; empty
	// means any reviewer (see Call.Approvers and Entitled).
	Approvers []string `json:"approvers,omitempty"`
	// KeyID names the decision secret that was first when the approval
	// was announced (see Secret.ID): a service decides the approval while
	// that secret is among its decision secrets (see Service.Owns).
	KeyID string `json:"key_id"`
	// RequestedAt is when the approval was first asked for.
	RequestedAt time.Time `json:"requested_at"`
	// ExpiresAt is when a pending approval expires.
	ExpiresAt time.Time `json:"expires_at"`
	// State is where the approval stands.
	State State `json:"state"`
	// Approver is who decided, as verified (Decider.ID), or what
	// cancelled or expired it.
	Approver string `json:"approver,omitempty"`
	// ApproverClaim is what the decider said of itself (Decider.Claim),
	// when it says more than Approver; recorded, never trusted.
	ApproverClaim string `json:"approver_claim,omitempty"`
	// DecisionReason is the reason given with the decision.
	DecisionReason string `json:"decision_reason,omitempty"`
	// DecisionMessage is the id of the message that carried the decision
	// (Decider.Message), when it had one.
	DecisionMessage string `json:"decision_message,omitempty"`
	// DecidedAt is when the approval left the pending state.
	DecidedAt time.Time `json:"decided_at,omitzero"`
	// UsableUntil is how long an approval or denial waits for the call
	// to be made again, if no call was held when it came.
	UsableUntil time.Time `json:"usable_until,omitzero"`
	// Delivered is set once a call ran on the approval, or a caller was
	// told of the denial: the decision is used up.
	Delivered bool `json:"delivered,omitempty"`
	// Unannounced is set when the approval is created for webhooks to
	// announce, and cleared, atomically, by the one gateway that then
	// announces it (approval.requested): one found pending with it set
	// was saved by a Create whose answer was lost (its store went away
	// just after), and is announced when its call is made again. A record
	// without it (of an earlier version) counts as announced.
	Unannounced bool `json:"unannounced,omitempty"`
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

// bindingKey is where a store finds the approval that stands for a
// binding under the decision secret keyID (see Approval.KeyID): gateways
// that share a store but not a decision secret never take up each other's
// approvals, as they cannot decide them (see Service.Owns).
func bindingKey(keyID, binding string) string { return keyID + "/" + binding }

// bindingKey is where a store finds the approval that stands for its
// binding (see bindingKey).
func (a *Approval) bindingKey() string { return bindingKey(a.KeyID, a.Binding) }

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

// decide moves a pending approval to state to, recording who did it.
func (a *Approval) decide(to State, by Decider, reason string, now time.Time, usable time.Duration) error {
	if a.State != Pending {
		return fmt.Errorf("%w: approval %s is %s", ErrConflict, a.ID, a.State)
	}
	a.State, a.Approver, a.DecisionReason, a.DecidedAt, a.DecisionMessage = to, by.ID, reason, now, by.Message
	if by.Claim != by.ID {
		a.ApproverClaim = by.Claim
	}
	a.UsableUntil = now.Add(usable)
	return nil
}

// DecidedAs reports whether the approval was decided as by deciding
// approve (or deny) with reason would decide it: a decider retrying a
// decision whose answer was lost (its store away just after it saved)
// finds its own decision, not another's.
func (a *Approval) DecidedAs(approve bool, by Decider, reason string) bool {
	want, claim := Denied, by.Claim
	if approve {
		want = Approved
	}
	if claim == by.ID {
		claim = ""
	}
	return a.State == want && a.Approver == by.ID && a.ApproverClaim == claim &&
		a.DecisionReason == reason && a.DecisionMessage == by.Message
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
	// Realm says where User comes from (a token issuer, an
	// authentication's user): callers of one id from two realms are two
	// callers, and an approval for one never runs the other's call.
	Realm string
	// Session is the call's Mcp-Session-Id, if any.
	Session string
	// Server is the upstream's logical name.
	Server string
	// Tool is the tool's name.
	Tool string
	// ToolHash names the tool's definition the call was decided on: an
	// approval given for one definition is never found for a call to
	// another (the upstream may have changed what the tool does).
	ToolHash string
	// Arguments are the call's decoded arguments.
	Arguments map[string]any
	// Reason is why the policy asked for approval.
	Reason string
	// Approvers are the principals entitled to decide; empty means any
	// reviewer (see Approval.Entitled). A principal is one of:
	//
	//	webhook        a callback signed with a decision secret
	//	admin          the admin API
	//	admin:<name>   a named admin, such as a remote-admin client
	//	               certificate's common name
	//	inbox          any inbox account
	//	inbox:<user>   one inbox account
	//	group:<name>   an inbox group
	//	caller         the person who made the call, asked by the gateway
	//	               itself in their client
	//
	// Only the code that asks the caller of this very approval may give a
	// decider the principal "caller".
	Approvers []string
}

// The principals without a name; see Call.Approvers.
const (
	// PrincipalWebhook is held by a callback signed with a decision secret.
	PrincipalWebhook = "webhook"
	// PrincipalAdmin is held by the admin API.
	PrincipalAdmin = "admin"
	// PrincipalInbox is held by every inbox account.
	PrincipalInbox = "inbox"
	// PrincipalCaller is held by the person who made the call, when the
	// gateway asks them in their client.
	PrincipalCaller = "caller"
)

// namedPrincipals are the prefixes of the principals that carry a name;
// see Call.Approvers.
var namedPrincipals = []string{"admin:", "inbox:", "group:"}

// ValidPrincipal reports whether p is spelled as a principal of
// Call.Approvers.
func ValidPrincipal(p string) bool {
	switch p {
	case PrincipalWebhook, PrincipalAdmin, PrincipalInbox, PrincipalCaller:
		return true
	}
	for _, prefix := range namedPrincipals {
		if name, ok := strings.CutPrefix(p, prefix); ok {
			return name != ""
		}
	}
	return false
}

// approvers returns the call's approvers sorted and without repeats, or an
// error naming one that is not a principal: an approval that nobody could
// decide is refused when asked for, rather than left to expire.
func (c *Call) approvers() ([]string, error) {
	for _, p := range c.Approvers {
		if !ValidPrincipal(p) {
			return nil, fmt.Errorf("approver %q is not a principal (webhook, admin, admin:<name>, inbox, inbox:<user>, group:<name> or caller)", p)
		}
	}
	if len(c.Approvers) == 0 {
		return nil, nil
	}
	approvers := slices.Clone(c.Approvers)
	slices.Sort(approvers)
	return slices.Compact(approvers), nil
}

// canonicalArguments returns the arguments as canonical JSON without loss:
// RFC 8785 for member order, string escapes and whitespace, which no JSON
// reader can tell apart, but every number exactly as written (RFC 8785
// would round it through float64, so that 9007199254740993 and
// 9007199254740992, or 1e400 and 1e401, would bind alike, though many
// upstreams read them differently). So 1.0 and 1, -0 and 0, 1e2 and 100
// are different arguments. Numbers come as json.Number, as the gateway's
// message parser decodes them, and are written from their text.
func (c *Call) canonicalArguments() (json.RawMessage, error) {
	return CanonicalArguments(c.Arguments)
}

// CanonicalArguments writes a call's arguments as canonicalArguments
// does: the form approvals bind and audit records digest.
func CanonicalArguments(args map[string]any) (json.RawMessage, error) {
	if args == nil {
		args = map[string]any{}
	}
	raw, err := jsonv2.Marshal(args, jsonv2.WithMarshalers(jsonv2.MarshalToFunc(writeNumber)))
	if err != nil {
		return nil, fmt.Errorf("encoding arguments: %w", err)
	}
	v := jsontext.Value(raw)
	if err := v.Canonicalize(jsontext.CanonicalizeRawInts(false), jsontext.CanonicalizeRawFloats(false)); err != nil {
		return nil, fmt.Errorf("canonicalizing arguments: %w", err)
	}
	return json.RawMessage(v), nil
}

// writeNumber writes a json.Number as the number it spells.
func writeNumber(enc *jsontext.Encoder, n json.Number) error {
	if v := jsontext.Value(n); !v.IsValid() || v.Kind() != '0' {
		return fmt.Errorf("%q is not a JSON number", string(n))
	}
	return enc.WriteValue(jsontext.Value(n))
}

// Binding returns what an approval for the call is bound to: a hash of the
// caller, the server, the tool, the approvers (sorted, without repeats)
// and the canonical arguments. The caller is the user (in its realm) when known, else the
// session: without an identity, an approval granted in one session does
// not run a call made in another. Calls with neither share one anonymous
// caller. A policy that changes who may decide gets a fresh approval.
func (c *Call) Binding() (string, error) {
	b, err := c.bind()
	return b.binding, err
}

// bound is what an approval for a call records of it.
type bound struct {
	binding   string
	arguments json.RawMessage
	approvers []string
}

// caller names who makes the call, exactly: its user within its realm
// (one id may name two people in two realms; length-prefixed, so no two
// callers have one name), or without one its session (a session id is
// the upstream's: the binding names the server beside it); "" for a
// caller with neither, whom nothing tells apart from any other such
// caller.
func (c *Call) caller() string {
	switch {
	case c.User != "":
		return fmt.Sprintf("user:%d:%s:%s", len(c.Realm), c.Realm, c.User)
	case c.Session != "":
		return "session:" + c.Session
	}
	return ""
}

// bind works out the call's binding, canonical arguments and approvers.
func (c *Call) bind() (bound, error) {
	args, err := c.canonicalArguments()
	if err != nil {
		return bound{}, err
	}
	approvers, err := c.approvers()
	if err != nil {
		return bound{}, err
	}
	caller := c.caller()
	if caller == "" {
		caller = "anonymous"
	}
	h := sha256.New()
	// Length-prefixed, so no two different calls hash the same parts.
	for _, part := range []string{caller, c.Server, c.Tool, c.ToolHash} {
		fmt.Fprintf(h, "%d:%s\n", len(part), part)
	}
	fmt.Fprintf(h, "%d\n", len(approvers))
	for _, p := range approvers {
		fmt.Fprintf(h, "%d:%s\n", len(p), p)
	}
	h.Write(args)
	return bound{binding: hex.EncodeToString(h.Sum(nil)), arguments: args, approvers: approvers}, nil
}

// Decider is who decides an approval: a verified identity and the
// principals it holds (see Call.Approvers).
type Decider struct {
	// ID is the verified identity recorded as the approver, such as
	// "inbox:alice", "admin" or "webhook".
	ID string
	// Principals are the principals the decider holds, such as
	// {"inbox", "inbox:alice", "group:leads"}.
	Principals []string
	// Callers are the caller ids (input.user.id) the person deciding is
	// known by, where the route can tell (an inbox account: its name and
	// the ids the inbox maps it to; a remote admin: its certificate's
	// common name). Such a decider is the held call's own caller when one
	// of them is the approval's User (see SameCaller), and may then decide
	// it only when its approvers name "caller".
	Callers []string
	// Claim is what the decider says of itself, such as a webhook body's
	// "approver": recorded, never trusted.
	Claim string
	// Message identifies the message that carries the decision, when it
	// has an id of its own (a callback's webhook-id): recorded, so that
	// a sender retrying a delivered message can be told it was.
	Message string
}

// Entitled reports whether by may decide the approval. The call's own
// caller may not, unless the approvers name "caller". With no approvers,
// any reviewer may: a decider holding a principal other than "caller" (the
// caller alone never approves their own call). With approvers, a decider
// holding one of them may. An empty principal counts for nothing.
func (a *Approval) Entitled(by Decider) bool {
	if a.decidedByCaller(by) {
		return false
	}
	for _, p := range by.Principals {
		switch {
		case p == "":
		case len(a.Approvers) == 0 && p != PrincipalCaller:
			return true
		case slices.Contains(a.Approvers, p):
			return true
		}
	}
	return false
}

// decidedByCaller reports whether by is the approval's own caller, when
// its approvers do not let the caller decide.
func (a *Approval) decidedByCaller(by Decider) bool {
	if a.User == "" || slices.Contains(a.Approvers, PrincipalCaller) {
		return false
	}
	return slices.ContainsFunc(by.Callers, func(id string) bool { return SameCaller(id, a.User) })
}

// SameCaller reports whether two caller ids may name one person: equal
// once folded as the gateway folds names (mcpmsg.FoldName: compatibility-
// normalized, case-folded, Cherokee letters included, and trimmed), so
// that "Alice", "alice " and "ａｌｉｃｅ" are one. It errs on the side of
// sameness, since it only ever refuses a decision.
func SameCaller(a, b string) bool {
	return a != "" && b != "" && mcpmsg.FoldName(a) == mcpmsg.FoldName(b)
}

// entitle returns nil when by may decide the approval, else ErrNotEntitled
// saying who may.
func (a *Approval) entitle(by Decider) error {
	if a.decidedByCaller(by) {
		return fmt.Errorf("%w: %q is the caller of approval %s, and may not decide their own call", ErrNotEntitled, by.ID, a.ID)
	}
	if a.Entitled(by) {
		return nil
	}
	who := "any reviewer but the caller alone"
	if len(a.Approvers) > 0 {
		who = "only " + strings.Join(a.Approvers, ", ")
	}
	return fmt.Errorf("%w: %q may not decide approval %s; %s may", ErrNotEntitled, by.ID, a.ID, who)
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
