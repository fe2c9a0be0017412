package adminapi

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/mcpgate/mcpgate/caddymodule/approval"
	"github.com/mcpgate/mcpgate/caddymodule/approvalhttp"
)

// Approvals serves approvals, to operators only:
//
//	GET  /mcpgate/approvals[?all=1]         pending approvals (all remembered, with all=1)
//	POST /mcpgate/approvals/<id>/approve    {"approver", "reason"}
//	POST /mcpgate/approvals/<id>/deny       {"approver", "reason"}
//
// A decision here is like a signed callback: the first one wins, a later
// one gets 409. It is refused with approvalhttp's statuses and texts.
type Approvals struct {
	// Services hold the approvals listed and decided. Required.
	Services approvalhttp.Services
	// Logs receives failures, as mcpgate.admin.
	Logs Logs
}

// Decision is the body of POST /mcpgate/approvals/<id>/approve|deny.
type Decision struct {
	// Approver is who the operator says decided: recorded beside the
	// verified approver "admin", never trusted.
	Approver string `json:"approver,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

// decisionPrefix is the path under which an approval is decided.
const decisionPrefix = "/mcpgate/approvals/"

// Routes returns the approvals' routes.
func (a *Approvals) Routes() []Route {
	return []Route{
		{Pattern: "/mcpgate/approvals", Serve: a.list},
		{Pattern: decisionPrefix, Serve: a.decide},
	}
}

func (a *Approvals) list(w http.ResponseWriter, r *http.Request) error {
	if err := requireMethod(r, http.MethodGet); err != nil {
		return err
	}
	if _, err := operator(r, ""); err != nil {
		return err
	}
	all, err := boolQuery(r, "all")
	if err != nil {
		return err
	}
	listed := []*approval.Approval{}
	seen := make(map[string]bool)
	var listErr error
	now := time.Now()
	a.Services.Each(func(s *approval.Service) bool {
		list, err := s.List(r.Context())
		if err != nil {
			listErr = err
			return false
		}
		for _, held := range list {
			// Another gateway's approvals (a Redis shared under another
			// decision secret) are its operators' to see and decide.
			if seen[held.ID] || !s.Owns(held) || (!all && (held.State != approval.Pending || !held.Live(now))) {
				continue
			}
			seen[held.ID] = true
			listed = append(listed, held)
		}
		return true
	})
	if listErr != nil {
		return a.Logs.internalError("listing approvals", listErr)
	}
	return writeJSON(w, listed)
}

func (a *Approvals) decide(w http.ResponseWriter, r *http.Request) error {
	if err := requireMethod(r, http.MethodPost); err != nil {
		return err
	}
	id, verb, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, decisionPrefix), "/")
	if !ok || (verb != "approve" && verb != "deny") {
		return refuse(http.StatusNotFound, errors.New("use /mcpgate/approvals/<id>/approve or /deny"))
	}
	// Operators first: whoever else asks learns nothing, not even what
	// is wrong with the body. The claim comes with the body.
	if _, err := operator(r, ""); err != nil {
		return err
	}
	var req Decision
	if r.ContentLength != 0 {
		if err := decodeBody(w, r, &req); err != nil {
			return err
		}
	}
	by, err := operator(r, req.Approver)
	if err != nil {
		return err
	}
	service, err := a.Services.Find(r.Context(), id, nil)
	if err == nil {
		var decided *approval.Approval
		if decided, err = service.Decide(r.Context(), id, verb == "approve", by, req.Reason); err == nil {
			return writeJSON(w, decided)
		}
		if errors.Is(err, approval.ErrConflict) {
			// An operator retrying a decision answered 503 (saved as the
			// store went away) finds it taken, not another's.
			if settled, getErr := service.Get(r.Context(), id); getErr == nil && settled.DecidedAs(verb == "approve", by, req.Reason) {
				return writeJSON(w, settled)
			}
		}
	}
	status := approvalhttp.Status(err)
	if status == http.StatusServiceUnavailable {
		a.Logs.named("mcpgate.admin").Error("deciding approval failed", zap.String("id", id), zap.Error(err))
	}
	return refuse(status, errors.New(approvalhttp.RefusalText(status)))
}
