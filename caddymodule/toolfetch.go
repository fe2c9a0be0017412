package caddymodule

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/mcpgate/mcpgate/caddymodule/catalog"
	"github.com/mcpgate/mcpgate/caddymodule/mcphttp"
	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
)

// maxToolPages bounds how many tools/list pages one refresh follows, so a
// server that hands out cursors forever cannot hold a request.
const maxToolPages = 100

// fetchedToolsID is the JSON-RPC id of the gateway's own tools/list
// requests.
const fetchedToolsID = `"mcpgate-tools-list"`

// refreshTools asks the upstream for its whole tool list, on the caller's
// behalf (same credentials, same session, through the same next handler),
// and teaches the catalog what it lists. The gateway does this when a call
// names a tool it has no annotations for, rather than guess its category.
// Concurrent refreshes for one server and session share one fetch. meta is
// the caller's params._meta: under 2026-07-28 it carries the client's
// revision, info and capabilities, which every request must repeat.
func (h *Handler) refreshTools(r *http.Request, next caddyhttp.Handler, server, version string, meta map[string]any) error {
	key := server + "\x00" + r.Header.Get(mcphttp.HeaderSessionID)
	_, err, _ := h.refreshes.Do(key, func() (any, error) {
		asOf := h.catalog.Generation(server)
		var tools []json.RawMessage
		cursor := ""
		for range maxToolPages {
			result, err := h.requestToolsPage(r, next, version, cursor, meta)
			if err != nil {
				return nil, err
			}
			page, nextCursor, err := catalog.ParseToolsList(result)
			if err != nil {
				return nil, err
			}
			tools = append(tools, page...)
			if nextCursor == "" {
				return nil, h.catalog.Learn(r.Context(), server, tools, asOf)
			}
			cursor = nextCursor
		}
		return nil, fmt.Errorf("tools/list did not end within %d pages", maxToolPages)
	})
	return err
}

// requestToolsPage sends one tools/list request to the next handler and
// returns the result.
func (h *Handler) requestToolsPage(r *http.Request, next caddyhttp.Handler, version, cursor string, meta map[string]any) ([]byte, error) {
	params := map[string]any{}
	if cursor != "" {
		params["cursor"] = cursor
	}
	if len(meta) > 0 {
		ownMeta := make(map[string]any, len(meta))
		for key, value := range meta {
			if key != "progressToken" {
				ownMeta[key] = value
			}
		}
		params["_meta"] = ownMeta
	}
	body, err := json.Marshal(map[string]any{
		"jsonrpc": "2.0",
		"id":      json.RawMessage(fetchedToolsID),
		"method":  "tools/list",
		"params":  params,
	})
	if err != nil {
		return nil, fmt.Errorf("encoding tools/list: %w", err)
	}
	req := upstreamPost(r, body)
	if mcphttp.StandardHeadersRequired(version) || r.Header.Get(mcphttp.HeaderMethod) != "" {
		req.Header.Set(mcphttp.HeaderMethod, "tools/list")
	}

	awaited, stop := h.awaitLegacyResponse(r, fetchedToolsID)
	defer stop()
	rec := &responseRecorder{header: make(http.Header), limit: h.MaxBody * 4}
	if err := next.ServeHTTP(rec, req); err != nil {
		return nil, fmt.Errorf("fetching tools/list: %w", err)
	}
	if rec.overflow {
		return nil, errors.New("fetching tools/list: response too large")
	}
	if awaited != nil && rec.status == http.StatusAccepted {
		// HTTP+SSE: the response comes on the session's stream.
		response, err := awaitResponse(r, awaited)
		if err != nil {
			return nil, fmt.Errorf("fetching tools/list: %w", err)
		}
		return findResult("application/json", response, fetchedToolsID)
	}
	if rec.status != 0 && rec.status != http.StatusOK {
		return nil, fmt.Errorf("fetching tools/list: upstream answered HTTP %d", rec.status)
	}
	return findResult(rec.header.Get("Content-Type"), rec.body.Bytes(), fetchedToolsID)
}

// findResult picks the result of the response with the given id out of a
// JSON or SSE reply.
func findResult(contentType string, reply []byte, id string) ([]byte, error) {
	mediaType, _, _ := mime.ParseMediaType(contentType)
	var candidates [][]byte
	switch mediaType {
	case "application/json":
		candidates = [][]byte{reply}
	case "text/event-stream":
		events := mcpmsg.NewSSEReader(bytes.NewReader(reply), len(reply)+1)
		for {
			event, err := events.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("reading tools/list events: %w", err)
			}
			if event.Type == "" || event.Type == "message" {
				candidates = append(candidates, []byte(event.Data))
			}
		}
	default:
		return nil, fmt.Errorf("tools/list reply has content type %q", contentType)
	}
	for _, candidate := range candidates {
		var response struct {
			ID     json.RawMessage `json:"id"`
			Result json.RawMessage `json:"result"`
			Error  *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal(candidate, &response) != nil || string(response.ID) != id {
			continue
		}
		if response.Error != nil {
			return nil, fmt.Errorf("tools/list failed upstream: %s", response.Error.Message)
		}
		return response.Result, nil
	}
	return nil, errors.New("tools/list reply holds no response to the gateway's request")
}

// responseRecorder keeps a whole response in memory, up to a limit.
type responseRecorder struct {
	header   http.Header
	status   int
	body     bytes.Buffer
	limit    int64
	overflow bool
}

func (rec *responseRecorder) Header() http.Header { return rec.header }

func (rec *responseRecorder) WriteHeader(status int) {
	if rec.status == 0 {
		rec.status = status
	}
}

func (rec *responseRecorder) Write(p []byte) (int, error) {
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	if int64(rec.body.Len()+len(p)) > rec.limit {
		rec.overflow = true
		return 0, errors.New("response too large")
	}
	return rec.body.Write(p)
}

// FlushError lets http.ResponseController flush (a no-op here).
func (rec *responseRecorder) FlushError() error { return nil }
