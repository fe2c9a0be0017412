package caddymodule

import (
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/mcpgate/mcpgate/caddymodule/mcphttp"
	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
	"github.com/mcpgate/mcpgate/caddymodule/policy"
)

// checkContentType accepts only uncompressed JSON: the gateway must see the
// same bytes the upstream will decode.
func checkContentType(header http.Header) error {
	for _, encoding := range header.Values("Content-Encoding") {
		for _, coding := range strings.Split(encoding, ",") {
			if coding = strings.TrimSpace(coding); coding != "" && !strings.EqualFold(coding, "identity") {
				return fmt.Errorf("content encoding %q is not accepted; send the body uncompressed", coding)
			}
		}
	}
	values := header.Values("Content-Type")
	if len(values) != 1 {
		return errors.New("content type must be given once, as application/json")
	}
	mediaType, params, err := mime.ParseMediaType(values[0])
	if err != nil {
		return fmt.Errorf("content type %q is malformed: %w", values[0], err)
	}
	if mediaType != "application/json" {
		return fmt.Errorf("content type %q is not application/json", mediaType)
	}
	if charset, ok := params["charset"]; ok && !strings.EqualFold(charset, "utf-8") {
		return fmt.Errorf("charset %q is not accepted; MCP messages are UTF-8", charset)
	}
	return nil
}

// protocolVersion returns the MCP revision a POST was sent under: the
// Mcp-Protocol-Version header, else the revision a 2026-07-28 body names in
// _meta, else the revision an initialize request proposes, else the
// spec's default for requests without the header. legacy is set for the
// HTTP+SSE transport, which has revisions and a default of its own.
func protocolVersion(header http.Header, body *mcpmsg.Body, legacy bool) (string, error) {
	check, fallback := mcphttp.CheckVersion, mcphttp.DefaultVersion
	if legacy {
		check, fallback = mcphttp.CheckLegacySSEVersion, mcphttp.LegacySSEDefaultVersion
	}
	if values := header.Values(mcphttp.HeaderProtocolVersion); len(values) > 0 {
		if len(values) > 1 {
			return "", fmt.Errorf("%s header given %d times", mcphttp.HeaderProtocolVersion, len(values))
		}
		return values[0], check(values[0])
	}
	if body.Batch {
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

// credentialHeaders are left out of policy input.
var credentialHeaders = map[string]bool{
	"authorization":       true,
	"proxy-authorization": true,
	"cookie":              true,
}

// requestInfo describes the HTTP request for policy input.
func requestInfo(r *http.Request) policy.Request {
	headers := make(map[string]string, len(r.Header))
	for name, values := range r.Header {
		name = strings.ToLower(name)
		if credentialHeaders[name] {
			continue
		}
		headers[name] = strings.Join(values, ", ")
	}
	return policy.Request{
		RemoteIP: clientIP(r),
		Host:     r.Host,
		Path:     r.URL.Path,
		Headers:  headers,
	}
}

// clientIP returns the client address as Caddy determined it (honouring
// the server's trusted_proxies), falling back to the peer address.
func clientIP(r *http.Request) string {
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok && ip != "" {
		return ip
	}
	return hostname(r.RemoteAddr)
}

// hostname strips the port from host:port, if there is one.
func hostname(hostport string) string {
	if host, _, err := net.SplitHostPort(hostport); err == nil {
		return host
	}
	return hostport
}
