package adminapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"go.uber.org/zap"

	"github.com/mcpgate/mcpgate/caddymodule/catalog"
)

// Tools serves the tool catalog:
//
//	GET  /mcpgate/tools[?server=<name>]   the tools the gateway knows
//	GET  /mcpgate/tools?server=<name>&tool=<name>
//	                                      one tool, with its definition
//	POST /mcpgate/tools/accept            {"server", "tool", "hash"}
//
// "server" is the name the upstream's tools are kept under: its upstream
// name, else its server name. Accepting pins a tool's current definition,
// lifting the block on a tool whose definition changed. With "hash", the
// accept only succeeds if the current definition still has that hash, so
// an operator never accepts a definition other than the one they
// reviewed. Accepting answers only operators: it lifts a block.
type Tools struct {
	// EachCatalog calls f for every tool catalog in use, until f returns
	// false. Required.
	EachCatalog func(f func(*catalog.Catalog) bool)
	// Upstream returns the name the tools of the server an operator names
	// are kept under, in the configuration running now: its upstream
	// name, or the name itself when it names no other. Nil: the name
	// itself.
	Upstream func(server string) string
	// Logs receives accepted definitions (as mcpgate.tools) and failures
	// (as mcpgate.admin).
	Logs Logs
}

// ListedTool is one entry of GET /mcpgate/tools.
type ListedTool struct {
	Server      string         `json:"server"`
	Name        string         `json:"name"`
	Category    string         `json:"category"`
	Annotations map[string]any `json:"annotations,omitempty"`
	Hash        string         `json:"hash"`
	Changed     bool           `json:"changed"`
	// Definition is the tool object as the upstream listed it, whose
	// hash is Hash (a name listed more than once: every listing, as an
	// array): given when an operator's request names the tool, for them
	// to review before accepting it.
	Definition json.RawMessage `json:"definition,omitempty"`
}

// AcceptRequest is the body of POST /mcpgate/tools/accept.
type AcceptRequest struct {
	Server string `json:"server"`
	Tool   string `json:"tool"`
	Hash   string `json:"hash"`
}

// keptUnder is the name a server's tools are kept under (see Upstream).
func (t *Tools) keptUnder(server string) string {
	if t.Upstream == nil || server == "" {
		return server
	}
	return t.Upstream(server)
}

// Routes returns the tool catalog's routes.
func (t *Tools) Routes() []Route {
	return []Route{
		{Pattern: "/mcpgate/tools", Serve: t.list},
		{Pattern: "/mcpgate/tools/accept", Serve: t.accept},
	}
}

func (t *Tools) list(w http.ResponseWriter, r *http.Request) error {
	if err := requireMethod(r, http.MethodGet); err != nil {
		return err
	}
	server, name := r.URL.Query().Get("server"), r.URL.Query().Get("tool")
	if name != "" {
		// A definition the gateway blocks and hides (a changed one, say)
		// is for operators only: the agent it is hidden from may reach a
		// TCP admin endpoint. Checked first: whoever else asks learns
		// nothing of the request either.
		if _, err := operator(r, ""); err != nil {
			return err
		}
		if server == "" {
			return refuse(http.StatusBadRequest, errors.New("tool names a tool of a server: give server too"))
		}
	}
	// A tool's annotations are the upstream's to fill (with anything, a
	// hidden tool's too): shown to operators only, as its definition is.
	_, notOperator := operator(r, "")
	listed := []ListedTool{}
	kept := t.keptUnder(server)
	t.EachCatalog(func(c *catalog.Catalog) bool {
		for _, tool := range c.Tools(kept) {
			if name != "" && tool.Name != name {
				continue
			}
			entry := ListedTool{
				Server: tool.Server, Name: tool.Name, Category: string(tool.Category),
				Annotations: tool.Annotations, Hash: tool.Hash, Changed: tool.Changed,
			}
			if name != "" {
				entry.Definition = tool.Definition
			}
			if notOperator != nil {
				entry.Annotations = nil
			}
			listed = append(listed, entry)
		}
		return true
	})
	if name != "" && len(listed) == 0 {
		return refuse(http.StatusNotFound, fmt.Errorf("no tool %s known on server %s", name, server))
	}
	return writeJSON(w, listed)
}

func (t *Tools) accept(w http.ResponseWriter, r *http.Request) error {
	if err := requireMethod(r, http.MethodPost); err != nil {
		return err
	}
	// Operators first: whoever else asks learns nothing, not even what
	// is wrong with the body.
	if _, err := operator(r, ""); err != nil {
		return err
	}
	var req AcceptRequest
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	if req.Server == "" || req.Tool == "" {
		return refuse(http.StatusBadRequest, errors.New("server and tool are required"))
	}
	if req.Hash == "" {
		// Without it the accept would trust whatever the server lists by
		// then, which nobody reviewed.
		return refuse(http.StatusBadRequest, fmt.Errorf("hash is required: the hash of the definition you reviewed (mcpgate tools show --server %s --tool %s prints it)", req.Server, req.Tool))
	}
	// Every catalog that knows the tool (configurations with other pin
	// files) must hold the definition reviewed before any accepts it: an
	// accept is all or nothing, but for a definition changing between the
	// two steps, which that catalog's accept refuses.
	var refusal error
	t.EachCatalog(func(c *catalog.Catalog) bool {
		if tool, known := c.Lookup(t.keptUnder(req.Server), req.Tool); known && tool.Hash != req.Hash {
			refusal = refuse(http.StatusConflict,
				fmt.Errorf("tool %s on %s now has definition %s, not %s: review it again", req.Tool, req.Server, tool.Hash, req.Hash))
			return false
		}
		return true
	})
	if refusal != nil {
		return refusal
	}
	accepted := ""
	t.EachCatalog(func(c *catalog.Catalog) bool {
		// The hash is checked with the accept, in one step: a
		// definition that changes again meanwhile is not accepted.
		tool, err := c.Accept(r.Context(), t.keptUnder(req.Server), req.Tool, req.Hash)
		switch {
		case errors.Is(err, catalog.ErrUnknownTool):
			return true
		case errors.Is(err, catalog.ErrOtherDefinition):
			refusal = refuse(http.StatusConflict,
				fmt.Errorf("tool %s on %s now has definition %s, not %s: review it again", req.Tool, req.Server, tool.Hash, req.Hash))
			return false
		case err != nil:
			refusal = t.Logs.internalError(fmt.Sprintf("accepting %s on %s", req.Tool, req.Server), err)
			return false
		}
		accepted = tool.Hash
		t.Logs.named("mcpgate.tools").Info("tool definition accepted",
			zap.String("server", req.Server), zap.String("tool", req.Tool), zap.String("hash", tool.Hash))
		return true
	})
	if refusal != nil {
		return refusal
	}
	if accepted == "" {
		return refuse(http.StatusNotFound, fmt.Errorf("no tool %s known on server %s", req.Tool, req.Server))
	}
	// The answer names the definition accepted, which the operator may
	// not have given.
	req.Hash = accepted
	return writeJSON(w, map[string]any{"accepted": req})
}
