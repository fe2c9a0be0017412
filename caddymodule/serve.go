package caddymodule

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/mcpgate/mcpgate/caddymodule/catalog"
	"github.com/mcpgate/mcpgate/caddymodule/mcphttp"
	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
	"github.com/mcpgate/mcpgate/caddymodule/policy"
)

// ServeHTTP checks the request's origin, then passes GET, DELETE, HEAD and
// OPTIONS through, and decides every message of a POST before anything of
// it reaches the next handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if err := h.origins.Check(r); err != nil {
		return h.reject(w, r, http.StatusForbidden, mcpmsg.CodeInvalidRequest, err.Error())
	}
	if h.callers != nil {
		var admitted bool
		if r, w, admitted = h.admit(w, r); !admitted {
			return nil
		}
	}
	switch r.Method {
	case http.MethodPost:
		return h.servePost(w, r, next)
	case http.MethodGet, http.MethodDelete, http.MethodHead, http.MethodOptions:
	default:
		w.Header().Set("Allow", "GET, POST, DELETE, HEAD, OPTIONS")
		return h.reject(w, r, http.StatusMethodNotAllowed, mcpmsg.CodeInvalidRequest, "method "+r.Method+" is not used by MCP")
	}
	if r.ContentLength != 0 || len(r.TransferEncoding) > 0 {
		// Nothing in MCP sends a body with these methods, and the gateway
		// decides bodies only on POST: a body here would reach the
		// upstream unread.
		return h.reject(w, r, http.StatusBadRequest, mcpmsg.CodeInvalidRequest, "a "+r.Method+" request must not carry a body")
	}
	r.Body = http.NoBody
	if r.Method == http.MethodGet {
		// A GET stream carries only what the server sends; the gateway
		// watches it for tool list changes and decides the server's
		// requests in it.
		observed, finish := h.observeStream(w, r, next)
		err := next.ServeHTTP(observed, r)
		return errors.Join(err, finish())
	}
	// DELETE ends a session: nothing for a client-side policy to see.
	return next.ServeHTTP(w, r)
}

// servePost reads, validates and decides a POSTed body, then answers the
// blocked messages itself and forwards the allowed ones.
func (h *Handler) servePost(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	legacy := h.legacyPost(r)
	if legacy != nil && legacy.stream != nil && !legacy.stream.postedByOwner(r) {
		return h.reject(w, r, http.StatusForbidden, mcpmsg.CodeInvalidRequest, "this session belongs to another user")
	}
	raw, status, err := h.readBody(w, r)
	if err != nil {
		return h.reject(w, r, status, mcpmsg.CodeInvalidRequest, err.Error())
	}
	body, err := mcpmsg.Parse(raw, h.limits)
	if err != nil {
		code, message := mcpmsg.CodeInvalidRequest, err.Error()
		var perr *mcpmsg.Error
		if errors.As(err, &perr) {
			code, message = perr.Code, perr.Message
		}
		return h.reject(w, r, http.StatusBadRequest, code, message)
	}
	version, err := protocolVersion(r.Header, body, legacy != nil)
	if err != nil {
		return h.reject(w, r, http.StatusBadRequest, mcpmsg.CodeInvalidRequest, err.Error())
	}
	if body.Batch && legacy != nil {
		return h.reject(w, r, http.StatusBadRequest, mcpmsg.CodeInvalidRequest, errLegacyBatch.Error())
	}
	if body.Batch && !mcphttp.BatchesAllowed(version) {
		return h.reject(w, r, http.StatusBadRequest, mcpmsg.CodeInvalidRequest,
			"JSON-RPC batches are not part of MCP "+version+" (removed in 2025-06-18)")
	}
	headerRules := version
	if legacy != nil {
		// HTTP+SSE has no standard headers to require; those present must
		// still agree with the body.
		headerRules = mcphttp.LegacySSEDefaultVersion
	}
	for i := range body.Messages {
		if err := mcphttp.CheckHeaders(r.Header, headerRules, bodyFacts(&body.Messages[i])); err != nil {
			return h.reject(w, r, http.StatusBadRequest, mcphttp.CodeHeaderMismatch, err.Error())
		}
	}
	session := h.sessionOf(r)
	if legacy != nil {
		session = legacy.session
	}
	if err := h.checkAnswers(session, body); err != nil {
		return h.reject(w, r, http.StatusForbidden, mcpmsg.CodeInvalidRequest, err.Error())
	}

	h.cancelHeldCalls(r, body)
	verdicts := make([]verdict, len(body.Messages))
	for i := range body.Messages {
		verdicts[i] = h.decide(r, next, &body.Messages[i], version)
	}
	if !body.Batch {
		if v := verdicts[0]; !v.allowed() {
			if legacy != nil {
				return legacy.refuse(w, h, v)
			}
			if v.decision.Action == policy.ActionNeedsApproval && v.approvals && v.message.Tool != nil {
				// Once approved, the call goes on as an allowed one.
				return h.holdForApproval(w, r, v, func(w http.ResponseWriter) error {
					observed, finish := h.observeReply(w, r, next, version, session, []verdict{v.approved()})
					return errors.Join(h.forward(observed, r, next, raw), finish())
				})
			}
			return writeRefusal(w, v)
		}
	}
	if legacy != nil {
		legacy.expect(verdicts, h.catalog.Generation(legacy.session.server))
	}
	observed, finish := h.observeReply(w, r, next, version, session, verdicts)
	if body.Batch {
		err = h.serveBatch(observed, r, next, raw, verdicts)
	} else {
		err = h.forward(observed, r, next, raw)
	}
	return errors.Join(err, finish())
}

