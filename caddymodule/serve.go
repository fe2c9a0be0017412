package caddymodule

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

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
	switch r.Method {
	case http.MethodPost:
		return h.servePost(w, r, next)
	case http.MethodGet, http.MethodDelete, http.MethodHead, http.MethodOptions:
		// Streams opened with GET carry only what the server sends, and
		// DELETE ends a session: nothing for a client-side policy to see.
		return next.ServeHTTP(w, r)
	default:
		w.Header().Set("Allow", "GET, POST, DELETE, HEAD, OPTIONS")
		return h.reject(w, r, http.StatusMethodNotAllowed, mcpmsg.CodeInvalidRequest, "method "+r.Method+" is not used by MCP")
	}
}

// servePost reads, validates and decides a POSTed body, then answers the
// blocked messages itself and forwards the allowed ones.
func (h *Handler) servePost(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
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
	version, err := protocolVersion(r.Header, body)
	if err != nil {
		return h.reject(w, r, http.StatusBadRequest, mcpmsg.CodeInvalidRequest, err.Error())
	}
	if body.Batch && !mcphttp.BatchesAllowed(version) {
		return h.reject(w, r, http.StatusBadRequest, mcpmsg.CodeInvalidRequest,
			"JSON-RPC batches are not part of MCP "+version+" (removed in 2025-06-18)")
	}
	for i := range body.Messages {
		if err := mcphttp.CheckHeaders(r.Header, version, bodyFacts(&body.Messages[i])); err != nil {
			return h.reject(w, r, http.StatusBadRequest, mcphttp.CodeHeaderMismatch, err.Error())
		}
	}

	verdicts := make([]verdict, len(body.Messages))
	for i := range body.Messages {
		verdicts[i] = h.decide(r, &body.Messages[i], version)
	}
	if !body.Batch {
		if v := verdicts[0]; v.allowed() {
			return h.forward(w, r, next, raw)
		} else {
			return writeRefusal(w, v)
		}
	}
	return h.serveBatch(w, r, next, raw, verdicts)
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
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.MaxBody))
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

// decide builds the policy input for one message and evaluates it.
func (h *Handler) decide(r *http.Request, m *mcpmsg.Message, version string) verdict {
	input := &policy.Input{
		Kind:            m.Kind.String(),
		Method:          m.Method,
		Params:          m.Params,
		Direction:       policy.DirectionClientToServer,
		Server:          h.serverName(r),
		Session:         r.Header.Get(mcphttp.HeaderSessionID),
		ProtocolVersion: version,
		Request:         requestInfo(r),
	}
	if m.Tool != nil {
		input.Tool = &policy.Tool{Name: m.Tool.Name, Arguments: m.Tool.Arguments}
	}
	decision, err := h.engine.Decide(r.Context(), input)
	fields := []zap.Field{
		zap.String("server", input.Server),
		zap.String("method", m.Method),
		zap.String("action", string(decision.Action)),
		zap.String("reason", decision.Reason),
	}
	if m.Tool != nil {
		fields = append(fields, zap.String("tool", m.Tool.Name))
	}
	if err != nil {
		h.logger.Error("policy evaluation failed; message blocked", append(fields, zap.Error(err))...)
	} else {
		h.logger.Debug("policy decision", fields...)
	}
	return verdict{message: m, decision: decision}
}

func (h *Handler) serverName(r *http.Request) string {
	if h.Server != "" {
		return h.Server
	}
	return hostname(r.Host)
}
