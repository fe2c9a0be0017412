package gateway

import (
	"crypto/sha256"
	"encoding/hex"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/mcpgate/mcpgate/caddymodule/approval"
	"github.com/mcpgate/mcpgate/caddymodule/policy"
)

// Audit is the audit trail: one record per message the gateway decided
// or refused, and one per tool call it forwarded when the call ends
// (callTrail), for security teams, written to a logger of its own so that
// the host can route it to a sink of its own. The records' schema is
// stable (see the docs): what happened ("outcome"), who asked (user,
// claims), what (server, tool, arguments or their digest), what decided
// (decision, policy revision, approval and approver), and when.
type Audit struct {
	// Logger receives the records.
	Logger *zap.Logger
	// Arguments records a call's arguments in full; by default only
	// their SHA-256 (of their canonical JSON) is.
	Arguments bool
	// Claims are the caller's claims to record (by name).
	Claims []string
}

// The outcomes an audit record names.
const (
	outcomeForwarded   = "forwarded"
	outcomeRefused     = "refused"
	outcomeRateLimited = "rate_limited"
	outcomeRejected    = "rejected"
	outcomePending     = "pending"
	outcomeApproved    = "approved"
	outcomeDenied      = "denied"
	outcomeExpired     = "expired"
	outcomeCancelled   = "cancelled"
	outcomeFailed      = "failed"
	outcomeAsked       = "asked"
	outcomeConfirmed   = "confirmed"
	outcomeDeclined    = "declined"
	outcomeUnanswered  = "unanswered"
	outcomeWithheld    = "withheld"
)

// audit writes one record: what happened to the message of v.
func (x *exchange) audit(v verdict, outcome string, a *approval.Approval) {
	trail := x.g.cfg.Audit
	if trail == nil {
		return
	}
	fields := append([]zap.Field{zap.String("outcome", outcome)}, x.auditedRequest()...)
	fields = append(fields, zap.Duration("elapsed", time.Since(x.started)))
	if x.caller != nil {
		fields = append(fields, zap.String("user", x.caller.ID))
		if len(trail.Claims) > 0 {
			claims := make(map[string]any, len(trail.Claims))
			for _, name := range trail.Claims {
				if value, ok := x.caller.Claims[name]; ok {
					claims[name] = value
				}
			}
			fields = append(fields, zap.Any("claims", claims))
		}
	}
	if v.message != nil {
		m := v.message
		fields = append(fields, zap.String("kind", m.Kind.String()), zap.String("method", m.Method), zap.ByteString("id", m.ID))
		if m.Tool != nil {
			fields = append(fields, zap.String("tool", m.Tool.Name))
			if v.input != nil && v.input.Tool != nil {
				fields = append(fields, zap.String("category", v.input.Tool.Category))
			}
			if trail.Arguments {
				fields = append(fields, zap.Any("arguments", m.Tool.Arguments))
			} else if digest, err := argumentsDigest(m.Tool.Arguments); err == nil {
				fields = append(fields, zap.String("arguments_sha256", digest))
			}
		}
	}
	if decision := v.auditedDecision(); decision.Action != "" {
		fields = append(fields, zap.String("action", string(decision.Action)), zap.String("reason", decision.Reason),
			zap.String("policy_revision", decision.Revision))
	}
	if v.text != "" {
		fields = append(fields, zap.String("refusal", v.text))
	}
	if a != nil {
		fields = append(fields, zap.String("approval", a.ID), zap.String("approval_state", string(a.State)))
		if a.Approver != "" {
			fields = append(fields, zap.String("approver", a.Approver))
		}
		if a.ApproverClaim != "" {
			fields = append(fields, zap.String("approver_claim", a.ApproverClaim))
		}
	}
	trail.Logger.Info("mcp message", fields...)
}

