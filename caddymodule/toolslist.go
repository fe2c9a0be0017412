package caddymodule

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/mcpgate/mcpgate/caddymodule/catalog"
	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
	"github.com/mcpgate/mcpgate/caddymodule/observe"
	"github.com/mcpgate/mcpgate/caddymodule/policy"
)

// toolsListRequests returns the ids of the allowed tools/list requests
// among the verdicts, and which of them ask for the first page (by
// canonical id).
func toolsListRequests(verdicts []verdict) (ids [][]byte, firstPage map[string]bool) {
	for _, v := range verdicts {
		m := v.message
		if !v.allowed() || m.Kind != mcpmsg.KindRequest || m.Method != "tools/list" {
			continue
		}
		if firstPage == nil {
			firstPage = make(map[string]bool)
		}
		ids = append(ids, m.ID)
		_, paged := m.Params["cursor"]
		firstPage[mcpmsg.CanonicalID(m.ID)] = !paged
	}
	return ids, firstPage
}

// observeReply wraps w so that the replies to tools/list requests teach
// the catalog what the upstream offers and lose the tools the permissions
// table blocks, so that notifications/tools/list_changed marks the
// server's list stale, and so that the requests the upstream sends the
// client, on its own or inside a result, are decided (servertoclient.go).
// Every event stream is read; a JSON reply (which carries no request of
// the server's) only when it answers tools/list, or may ask for input.
func (h *Handler) observeReply(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, version string, session sessionKey, verdicts []verdict) (http.ResponseWriter, func() error) {
	ids, firstPage := toolsListRequests(verdicts)
	if session.id != "" && !session.legacy {
		for _, id := range ids {
			h.sessions.toolsLists.add(session, id)
		}
	}
	rl := h.newRelay(r, next, version, session)
	rl.answering(verdicts)
	server := h.serverName(r)
	var asOf uint64
	if len(ids) > 0 {
		// A tools/list_changed that overtakes the list keeps it stale.
		asOf = h.catalog.Generation(server)
	}
	readReplyUncompressed(r)
	return observe.Wrap(w, observe.Hooks{
		WatchAll: true,
		RewriteResult: func(id, result []byte) ([]byte, error) {
			if first, listed := firstPage[mcpmsg.CanonicalID(id)]; listed {
				h.sessions.toolsLists.take(session, id)
				return h.hideBlockedTools(r, version, result, first, asOf)
			}
			return rl.checkInputRequests(id, result)
		},
		PassJSON:  ids == nil && !rl.mayAskForInput(),
		Intercept: rl.intercept,
		OnMessage: h.watchToolListChanges(server),
		OnError:   h.logReplyError(r),
	})
}

// readReplyUncompressed asks the upstream for an uncompressed reply, for
// replies the gateway reads: it refuses compressed ones rather than guess.
func readReplyUncompressed(r *http.Request) {
	r.Header.Set("Accept-Encoding", "identity")
}

func (h *Handler) watchToolListChanges(server string) func(*mcpmsg.Message) {
	return func(m *mcpmsg.Message) {
		if m.Kind == mcpmsg.KindNotification && m.Method == "notifications/tools/list_changed" {
			h.catalog.Forget(server)
		}
	}
}

func (h *Handler) logReplyError(r *http.Request) func(error) {
	return func(err error) {
		h.logger.Error("upstream reply refused or cut",
			zap.String("server", h.serverName(r)),
			zap.String("request_id", requestID(r)),
			zap.Error(err))
	}
}

// hideBlockedTools records one tools/list result in the catalog and
// returns it without the tools whose permission is block, so the model
// never tries them. Tools that need approval stay listed. A result the
// gateway cannot read is an error, which the client receives instead.
func (h *Handler) hideBlockedTools(r *http.Request, version string, result []byte, firstPage bool, asOf uint64) ([]byte, error) {
	server := h.serverName(r)
	tools, nextCursor, err := catalog.ParseToolsList(result)
	if err != nil {
		return nil, fmt.Errorf("reading the upstream's tools/list: %w", err)
	}
	if firstPage && nextCursor == "" {
		err = h.catalog.Learn(r.Context(), server, tools, asOf)
	} else {
		err = h.catalog.LearnPage(r.Context(), server, tools)
	}
	if err != nil {
		h.logger.Error("could not record the upstream's tools", zap.String("server", server), zap.Error(err))
	}

	base := h.baseInput(r, version)
	base.Kind, base.Method = mcpmsg.KindRequest.String(), "tools/call"
	kept := make([]json.RawMessage, 0, len(tools))
	for _, raw := range tools {
		var named struct {
			Name string `json:"name"`
		}
		if err := json.Unmarshal(raw, &named); err != nil {
			return nil, fmt.Errorf("reading a listed tool: %w", err)
		}
		tool, _ := h.knownTool(server, named.Name)
		input := *base
		input.Tool = policyTool(tool, nil)
		permission, defined, err := h.engine.ToolPermission(r.Context(), &input)
		if err != nil {
			h.logger.Error("tool permission failed; tool hidden", zap.String("server", server), zap.String("tool", named.Name), zap.Error(err))
		}
		if defined && permission.Action == policy.ActionBlock {
			continue
		}
		kept = append(kept, raw)
	}
	if len(kept) == len(tools) {
		return result, nil
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(result, &members); err != nil {
		return nil, fmt.Errorf("reading the upstream's tools/list: %w", err)
	}
	keptJSON, err := json.Marshal(kept)
	if err != nil {
		return nil, fmt.Errorf("encoding tools/list: %w", err)
	}
	members["tools"] = keptJSON
	return json.Marshal(members)
}
