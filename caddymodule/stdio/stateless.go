package stdio

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/caddymodule/mcphttp"
)

// This file serves stateless clients: MCP 2026-07-28 has no initialize
// and no session; each request stands alone and carries the client's
// revision, information and capabilities in _meta (SEP-2575). A stdio
// server speaks an earlier revision and expects one client for its
// lifetime, so the gateway keeps a pool of processes it initialized
// itself, and lends one to each stateless request, exclusively, until
// the response: ids, progress tokens and cancellation cannot mix two
// clients' requests. What a process keeps between requests is shared by
// the stateless clients it serves; a server that keeps per-client state
// should be served to sessions only (stateless_pool 0).

// sessionVersions are the revisions served with sessions, newest first.
var sessionVersions = []string{mcphttp.Version20251125, mcphttp.Version20250618, mcphttp.Version20250326}

// serveStateless answers a POST of MCP 2026-07-28: server/discover itself,
// anything else with a pooled process.
func (srv *Server) serveStateless(w http.ResponseWriter, r *http.Request, msgs []jsonrpc.Message, version string) {
	request, ok := msgs[0].(*jsonrpc.Request)
	switch {
	case len(msgs) != 1:
		writeError(w, http.StatusBadRequest, jsonrpc.ID{}, jsonrpc.CodeInvalidRequest, "MCP "+version+" has no batches")
		return
	case !ok || !request.IsCall():
		// Nothing to relate a notification or a response to without a
		// session.
		w.WriteHeader(http.StatusAccepted)
		return
	case srv.cfg.StatelessPool == 0:
		// Unsupported Protocol Version (SEP-2575): clients that also speak
		// an earlier revision initialize a session instead.
		writeErrorData(w, http.StatusBadRequest, request.ID, mcp.CodeUnsupportedProtocolVersion,
			"this gateway serves this MCP server to sessions only; initialize one with an earlier protocol version",
			mcp.UnsupportedProtocolVersionData{Supported: sessionVersions, Requested: version})
		return
	case request.Method == "subscriptions/listen":
		writeError(w, http.StatusNotFound, request.ID, jsonrpc.CodeMethodNotFound,
			"subscriptions/listen is not served to stateless clients of a stdio server")
		return
	}
	worker, err := srv.pool.acquire(r.Context())
	if err != nil {
		answerFailure(w, request.ID, err)
		return
	}
	if request.Method == "server/discover" {
		srv.discover(w, request, worker.initialized)
		srv.pool.release(worker, true)
		return
	}
	srv.pool.release(worker, worker.post(w, r, msgs, statelessStatus))
}

// discover answers server/discover for the server, from what it answered
// the gateway's initialize.
func (srv *Server) discover(w http.ResponseWriter, request *jsonrpc.Request, initialized *mcp.InitializeResult) {
	result := &mcp.DiscoverResult{
		SupportedVersions: append([]string{mcphttp.Version20260728}, sessionVersions...),
		Capabilities:      initialized.Capabilities,
		Instructions:      initialized.Instructions,
	}
	if initialized.ServerInfo != nil {
		result.Meta = mcp.Meta{mcp.MetaKeyServerInfo: initialized.ServerInfo}
	}
	raw, err := json.Marshal(result)
	if err != nil {
		writeError(w, http.StatusInternalServerError, request.ID, jsonrpc.CodeInternalError, "encoding server/discover: "+err.Error())
		return
	}
	data, err := jsonrpc.EncodeMessage(&jsonrpc.Response{ID: request.ID, Result: raw})
	if err != nil {
		writeError(w, http.StatusInternalServerError, request.ID, jsonrpc.CodeInternalError, "encoding server/discover: "+err.Error())
		return
	}
	mcphttp.WriteJSON(w, http.StatusOK, data)
}