// callTrail is where the end of a POST's forwarded tool calls is told,
// besides the metrics: the audit trail (a record "tool call ended") and
// the request's trace (a span per call, startToolCallSpan). It is kept
// for as long as the calls are awaited, which on HTTP+SSE is on other
// requests (the session's stream). nil when there is neither, and its
// methods then do nothing.
type callTrail struct {
	// logger is the audit trail's, nil without one.
	logger *zap.Logger
	// tracer is the request's trace's, nil when it is not traced.
	tracer  trace.Tracer
	started time.Time
	// fields are the POST's: request id, client, server, upstream,
	// session, revision, caller.
	fields []zap.Field
}

// callTrail returns the exchange's callTrail, nil when it keeps no audit
// trail and is not traced.
func (x *exchange) callTrail() *callTrail {
	audit := x.g.cfg.Audit
	traced := trace.SpanFromContext(x.r.Context()).SpanContext().IsValid()
	if audit == nil && !traced {
		return nil
	}
	t := &callTrail{started: x.started}
	if traced {
		t.tracer = tracer(x.r.Context())
	}
	if audit != nil {
		t.logger = audit.Logger
		t.fields = x.auditedRequest()
		if x.caller != nil {
			t.fields = append(t.fields, zap.String("user", x.caller.ID))
		}
	}
	return t
}

// auditedRequest are the facts of the exchange's request that its audit
// records carry: its id, client, server, upstream, session and revision.
func (x *exchange) auditedRequest() []zap.Field {
	return []zap.Field{
		zap.String("request_id", x.g.host.RequestID(x.r)),
		zap.String("remote_ip", x.g.host.ClientIP(x.r)),
		zap.String("server", x.g.cfg.Server),
		zap.String("upstream", x.g.cfg.Upstream),
		zap.String("session", x.session.shown()),
		zap.String("protocol_version", x.version),
	}
}

// ended tells that the tool call of this raw id, forwarded at sent with
// its span (nil: none), ended at at as outcome.
func (t *callTrail) ended(id []byte, tool string, span trace.Span, outcome toolOutcome, sent, at time.Time) {
	if t == nil {
		return
	}
	endToolCallSpan(span, outcome, at)
	if t.logger == nil {
		return
	}
	fields := make([]zap.Field, 0, len(t.fields)+5)
	fields = append(fields, zap.String("outcome", string(outcome)))
	fields = append(fields, t.fields...)
	fields = append(fields, zap.Duration("elapsed", time.Since(t.started)),
		zap.ByteString("id", id), zap.String("tool", tool), zap.Duration("duration", at.Sub(sent)))
	t.logger.Info("tool call ended", fields...)
}

// argumentsDigest is the SHA-256 of arguments as canonical JSON (exact
// numbers, sorted members): equal for the calls an approval would bind
// alike.
func argumentsDigest(arguments map[string]any) (string, error) {
	canonical, err := approval.CanonicalArguments(arguments)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(canonical)
	return hex.EncodeToString(sum[:]), nil
}

// auditRejection records a request refused before the policy decided
// it: one record for each of its messages, once its body was read (a
// refusal of what the message holds, its headers, its session), else one
// for the request.
func (x *exchange) auditRejection(e *refusal) {
	for _, v := range x.rejectedVerdicts(e) {
		x.audit(v, outcomeRejected, nil)
	}
}

// rejectedVerdicts are the verdicts of a request refused before the
// policy decided it: one per message read, none decided, each with the
// refusal's text; one without a message when none was read.
func (x *exchange) rejectedVerdicts(e *refusal) []verdict {
	if x.body == nil || len(x.body.Messages) == 0 {
		return []verdict{{text: e.message}}
	}
	verdicts := make([]verdict, len(x.body.Messages))
	for i := range x.body.Messages {
		verdicts[i] = verdict{message: &x.body.Messages[i], text: e.message}
	}
	return verdicts
}

// auditedDecision is the decision an audit record shows: the policy's,
// even when the gateway then refused the message for another cause (a
// rate limit, an id in flight), which the record's refusal says.
func (v verdict) auditedDecision() policy.Decision {
	if v.policyDecision != nil {
		return *v.policyDecision
	}
	return v.decision
}