// readBody reads the whole body within max_body, refusing encodings and
// content types the gateway could not inspect. On error it also returns the
// HTTP status to answer with.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, int, error) {
	if err := checkContentType(r.Header); err != nil {
		return nil, http.StatusBadRequest, err
	}
	if r.ContentLength > h.MaxBody {
		return nil, http.StatusRequestEntityTooLarge, errBodyTooLarge(h.MaxBody)
	}
	body := bytes.NewBuffer(make([]byte, 0, max(r.ContentLength, 0)+bytes.MinRead))
	_, err := body.ReadFrom(http.MaxBytesReader(w, r.Body, h.MaxBody))
	raw := body.Bytes()
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, http.StatusRequestEntityTooLarge, errBodyTooLarge(h.MaxBody)
		}
		return nil, http.StatusBadRequest, errors.New("reading request body: " + err.Error())
	}
	return raw, 0, nil
}

func errBodyTooLarge(limit int64) error {
	return errors.New("request body is larger than max_body (" + strconv.FormatInt(limit, 10) + " bytes)")
}

// forward passes the validated bytes on to the next handler. They are the
// very bytes that passed the strict parse: since that parse refuses
// everything a lenient parser could read another way (duplicate names,
// case variants of known fields, invalid UTF-8, trailing data), the
// upstream reads exactly what the policy saw, and a canonical re-encoding
// (with its own cost and its own chance of changing a number or an escape
// the upstream depends on) is not needed.
func (h *Handler) forward(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, raw []byte) error {
	r.Body = io.NopCloser(bytes.NewReader(raw))
	r.ContentLength = int64(len(raw))
	r.Header.Set("Content-Length", strconv.Itoa(len(raw)))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(raw)), nil }
	return next.ServeHTTP(w, r)
}