// statelessStatus is the HTTP status of a JSON-RPC response under MCP
// 2026-07-28, which gives some errors their own (SEP-2575): 404 for an
// unknown method, 400 for invalid params and for the capability and
// version errors.
func statelessStatus(response *jsonrpc.Response) int {
	var wireErr *jsonrpc.Error
	if !errors.As(response.Error, &wireErr) {
		return http.StatusOK
	}
	switch wireErr.Code {
	case jsonrpc.CodeMethodNotFound:
		return http.StatusNotFound
	case jsonrpc.CodeInvalidParams, mcp.CodeUnsupportedProtocolVersion, mcp.CodeMissingRequiredClientCapabilities:
		return http.StatusBadRequest
	}
	return http.StatusOK
}

// pool keeps up to size warm processes for stateless requests, started on
// demand and stopped after idle_timeout unused.
type pool struct {
	srv  *Server
	size int

	mu sync.Mutex
	// idle are the warm processes no request holds, most recently used
	// last; ended ones are skipped when found.
	idle []*session
	// workers counts the processes started and not reaped.
	workers int
	// changed is closed (and replaced) when a process is returned or
	// reaped, waking the requests that wait for one.
	changed chan struct{}
}

func newPool(srv *Server, size int) *pool {
	return &pool{srv: srv, size: size, changed: make(chan struct{})}
}

// acquire lends a warm process to one request: an idle one, or a new
// one, or the first to come free within init_timeout.
func (p *pool) acquire(ctx context.Context) (*session, error) {
	ctx, cancel := context.WithTimeout(ctx, p.srv.cfg.InitTimeout)
	defer cancel()
	for {
		p.mu.Lock()
		for len(p.idle) > 0 {
			worker := p.idle[len(p.idle)-1]
			p.idle = p.idle[:len(p.idle)-1]
			if worker.begin() {
				p.mu.Unlock()
				return worker, nil
			}
		}
		if p.workers < p.size {
			p.workers++
			p.mu.Unlock()
			return p.start(ctx)
		}
		changed := p.changed
		p.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, &busy{fmt.Sprintf("all %d pooled processes (stateless_pool) stayed busy for %s; retry later", p.size, p.srv.cfg.InitTimeout)}
		}
	}
}

// start starts a process for the pool and initializes it as a client
// with no capabilities: the stateless clients it will serve cannot answer
// requests from it.
func (p *pool) start(ctx context.Context) (*session, error) {
	worker, err := p.srv.startSession(true, p.gone)
	if err != nil {
		p.gone()
		return nil, err
	}
	worker.begin()
	params, _ := json.Marshal(&mcp.InitializeParams{
		ProtocolVersion: sessionVersions[0],
		ClientInfo:      &mcp.Implementation{Name: "mcpgate", Version: "1"},
		Capabilities:    &mcp.ClientCapabilities{},
	})
	id, _ := jsonrpc.MakeID("mcpgate-initialize")
	request := &jsonrpc.Request{ID: id, Method: "initialize", Params: params}
	response, failure := p.srv.handshake(ctx, worker, request)
	if failure == nil && response.Error != nil {
		failure = &ending{message: "the MCP server refused the gateway's initialize: " + response.Error.Error()}
	}
	var initialized mcp.InitializeResult
	if failure == nil {
		if err := json.Unmarshal(response.Result, &initialized); err != nil {
			failure = &ending{message: "reading the MCP server's answer to initialize: " + err.Error()}
		}
	}
	if failure == nil {
		notification := &jsonrpc.Request{Method: "notifications/initialized", Params: json.RawMessage("{}")}
		if err := worker.send(notification); err != nil {
			failure = writeFailure(err)
		}
	}
	if failure != nil {
		worker.end(failure)
		return nil, failure
	}
	worker.initialized = &initialized
	return worker, nil
}

// release takes back a process lent by acquire. One whose request was not
// answered (its client left) may still be working on it, and is stopped
// rather than lent again.
func (p *pool) release(worker *session, answered bool) {
	worker.finish()
	if !answered {
		worker.end(&ending{message: "its stateless client left before the answer"})
		return
	}
	p.mu.Lock()
	p.idle = append(p.idle, worker)
	p.wakeLocked()
	p.mu.Unlock()
}

// gone notes that a pooled process was reaped (or never started).
func (p *pool) gone() {
	p.mu.Lock()
	p.workers--
	p.wakeLocked()
	p.mu.Unlock()
}

func (p *pool) wakeLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}
