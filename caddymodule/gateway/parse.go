package gateway

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/mcpgate/mcpgate/caddymodule/mcphttp"
	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
)

// parse is the stage that reads the body strictly as one JSON-RPC message
// or a batch, and finds the MCP revision it was sent under.
func (x *exchange) parse() error {
	body, err := mcpmsg.Parse(x.raw, x.g.cfg.Limits)
	if err == nil {
		err = body.CheckParams()
	}
	if err == nil {
		if notification := body.CheckNotifications(); notification != nil {
			err = notification
		}
	}
	if err != nil {
		refused := &refusal{status: http.StatusBadRequest, code: mcpmsg.CodeInvalidRequest, message: err.Error()}
		var perr *mcpmsg.Error
		if errors.As(err, &perr) {
			refused.code, refused.message, refused.id = perr.Code, perr.Message, perr.ID
		}
		return refused
	}
	x.body = body
	if x.version, err = protocolVersion(x.r.Header, body, x.legacy != nil); err != nil {
		return refuse(http.StatusBadRequest, mcpmsg.CodeInvalidRequest, err.Error())
	}
	if err := x.offerKnownRevision(); err != nil {
		return err
	}
	x.learnCapabilities()
	return nil
}

// offerKnownRevision makes an initialize that proposes a revision the
// gateway does not understand (a newer one, or none it knows) propose the
// newest it does (or the one the request was sent under, if it named one
// the gateway knows), as a server that does not speak the client's answers
// with one it does: the server then answers with a revision the gateway
// reads (that one or an older), which the client takes or declines.
// Passed on as proposed, the server could agree to it, and every request
// of the session after initialize would be refused for its revision,
// leaving the session open upstream and the client without one.
func (x *exchange) offerKnownRevision() error {
	if x.body.Batch {
		return nil
	}
	m := &x.body.Messages[0]
	proposed, ok := m.Params["protocolVersion"].(string)
	check, _ := versionRules(x.legacy != nil)
	if m.Kind != mcpmsg.KindRequest || m.Method != "initialize" || !ok || check(proposed) == nil {
		return nil
	}
	// The revision the request was sent under, when it named one the
	// gateway knows (its header, its _meta), so that the body agrees with
	// it; else the newest.
	offered := mcphttp.LatestVersion
	if x.version != proposed && check(x.version) == nil {
		offered = x.version
	}
	if err := x.rewriteParams(m, func(params map[string]any) error {
		params["protocolVersion"] = offered
		return nil
	}); err != nil {
		// (The gateway's own failure: what it re-encodes passed the parse.)
		return refuse(http.StatusInternalServerError, mcpmsg.CodeInternalError, fmt.Sprintf("offering the server revision %s: %v", offered, err))
	}
	// (The exchange's revision stays the one proposed: its headers are
	// held to 2025-03-26's rules, as checkTransport holds an unknown
	// revision's.)
	return nil
}

// versionHeader returns the request's Mcp-Protocol-Version header, and
// whether it gave one; an error when it gives more than one (the gateway
// would read one, a server perhaps another).
func versionHeader(header http.Header) (version string, given bool, err error) {
	switch values := header.Values(mcphttp.HeaderProtocolVersion); len(values) {
	case 0:
		return "", false, nil
	case 1:
		return values[0], true, nil
	default:
		return "", true, fmt.Errorf("%s header given %d times", mcphttp.HeaderProtocolVersion, len(values))
	}
}

// protocolVersion returns the MCP revision a POST was sent under: the
// Mcp-Protocol-Version header, else the revision a 2026-07-28 body names in
// _meta, else the revision an initialize request proposes, else the
// spec's default for requests without the header. legacy is set for the
// HTTP+SSE transport, which has revisions and a default of its own.
func protocolVersion(header http.Header, body *mcpmsg.Body, legacy bool) (string, error) {
	check, fallback := versionRules(legacy)
	if version, given, err := versionHeader(header); given || err != nil {
		if err != nil {
			return "", err
		}
		return version, check(version)
	}
	if body.Batch {
		// A batch is 2025-03-26's (a later revision refuses it, below): an
		// element that names another revision in its _meta makes it that
		// revision's, and so refused, not read as 2025-03-26.
		for i := range body.Messages {
			if version := metaProtocolVersion(&body.Messages[i]); version != "" && version != fallback {
				return version, check(version)
			}
		}
		return fallback, nil
	}
	m := &body.Messages[0]
	if version := metaProtocolVersion(m); version != "" {
		return version, check(version)
	}
	if m.Method == "initialize" {
		// The client proposes; the server may answer with an older
		// revision it supports, so this one is not checked.
		if proposed, ok := m.Params["protocolVersion"].(string); ok {
			return proposed, nil
		}
	}
	return fallback, nil
}

// metaProtocolVersion returns the revision a 2026-07-28 message names in
// params._meta, if any.
func metaProtocolVersion(m *mcpmsg.Message) string {
	meta, _ := m.Params["_meta"].(map[string]any)
	version, _ := meta[mcphttp.MetaProtocolVersion].(string)
	return version
}

// versionRules are the revision rules of a transport (legacy: HTTP+SSE,
// else Streamable HTTP): how a revision is checked, and the one assumed
// when a request names none.
func versionRules(legacy bool) (check func(string) error, fallback string) {
	if legacy {
		return mcphttp.CheckLegacySSEVersion, mcphttp.LegacySSEDefaultVersion
	}
	return mcphttp.CheckVersion, mcphttp.DefaultVersion
}
