// Package mcphttp holds the rules of MCP's HTTP transports that the gateway
// enforces before policy: protocol revisions, the standard request headers
// of 2026-07-28 and their agreement with the body, and Origin checks
// against DNS rebinding. It knows nothing of Caddy or OPA.
package mcphttp

import (
	"fmt"
	"slices"
)

// Protocol revisions the gateway understands.
const (
	// Version20241105 defined the HTTP+SSE transport (see
	// LegacySSEVersions); SDKs speak it over Streamable HTTP too.
	Version20241105 = "2024-11-05"
	Version20250326 = "2025-03-26"
	Version20250618 = "2025-06-18"
	Version20251125 = "2025-11-25"
	Version20260728 = "2026-07-28"
)

// SupportedVersions lists the revisions the gateway accepts on the
// Streamable HTTP transport, oldest first: from 2024-11-05, which the
// transport did not exist in but which the SDKs negotiate over it (the Go
// and TypeScript SDKs' clients and servers list it), and whose messages
// the gateway reads as it reads them on HTTP+SSE.
var SupportedVersions = []string{Version20241105, Version20250326, Version20250618, Version20251125, Version20260728}

// LegacySSEVersions lists the revisions the gateway accepts on the HTTP+SSE
// transport of 2024-11-05 (deprecated by 2025-03-26, still served): that
// revision, and the later ones SDKs negotiate over the same transport, as
// over Streamable HTTP (the lists are one, the transports' defaults
// differ). 2026-07-28 defines only stdio and Streamable HTTP, but clients
// still propose it there (the Go SDK's does, and falls back to an earlier
// revision when the server declines), so it is accepted too: declining is
// the server's answer to give.
var LegacySSEVersions = SupportedVersions

// LegacySSEDefaultVersion is the revision assumed for a message posted on
// the HTTP+SSE transport that names none: the transport's own.
const LegacySSEDefaultVersion = Version20241105

// DefaultVersion is the revision assumed when a request names none: the
// spec (2025-06-18, basic/transports, "Protocol Version Header") tells
// servers to assume 2025-03-26 for backwards compatibility.
const DefaultVersion = Version20250326

// Header names used by the Streamable HTTP transport.
const (
	HeaderProtocolVersion = "Mcp-Protocol-Version"
	HeaderSessionID       = "Mcp-Session-Id"
	HeaderMethod          = "Mcp-Method"
	HeaderName            = "Mcp-Name"
	HeaderLastEventID     = "Last-Event-ID"
)

// MetaProtocolVersion is the _meta key that carries the protocol revision
// in every 2026-07-28 request body.
const MetaProtocolVersion = "io.modelcontextprotocol/protocolVersion"

// LatestVersion is the newest revision the gateway understands (the last
// of SupportedVersions), which it offers the server in place of one it
// does not (see gateway's offerKnownRevision).
const LatestVersion = Version20260728

// CheckVersion reports an error when version is not a supported revision.
func CheckVersion(version string) error {
	if !slices.Contains(SupportedVersions, version) {
		return fmt.Errorf("unsupported MCP protocol version %q (supported: %v)", version, SupportedVersions)
	}
	return nil
}

// CheckLegacySSEVersion reports an error when version is not a revision
// spoken over the HTTP+SSE transport.
func CheckLegacySSEVersion(version string) error {
	if !slices.Contains(LegacySSEVersions, version) {
		return fmt.Errorf("MCP protocol version %q is not spoken over the HTTP+SSE transport (supported there: %v)", version, LegacySSEVersions)
	}
	return nil
}

// BatchesAllowed reports whether JSON-RPC batches may be sent under the
// given revision: 2025-03-26 allowed them, 2025-06-18 removed them.
func BatchesAllowed(version string) bool {
	return version == Version20250326
}

// StandardHeadersRequired reports whether the revision requires the
// Mcp-Method and Mcp-Name request headers (2026-07-28 and later).
func StandardHeadersRequired(version string) bool {
	return version >= Version20260728
}

// CacheHintsDefined reports whether results carry cache hints (ttlMs and
// cacheScope) under the revision (2026-07-28 and later).
func CacheHintsDefined(version string) bool {
	return version >= Version20260728
}
