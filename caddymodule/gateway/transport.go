package gateway

import (
	"fmt"
	"net/http"

	"github.com/mcpgate/mcpgate/caddymodule/mcphttp"
	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
)

// checkTransport is the stage that holds the parsed body to the rules of
// its transport and revision: batches only where the revision has them,
// standard headers that agree with the body, and responses only to
// requests the gateway relayed to this session.
func (x *exchange) checkTransport() error {
	if x.body.Batch && x.legacy != nil {
		return refuse(http.StatusBadRequest, mcpmsg.CodeInvalidRequest, "JSON-RPC batches are not accepted on the HTTP+SSE transport")
	}
	if x.body.Batch && !mcphttp.BatchesAllowed(x.version) {
		return refuse(http.StatusBadRequest, mcpmsg.CodeInvalidRequest,
			"JSON-RPC batches are not part of MCP "+x.version+" (removed in 2025-06-18)")
	}
	headerRules := x.version
	if x.legacy != nil || mcphttp.CheckVersion(x.version) != nil {
		// HTTP+SSE has no standard headers to require, nor has a revision
		// the gateway does not know (which only an initialize gets this
		// far with: the server answers with a revision it speaks); those
		// present must still agree with the body.
		headerRules = mcphttp.DefaultVersion
	}
	for i := range x.body.Messages {
		if err := mcphttp.CheckHeaders(x.r.Header, headerRules, bodyFacts(&x.body.Messages[i])); err != nil {
			return refuse(http.StatusBadRequest, mcphttp.CodeHeaderMismatch, err.Error())
		}
	}
	// Once the headers are checked against the names the client sent.
	if err := x.renameCalls(); err != nil {
		return err
	}
	if !x.body.Batch {
		// The client's answer to the gateway's own question goes no
		// further (confirm.go).
		if m := &x.body.Messages[0]; m.Kind == mcpmsg.KindResponse && x.g.sessions.own.deliver(x.session, m) {
			x.annotateUndecided(x.version)
			x.w.WriteHeader(http.StatusAccepted)
			return errDone
		}
	}
	if err := x.checkInputResponses(); err != nil {
		return err
	}
	if err := x.takeApprovalTokens(); err != nil {
		return err
	}
	if err := x.checkTasks(); err != nil {
		return err
	}
	for i := range x.body.Messages {
		m := &x.body.Messages[i]
		if m.Kind == mcpmsg.KindResponse && x.body.Batch && x.g.sessions.own.awaits(x.session, m) {
			return refuse(http.StatusBadRequest, mcpmsg.CodeInvalidRequest,
				fmt.Sprintf("response for id %s answers the gateway's own question (a confirmation): send it alone, not in a batch", m.ID))
		}
		if m.Kind == mcpmsg.KindResponse && !x.g.sessions.relayed.took(x.session, m.ID) {
			return refuse(http.StatusForbidden, mcpmsg.CodeInvalidRequest,
				fmt.Sprintf("response for id %s answers no request the gateway relayed to this session", m.ID))
		}
	}
	return nil
}

func bodyFacts(m *mcpmsg.Message) mcphttp.BodyFacts {
	return mcphttp.BodyFacts{
		IsRequest:       m.Kind == mcpmsg.KindRequest,
		Method:          m.Method,
		Params:          m.Params,
		ProtocolVersion: metaProtocolVersion(m),
	}
}
