package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/mcpgate/mcpgate/caddymodule/catalog"
	"github.com/mcpgate/mcpgate/caddymodule/mcphttp"
	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
	"github.com/mcpgate/mcpgate/caddymodule/secrets"
)

// maxToolPages bounds how many tools/list pages one refresh follows, so a
// server that hands out cursors forever cannot hold a request.
const maxToolPages = 100

// fetchedToolsIDPrefix begins the JSON-RPC id of each tools/list request
// of the gateway's own; a random nonce ends it, so that no client can
// make a request with the same id and have its answer taken for the
// gateway's (on an HTTP+SSE session, where both arrive on one stream).
const fetchedToolsIDPrefix = "mcpgate-tools-list-"

// toolsFetcher asks the upstream for its whole tool list, on a client's
// behalf, and teaches the catalog what it lists. The gateway does this
// when a call names a tool it has no annotations for, rather than guess
// its category.
type toolsFetcher struct {
	// generation reads the catalog's generation of the list
	// (Gateway.listGeneration).
	generation func() uint64
	// learn records a whole tool list (Gateway.learnList).
	learn     func(ctx context.Context, tools []json.RawMessage, asOf uint64, started time.Time, renew bool) error
	refreshes *singleflight.Group
	// send sends one request of the gateway's own and returns the reply's
	// content type and body (see exchange.sendOwnRequest).
	send func(body []byte, id string, header http.Header) (string, []byte, error)
	// ctx of the client's request, for the catalog.
	r *http.Request
	// version is the client's revision; session its session.
	version string
	session sessionKey
	// methodHeader is set when the request's own Mcp-Method header was
	// present, so the gateway's requests carry one too.
	methodHeader bool
}

// fetcher returns the tools fetcher for the exchange's client.
func (x *exchange) fetcher() *toolsFetcher {
	return &toolsFetcher{
		generation:   x.g.listGeneration,
		learn:        x.g.learnList,
		refreshes:    &x.g.refreshes,
		send:         x.sendOwnRequest,
		r:            x.r,
		version:      x.version,
		session:      x.session,
		methodHeader: x.r.Header.Get(mcphttp.HeaderMethod) != "",
	}
}

// refresh fetches the upstream's tool list whole and records it; with
// renew, it renews the list held (catalog.Renewable). Concurrent
// refreshes for one session share one fetch. meta is what the list's
// requests repeat of the caller's params._meta (exchange.fetchMeta).
// (Sessions do not share one: a fetch another session made can fail for
// that session alone, its client gone, its session ended, its token not
// allowed to list.)
func (f *toolsFetcher) refresh(server string, meta map[string]any, renew bool) error {
	_, err, _ := f.refreshes.Do(f.session.String(), func() (any, error) {
		asOf, started := f.generation(), time.Now()
		tools, err := f.list(meta)
		if err != nil {
			return nil, err
		}
		return nil, f.learn(f.r.Context(), tools, asOf, started, renew)
	})
	return err
}

// list fetches the upstream's tool list whole, page by page.
func (f *toolsFetcher) list(meta map[string]any) ([]json.RawMessage, error) {
	var tools []json.RawMessage
	cursor := ""
	for range maxToolPages {
		result, err := f.page(cursor, meta)
		if err != nil {
			return nil, err
		}
		page, _, nextCursor, err := catalog.ParseToolsList(result)
		if err != nil {
			return nil, err
		}
		tools = append(tools, page...)
		if len(tools) > catalog.MaxTools {
			return nil, fmt.Errorf("tools/list lists more than %d tools, more than the gateway keeps for a server", catalog.MaxTools)
		}
		if nextCursor == "" {
			return tools, nil
		}
		cursor = nextCursor
	}
	return nil, fmt.Errorf("tools/list did not end within %d pages", maxToolPages)
}

// repeatedMeta are the members of a caller's params._meta that the
// gateway's own tools/list repeats: under 2026-07-28 every request
// carries the client's revision, info and capabilities there. No other
// member is repeated: the call may yet be refused, and what the client
// put there of its own (or a progress token, which names the call's
// progress) must not reach the server ahead of its decision.
var repeatedMeta = []string{mcphttp.MetaProtocolVersion, metaClientInfo, metaClientCapabilities}

// fetchMeta is what the gateway's own tools/list, fetched for a call
// whose params are params, repeats of its _meta (repeatedMeta); nil when
// there is none. Under block_secrets it fails when that holds a
// well-known credential, which the list would hand the server before the
// call is decided (the call is then blocked: errMetaSecrets).
func (x *exchange) fetchMeta(params map[string]any) (map[string]any, error) {
	meta, _ := params["_meta"].(map[string]any)
	var repeated map[string]any
	for _, name := range repeatedMeta {
		if value, ok := meta[name]; ok {
			if repeated == nil {
				repeated = make(map[string]any, len(repeatedMeta))
			}
			repeated[name] = value
		}
	}
	if repeated != nil && x.g.blocksSecrets() {
		if found := secrets.Find(map[string]any{"_meta": repeated}); len(found) > 0 {
			return nil, &metaSecretsError{found: found}
		}
	}
	return repeated, nil
}

// metaSecretsError is why a call was refused, under block_secrets, whose
// _meta holds a credential that the gateway's own tools/list, fetched to
// decide it, would have repeated to the server (fetchMeta).
type metaSecretsError struct{ found []secrets.Finding }

func (e *metaSecretsError) Error() string {
	return clientSecretsReason("its params hold", e.found)
}

// reason is the call's refusal, naming its tool.
func (e *metaSecretsError) reason(tool string) string {
	return clientSecretsReason(fmt.Sprintf("tool %q is blocked: its params hold", tool), e.found)
}

// page sends one tools/list request and returns its result.
func (f *toolsFetcher) page(cursor string, meta map[string]any) ([]byte, error) {
	params := map[string]any{}
	if cursor != "" {
		params["cursor"] = cursor
	}
	if len(meta) > 0 {
		params["_meta"] = meta
	}
	id := `"` + fetchedToolsIDPrefix + newNonce() + `"`
	body, err := json.Marshal(map[string]any{
		"jsonrpc": "2.0",
		"id":      json.RawMessage(id),
		"method":  "tools/list",
		"params":  params,
	})
	if err != nil {
		return nil, fmt.Errorf("encoding tools/list: %w", err)
	}
	header := http.Header{}
	if mcphttp.StandardHeadersRequired(f.version) || f.methodHeader {
		header.Set(mcphttp.HeaderMethod, "tools/list")
	}
	contentType, reply, err := f.send(body, id, header)
	if err != nil {
		return nil, fmt.Errorf("fetching tools/list: %w", err)
	}
	return findResult(contentType, reply, id)
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
