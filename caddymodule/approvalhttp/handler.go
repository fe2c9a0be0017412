// Package approvalhttp serves approvals over HTTP: the signed decision
// callbacks that approval webhooks ask for (POST …/<id>), and the approval
// inbox, a web page on which signed-in approvers see the approvals waiting
// for them and approve or deny them. It knows nothing of Caddy: its host
// finds the approval services, authenticates the inbox's accounts and
// turns the errors it returns into responses (see Error).
package approvalhttp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"go.uber.org/zap"

	"github.com/mcpgate/mcpgate/caddymodule/approval"
)

// Services are the approval services a Handler decides for, as its host
// keeps them.
type Services interface {
	// Find returns the service whose store knows approval id and which
	// owns it, among those accept accepts (every one, when accept is nil).
	// Its error wraps approval.ErrNotFound when there is none, and is
	// another error when a store could not be reached: the approval may
	// exist, and the decider should try again.
	Find(ctx context.Context, id string, accept func(*approval.Service) bool) (*approval.Service, error)
	// Each calls f for every service, until f returns false.
	Each(f func(*approval.Service) bool)
}

// Error is a request refused with an HTTP status, which the host answers
// as it answers its own handlers' errors (in Caddy: caddyhttp.Error for
// the approvals endpoints, caddy.APIError for the admin routes of
// package adminapi, which refuses with it too).
type Error struct {
	// Status is the response's HTTP status.
	Status int
	// Err is why the request was refused, for the host's log.
	Err error
}

// Error returns the reason with its status.
func (e *Error) Error() string {
	return fmt.Sprintf("HTTP %d: %v", e.Status, e.Err)
}

// Unwrap returns the reason.
func (e *Error) Unwrap() error { return e.Err }

// refuse returns the Error that answers a request with status.
func refuse(status int, err error) error {
	return &Error{Status: status, Err: err}
}

// Config is everything a Handler needs, resolved by its host.
type Config struct {
	// Services hold the approvals the handler decides. Required.
	Services Services
	// Inbox, when set, serves the inbox page at the handler's mount path
	// (a path ending in "/"); without it no page is served.
	Inbox *Inbox
	// Logger receives refused callbacks and decisions, and failed
	// sign-ins. Default: no log.
	Logger *zap.Logger
	// ClientIP returns the client's address as the host determined it
	// (honouring trusted proxies), for the log. Default: the request's
	// RemoteAddr.
	ClientIP func(*http.Request) string
}

// Handler serves approval callbacks and, with an inbox, the inbox page.
type Handler struct {
	services Services
	inbox    *Inbox
	logger   *zap.Logger
	clientIP func(*http.Request) string
}

// New returns a handler with cfg.
func New(cfg Config) *Handler {
	h := &Handler{services: cfg.Services, inbox: cfg.Inbox, logger: cfg.Logger, clientIP: cfg.ClientIP}
	if h.logger == nil {
		h.logger = zap.NewNop()
	}
	if h.clientIP == nil {
		h.clientIP = func(r *http.Request) string { return r.RemoteAddr }
	}
	return h
}

// Serve answers callbacks (POST …/<id>), and the inbox page (GET and POST
// on a path ending in "/") when there is an inbox. A refusal it leaves to
// the host is returned as an *Error.
func (h *Handler) Serve(w http.ResponseWriter, r *http.Request) error {
	id := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
	switch {
	case id != "" && r.Method == http.MethodPost:
		return h.serveCallback(w, r, id)
	case id != "":
		w.Header().Set("Allow", http.MethodPost)
		return refuse(http.StatusMethodNotAllowed, errors.New("decisions are POSTed"))
	case h.inbox == nil:
		return refuse(http.StatusNotFound, errors.New("no approval inbox is configured"))
	default:
		return h.serveInbox(w, r)
	}
}
