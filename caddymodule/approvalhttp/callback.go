package approvalhttp

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mcpgate/mcpgate/caddymodule/approval"
	"github.com/mcpgate/mcpgate/caddymodule/display"
)

// maxCallbackBody bounds a decision's body.
const maxCallbackBody = 64 << 10

// maxLoggedID and maxLoggedError bound what a log line quotes of what a
// request chose: an approval id from its URL (ids are 26 characters), an
// error quoting its body.
const (
	maxLoggedID    = 64
	maxLoggedError = 256
)

// serveCallback takes one signed decision.
func (h *Handler) serveCallback(w http.ResponseWriter, r *http.Request, id string) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxCallbackBody))
	if err != nil {
		return h.refuseCallback(w, r, id, http.StatusBadRequest, fmt.Errorf("reading the callback: %w", err), false)
	}
	// Any service whose decision secrets verify the callback may hold the
	// id; the one whose store knows it takes the decision.
	verified, verifyErr := false, approval.ErrUnsigned
	service, findErr := h.services.Find(r.Context(), id, func(s *approval.Service) bool {
		if _, err := s.VerifyDecision(r.Header, body, time.Now()); err != nil {
			verifyErr = err
			return false
		}
		verified = true
		return true
	})
	if !verified {
		return h.refuseCallback(w, r, id, http.StatusUnauthorized, verifyErr, false)
	}
	if findErr != nil {
		return h.refuseCallback(w, r, id, Status(findErr), findErr, true)
	}
	decision, err := approval.ParseCallback(body, id)
	if err != nil {
		return h.refuseCallback(w, r, id, http.StatusBadRequest, err, true)
	}
	// The approval's own state machine is what stops a replayed decision
	// from deciding twice. The webhook-id is recorded with the decision,
	// in the same step, so that a sender retrying a delivered message
	// (its answer lost) is told it was delivered, and any other decision
	// arriving late gets 409; a retry after a failure (the store away:
	// 503) is simply taken.
	webhookID := r.Header.Get(approval.HeaderID)
	by := approval.Decider{ID: approval.PrincipalWebhook, Principals: []string{approval.PrincipalWebhook}, Claim: decision.Approver, Message: webhookID}
	a, err := service.Decide(r.Context(), id, decision.Decision == approval.DecisionApprove, by, decision.Reason)
	if errors.Is(err, approval.ErrConflict) {
		settled, getErr := service.Get(r.Context(), id)
		if getErr != nil {
			return h.refuseCallback(w, r, id, Status(getErr), getErr, true)
		}
		if !decidedBy(settled, decision, webhookID) {
			return h.refuseCallback(w, r, id, Status(err), err, true)
		}
		a, err = settled, nil
	}
	if err != nil {
		return h.refuseCallback(w, r, id, Status(err), err, true)
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(map[string]any{"id": a.ID, "state": a.State, "approver": a.Approver})
}

// decidedBy reports whether the approval was decided by this very
// message: the webhook-id it came with, and the outcome it asks for.
func decidedBy(a *approval.Approval, d approval.CallbackDecision, webhookID string) bool {
	by := approval.Decider{ID: approval.PrincipalWebhook, Claim: d.Approver, Message: webhookID}
	return webhookID != "" && a.DecidedAs(d.Decision == approval.DecisionApprove, by, d.Reason)
}

// Status maps an error of the approval package to the HTTP status that
// answers a decider: 404 for an unknown approval, 403 for a decider not
// entitled to it, 409 for an approval no longer pending or a one-time key
// claimed already, and 503 for anything else (a store that could not be reached:
// the decider should try again).
func Status(err error) int {
	switch {
	case errors.Is(err, approval.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, approval.ErrNotEntitled):
		return http.StatusForbidden
	case errors.Is(err, approval.ErrConflict), errors.Is(err, approval.ErrReplayed):
		return http.StatusConflict
	default:
		// The store could not be reached: the decider should try again.
		return http.StatusServiceUnavailable
	}
}

// RefusalText is what a decider is told of a refused decision, by its
// status: a fixed text that says what to do, and nothing of the gateway's
// internals (the log has the details).
func RefusalText(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "the body is not a decision for this approval: want {\"id\": <the URL's id>, \"decision\": \"approve\"|\"deny\", \"approver\", \"reason\"}"
	case http.StatusUnauthorized:
		return "the decision is unsigned, not signed with a decision secret, or too old or new"
	case http.StatusForbidden:
		return "you are not among those who may decide this approval"
	case http.StatusNotFound:
		return "no such approval"
	case http.StatusConflict:
		return "this approval is already decided, cancelled or expired"
	default:
		return "the gateway could not take the decision just now; try again"
	}
}

// refuseCallback logs a refused callback (who sent what matters when
// someone forges decisions) and answers with status and a fixed text. One
// signed with a decision secret is logged at Warn level: its sender holds
// the secret, and something is wrong between it and the gateway. Others
// (unsigned, forged, too large) are logged at Info level, as refused
// callers are, since anyone who reaches the URL can send them; what they
// chose (the URL's id, what the error quotes) is cut.
func (h *Handler) refuseCallback(w http.ResponseWriter, r *http.Request, id string, status int, err error, signed bool) error {
	level := zapcore.InfoLevel
	if signed {
		level = zapcore.WarnLevel
	}
	if ce := h.logger.Check(level, "approval callback refused"); ce != nil {
		ce.Write(zap.String("id", display.Cut(id, maxLoggedID)), zap.Int("status", status), zap.Bool("signed", signed),
			zap.String("remote_ip", h.clientIP(r)), zap.String("error", display.Cut(err.Error(), maxLoggedError)))
	}
	body, _ := json.Marshal(map[string]string{"error": RefusalText(status)})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
	return nil
}
