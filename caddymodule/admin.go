package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/mcpgate/mcpgate/caddymodule/catalog"
)

func init() {
	caddy.RegisterModule(ToolsAdmin{})
}

// ToolsAdmin serves the tool catalog on Caddy's admin API, for operators
// and `mcpgate tools`:
//
//	GET  /mcpgate/tools[?server=<name>]   the tools the gateway knows
//	POST /mcpgate/tools/accept            {"server", "tool", "hash"}
//
// "server" is the name the upstream's tools are kept under: its upstream
// name, else its server name. Accepting pins a tool's current definition,
// lifting the block on a tool whose definition changed. With "hash", the
// accept only succeeds if the current definition still has that hash, so
// an operator never accepts a definition other than the one they
// reviewed. Like the approval routes, accepting answers only operators
// (see ApprovalsAdmin): accepting a changed tool lifts a block.
type ToolsAdmin struct{}

// CaddyModule returns the Caddy module information.
func (ToolsAdmin) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.mcpgate_tools",
		New: func() caddy.Module { return new(ToolsAdmin) },
	}
}

// Routes returns the admin routes.
func (ToolsAdmin) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/mcpgate/tools", Handler: caddy.AdminHandlerFunc(listTools)},
		{Pattern: "/mcpgate/tools/accept", Handler: caddy.AdminHandlerFunc(acceptTool)},
	}
}

// ListedTool is one entry of GET /mcpgate/tools.
type ListedTool struct {
	Server      string         `json:"server"`
	Name        string         `json:"name"`
	Category    string         `json:"category"`
	Annotations map[string]any `json:"annotations"`
	Hash        string         `json:"hash"`
	Changed     bool           `json:"changed"`
}

// AcceptRequest is the body of POST /mcpgate/tools/accept.
type AcceptRequest struct {
	Server string `json:"server"`
	Tool   string `json:"tool"`
	Hash   string `json:"hash,omitempty"`
}

// maxAdminBody bounds the JSON body of an mcpgate admin request.
const maxAdminBody = 1 << 16

// requireMethod refuses, with 405, an admin request not made with method.
func requireMethod(r *http.Request, method string) error {
	if r.Method != method {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method %s not allowed", r.Method)}
	}
	return nil
}

// decodeAdminBody reads an admin request's JSON body (within
// maxAdminBody) into v, refusing what does not decode with 400.
func decodeAdminBody(w http.ResponseWriter, r *http.Request, v any) error {
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxAdminBody)).Decode(v); err != nil {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("decoding request: %w", err)}
	}
	return nil
}

// writeAdminJSON answers an admin request with v as JSON.
func writeAdminJSON(w http.ResponseWriter, v any) error {
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(v)
}

func listTools(w http.ResponseWriter, r *http.Request) error {
	if err := requireMethod(r, http.MethodGet); err != nil {
		return err
	}
	server := r.URL.Query().Get("server")
	listed := []ListedTool{}
	eachCatalog(func(c *catalog.Catalog) bool {
		for _, t := range c.Tools(server) {
			listed = append(listed, ListedTool{
				Server: t.Server, Name: t.Name, Category: string(t.Category),
				Annotations: t.Annotations, Hash: t.Hash, Changed: t.Changed,
			})
		}
		return true
	})
	return writeAdminJSON(w, listed)
}

func acceptTool(w http.ResponseWriter, r *http.Request) error {
	if err := requireMethod(r, http.MethodPost); err != nil {
		return err
	}
	var req AcceptRequest
	if err := decodeAdminBody(w, r, &req); err != nil {
		return err
	}
	if _, err := adminOperator(r, ""); err != nil {
		return err
	}
	if req.Server == "" || req.Tool == "" {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: errors.New("server and tool are required")}
	}
	found := false
	var apiErr error
	eachCatalog(func(c *catalog.Catalog) bool {
		tool, ok := c.Lookup(req.Server, req.Tool)
		if !ok {
			return true
		}
		found = true
		if req.Hash != "" && tool.Hash != req.Hash {
			apiErr = caddy.APIError{HTTPStatus: http.StatusConflict,
				Err: fmt.Errorf("tool %s on %s now has definition %s, not %s: review it again", req.Tool, req.Server, tool.Hash, req.Hash)}
			return false
		}
		if err := c.Accept(r.Context(), req.Server, req.Tool); err != nil {
			apiErr = internalError(fmt.Sprintf("accepting %s on %s", req.Tool, req.Server), err)
			return false
		}
		caddy.Log().Named("mcpgate.tools").Info("tool definition accepted",
			zap.String("server", req.Server), zap.String("tool", req.Tool), zap.String("hash", tool.Hash))
		return true
	})
	if apiErr != nil {
		return apiErr
	}
	if !found {
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no tool %s known on server %s", req.Tool, req.Server)}
	}
	return writeAdminJSON(w, map[string]any{"accepted": req})
}

// Interface guard
var _ caddy.AdminRouter = (*ToolsAdmin)(nil)
