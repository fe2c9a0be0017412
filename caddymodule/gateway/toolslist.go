package gateway

import (
	"context"
	"encoding/json"
	"fmt"

	"go.uber.org/zap"

	"github.com/mcpgate/mcpgate/caddymodule/catalog"
	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
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

// watchToolListChanges marks the upstream's tool list stale when it
// announces it changed.
func (g *Gateway) watchToolListChanges() func(*mcpmsg.Message) {
	return func(m *mcpmsg.Message) {
		if m.Kind == mcpmsg.KindNotification && m.Method == "notifications/tools/list_changed" {
			g.catalog.Forget(g.cfg.Upstream)
		}
	}
}

// hideBlockedTools records one tools/list result in the catalog and
// returns it without the tools whose permission is block, so the model
// never tries them. Tools that need approval stay listed. A result the
// gateway cannot read is an error, which the client receives instead.
func (x *exchange) hideBlockedTools(version string, result []byte, firstPage bool, asOf uint64) ([]byte, error) {
	g, r := x.g, x.r
	server := g.cfg.Upstream
	tools, names, nextCursor, err := catalog.ParseToolsList(result)
	if err != nil {
		return nil, fmt.Errorf("reading the upstream's tools/list: %w", err)
	}
	if firstPage && nextCursor == "" {
		err = g.learnList(r.Context(), tools, asOf)
	} else {
		err = g.catalog.LearnPage(r.Context(), server, tools)
	}
	if err != nil {
		g.logger.Error("could not record the upstream's tools", zap.String("server", server), zap.Error(err))
	}

	base := x.baseInput(version)
	base.Kind, base.Method = mcpmsg.KindRequest.String(), "tools/call"
	kept := make([]json.RawMessage, 0, len(tools))
	for i, raw := range tools {
		name := names[i]
		tool, _ := g.knownTool(name)
		input := *base
		input.Tool = policyTool(tool, nil)
		permission, defined, err := g.cfg.Engine.ToolPermission(r.Context(), &input)
		if err != nil {
			g.logger.Error("tool permission failed; tool hidden", zap.String("server", server), zap.String("tool", name), zap.Error(err))
		}
		if err != nil || defined && permission.Action == policy.ActionBlock {
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

// learnList records a whole tool list of the upstream, and logs, once per
// tool, each tool the configuration names that the list lacks.
func (g *Gateway) learnList(ctx context.Context, tools []json.RawMessage, asOf uint64) error {
	err := g.catalog.Learn(ctx, g.cfg.Upstream, tools, asOf)
	for _, name := range g.cfg.NamedTools {
		if _, listed := g.catalog.Lookup(g.cfg.Upstream, name); listed {
			continue
		}
		if _, warned := g.unlistedWarned.LoadOrStore(name, true); !warned {
			g.logger.Warn("the permissions table names a tool the upstream does not list: its entry applies to no call (a misspelt name?)",
				zap.String("server", g.cfg.Server), zap.String("tool", name))
		}
	}
	return err
}