// reject answers a request the gateway refuses before (or instead of)
// policy with a JSON-RPC error that has no id.
func (h *Handler) reject(w http.ResponseWriter, r *http.Request, status, code int, message string) error {
	h.logger.Debug("request refused",
		zap.Int("status", status),
		zap.String("reason", message),
		zap.String("remote_ip", clientIP(r)))
	writeJSON(w, status, mcpmsg.ErrorResponse(nil, code, message))
	return nil
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func bodyFacts(m *mcpmsg.Message) mcphttp.BodyFacts {
	return mcphttp.BodyFacts{
		IsRequest:       m.Kind == mcpmsg.KindRequest,
		Method:          m.Method,
		Params:          m.Params,
		ProtocolVersion: metaProtocolVersion(m),
	}
}

// metaProtocolVersion returns the revision a 2026-07-28 message names in
// params._meta, if any.
func metaProtocolVersion(m *mcpmsg.Message) string {
	meta, _ := m.Params["_meta"].(map[string]any)
	version, _ := meta[mcphttp.MetaProtocolVersion].(string)
	return version
}

// decide builds the policy input for one message and evaluates it. For a
// tools/call it first makes sure the catalog knows the tool, fetching the
// upstream's tools/list when it does not.
func (h *Handler) decide(r *http.Request, next caddyhttp.Handler, m *mcpmsg.Message, version string) verdict {
	input := h.baseInput(r, version)
	input.Kind, input.Method, input.Params = m.Kind.String(), m.Method, m.Params
	toolLabel := ""
	if m.Tool != nil {
		meta, _ := m.Params["_meta"].(map[string]any)
		tool, listed := h.lookupTool(r, next, input.Server, m.Tool.Name, version, meta)
		input.Tool = policyTool(tool, m.Tool.Arguments)
		toolLabel = unlistedTool
		if listed {
			toolLabel = m.Tool.Name
		}
	}
	decision := h.evaluate(r, input, toolLabel)
	return verdict{message: m, decision: decision, input: input, approvals: h.approvals != nil}
}

// evaluate decides one policy input, and records the decision in the
// metrics and the decision log.
func (h *Handler) evaluate(r *http.Request, input *policy.Input, toolLabel string) policy.Decision {
	start := time.Now()
	decision, err := h.engine.Decide(r.Context(), input)
	elapsed := time.Since(start)
	if decision.Cached {
		h.metrics.recalled.WithLabelValues(input.Server).Inc()
	} else {
		h.metrics.evalSeconds.WithLabelValues(input.Server).Observe(elapsed.Seconds())
	}
	h.metrics.decisions.WithLabelValues(input.Server, toolLabel, string(decision.Action)).Inc()
	h.logDecision(r, input, decision, elapsed, err)
	return decision
}

// baseInput is the policy input every message of the request shares.
func (h *Handler) baseInput(r *http.Request, version string) *policy.Input {
	return &policy.Input{
		Direction:       policy.DirectionClientToServer,
		Server:          h.serverName(r),
		Session:         r.Header.Get(mcphttp.HeaderSessionID),
		ProtocolVersion: version,
		Request:         requestInfo(r),
		User:            caller(r),
	}
}

// lookupTool returns what the catalog knows of a tool, refreshing the
// server's tool list first when it is stale (never fetched whole, or
// announced changed). A tool the upstream does not list is destructive
// (the MCP defaults); naming one does not trigger another fetch.
func (h *Handler) lookupTool(r *http.Request, next caddyhttp.Handler, server, name, version string, meta map[string]any) (catalog.Tool, bool) {
	if h.catalog.Stale(server) {
		if err := h.refreshTools(r, next, server, version, meta); err != nil {
			h.logger.Warn("could not fetch the upstream's tool list; the tool is treated as destructive",
				zap.String("server", server), zap.String("tool", name), zap.Error(err))
		}
	}
	return h.knownTool(server, name)
}

// knownTool returns what the catalog knows of a tool, and whether the
// upstream listed it. A tool it did not list is destructive (the MCP
// defaults).
func (h *Handler) knownTool(server, name string) (catalog.Tool, bool) {
	tool, listed := h.catalog.Lookup(server, name)
	if !listed {
		tool = catalog.Tool{Name: name, Annotations: map[string]any{}, Category: catalog.Destructive}
	}
	return tool, listed
}

// policyTool is the input's tool: what the catalog knows of it, and the
// call's arguments (nil when there is no call, as in a tools/list).
func policyTool(tool catalog.Tool, arguments map[string]any) *policy.Tool {
	return &policy.Tool{
		Name:        tool.Name,
		Arguments:   arguments,
		Annotations: tool.Annotations,
		Category:    string(tool.Category),
		Changed:     tool.Changed,
	}
}

// logDecision writes the decision log: one structured entry per decision.
// Arguments are left out unless log_arguments is set.
func (h *Handler) logDecision(r *http.Request, input *policy.Input, d policy.Decision, elapsed time.Duration, err error) {
	level, message := zap.InfoLevel, "decision"
	if err != nil {
		level, message = zap.ErrorLevel, "policy evaluation failed; message blocked"
	}
	// Check first: the fields (and Caddy's request id) cost time on every
	// call, and are only worth it when the entry is written.
	entry := h.logger.Check(level, message)
	if entry == nil {
		return
	}
	fields := []zap.Field{
		zap.String("server", input.Server),
		zap.String("method", input.Method),
		zap.String("direction", input.Direction),
		zap.String("action", string(d.Action)),
		zap.String("reason", d.Reason),
		zap.Duration("evaluation_time", elapsed),
		zap.String("request_id", requestID(r)),
		zap.String("remote_ip", input.Request.RemoteIP),
	}
	if input.Tool != nil {
		fields = append(fields, zap.String("tool", input.Tool.Name), zap.String("category", input.Tool.Category))
		if h.LogArguments {
			fields = append(fields, zap.Any("arguments", input.Tool.Arguments))
		}
	}
	if input.User != nil {
		fields = append(fields, zap.String("user", input.User.ID))
	}
	if input.Session != "" {
		fields = append(fields, zap.String("session", input.Session))
	}
	if d.Cached {
		fields = append(fields, zap.Bool("cached", true))
	}
	if err != nil {
		fields = append(fields, zap.Error(err))
	}
	entry.Write(fields...)
}

// requestID is Caddy's unique id of the request ({http.request.uuid}).
func requestID(r *http.Request) string {
	repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !ok {
		return ""
	}
	id, _ := repl.GetString("http.request.uuid")
	return id
}

func (h *Handler) serverName(r *http.Request) string {
	if h.Server != "" {
		return h.Server
	}
	return hostname(r.Host)
}
