// Package gateway is mcpgate's request pipeline, free of Caddy: it parses
// every MCP message a client posts, decides it with the policy, answers
// the refused ones itself, holds those that need a person's approval, and
// passes the allowed ones to the next handler (normally a reverse proxy),
// watching the reply for what the gateway must see or rewrite.
//
// A Gateway is built once per configuration by New and serves requests
// with Serve. Each request becomes one exchange (pipeline.go), which flows
// through named stages: admit, read, parse, check the transport, decide,
// route (refuse, hold, batch or forward) and watch the reply. The
// transports sit at the edge of the pipeline, each in its own file: GET
// streams (stream.go), the HTTP+SSE transport of 2024-11-05 (legacy.go),
// the server's requests to the client (relay.go) and the gateway's own
// tools/list fetch (toolfetch.go).
package gateway

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpgate/mcpgate/caddymodule/ttlcache"
	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"

	"github.com/mcpgate/mcpgate/caddymodule/approval"
	"github.com/mcpgate/mcpgate/caddymodule/catalog"
	"github.com/mcpgate/mcpgate/caddymodule/mcphttp"
	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
	"github.com/mcpgate/mcpgate/caddymodule/policy"
	"github.com/mcpgate/mcpgate/caddymodule/sessiontoken"
	"github.com/mcpgate/mcpgate/caddymodule/tooloverride"
)

// Next is the rest of the route: what an allowed message is passed to.
// Caddy's caddyhttp.Handler satisfies it.
type Next interface {
	ServeHTTP(http.ResponseWriter, *http.Request) error
}

// Host tells the gateway what the server hosting it knows of a request.
// Every function may be nil.
type Host struct {
	// ClientIP returns the client's address as the server determined it
	// (honouring trusted proxies). Default: the peer address.
	ClientIP func(*http.Request) string
	// TrustedProxy reports whether the request comes from a proxy the
	// server trusts to say who the client is (X-Forwarded-* headers).
	// Default: none is.
	TrustedProxy func(*http.Request) bool
	// RequestID returns the server's unique id of the request, for logs.
	RequestID func(*http.Request) string
	// OriginalPath returns the request's path before earlier handlers
	// rewrote it (as a path prefix stripped by routing), "" when unknown:
	// URLs the upstream names are given back to the client with the
	// stripped prefix.
	OriginalPath func(*http.Request) string
	// HostChanged, when set, is told that the gateway rewrote the
	// request's Host (in lower case, an IPv6 address as netip writes it:
	// see checkedHost), so that the server's own record of it (in Caddy:
	// the {host} placeholders) follows.
	HostChanged func(*http.Request)
	// Annotate, when set, is told what the gateway learned of a POST's
	// messages before the rest of the route sees the request (in Caddy:
	// placeholders and variables).
	Annotate func(*http.Request, Facts)
	// WriteTimeout returns the longest the server lets a request's reply
	// take to write, counted from the request's start (in Caddy: the
	// server's timeouts write); 0 for no limit. A call held or asked
	// about is answered within it.
	WriteTimeout func(*http.Request) time.Duration
}

// DefaultServer is the server name of a gateway configured with none.
const DefaultServer = "default"

// Config is everything a Gateway needs, resolved by its host: values
// with placeholders replaced, and the long-lived parts (catalog, session
// state, approval service) shared across configurations.
type Config struct {
	// Engine decides. The Gateway owns it and closes it on Close.
	Engine *policy.Engine
	// Server is the upstream's logical name, given to policies as
	// input.server. It must come from configuration, never from the
	// request (a Host header is the client's to choose). Default:
	// DefaultServer.
	Server string
	// Upstream names the MCP server behind the gateway: what the
	// gateway learns of its tools (the catalog, the pins) and the
	// sessions it opens are kept under this name, and nothing of another
	// upstream's applies to it. The host must give every upstream its
	// own name; gateways with the same Upstream share what they learn.
	Upstream string
	// Sealer seals the session ids handed to clients.
	Sealer *sessiontoken.Sealer
	// MaxBody is the largest request body accepted, in bytes.
	MaxBody int64
	// Limits bound what the parser accepts.
	Limits mcpmsg.Limits
	// Origins says which browser origins may connect.
	Origins mcphttp.OriginPolicy
	// LogArguments includes tool arguments in decision logs.
	LogArguments bool
	// BlockSecrets blocks every tool call whose arguments hold a
	// well-known credential (secrets.Find), whatever the policy decides,
	// and the other requests that hand the server data (blockSecrets),
	// and withholds the answers of the client's and the server's that
	// hold one (see withholdClientAnswer, withholdSecrets).
	BlockSecrets bool
	// ToolOverrides rename tools and replace their descriptions and
	// titles as clients see them (renameCalls, exposeTools); nil for
	// none.
	ToolOverrides *tooloverride.Set
	// ForwardToken passes the caller's Authorization header upstream;
	// by default it is removed when Identity is set.
	ForwardToken bool
	// Identity, when set, identifies every caller.
	Identity *Identity
	// Catalog is what the gateway knows of the upstream's tools.
	Catalog *catalog.Catalog
	// Epoch names the configuration the gateway belongs to: the
	// catalog's list of the upstream is the running configuration's,
	// given to it by ClaimTools; a gateway whose configuration does not
	// own it decides on lists it fetches itself.
	Epoch uint64
	// Sessions is what the gateway remembers of live sessions.
	Sessions *Sessions
	// Approvals, when set, holds calls that need approval.
	Approvals *Approvals
	// Running returns the gateways that serve Server in the configuration
	// running now: this one among them while its configuration runs, the
	// next configuration's after a reload, none when that one no longer
	// serves Server. A call held for a person's answer is decided again
	// before it runs (see policyChangedWhileHeld). Nil: this gateway alone.
	Running func() []*Gateway
	// Metrics count decisions.
	Metrics *Metrics
	// RateLimits limit how often messages pass.
	RateLimits []RateLimit
	// Audit, when set, receives the audit trail.
	Audit *Audit
	// Host tells what the server knows of each request.
	Host Host
	// Logger receives the decision log and the gateway's warnings.
	Logger *zap.Logger
}

// Approvals is how the gateway holds calls for approval.
type Approvals struct {
	// Service keeps the approvals.
	Service *approval.Service
	// Hold is the longest a call is held in one request.
	Hold time.Duration
	// Keepalive is how often a held call with a progress token hears of
	// its wait.
	Keepalive time.Duration
}

// Gateway is the request pipeline of one configuration.
type Gateway struct {
	cfg     Config
	callers *callerIdentifier
	// metrics are the upstream's.
	metrics  upstreamMetrics
	host     Host
	logger   *zap.Logger
	catalog  *catalog.Catalog
	sessions *Sessions
	// refreshes shares one tools/list fetch among concurrent calls.
	refreshes singleflight.Group
	// listDigest is the digest of the list this gateway last fetched and
	// learned, under listMu (see noteList).
	listMu     sync.Mutex
	listDigest [sha256.Size]byte
	// missFetches are, by session, the last fetch of the list for a call
	// of the session to a tool the list lacked; missLimiter bounds such
	// fetches for the whole gateway (see refetchOnMiss).
	missFetches *ttlcache.Cache[string, missFetch]
	missLimiter *rate.Limiter
	// droppedLimiter bounds those fetches for tools the last renewal of
	// the list dropped (see refetchOnMiss).
	droppedLimiter *rate.Limiter
	// unlistedWarned holds the tools the permissions table names
	// (Engine.TableTools), and those the tool overrides name, already
	// logged as unlisted (see warnUnlisted): a whole tool list of the
	// upstream that lacks one is logged, once per tool, since its entry
	// then applies to no call (a misspelt name, most likely).
	unlistedWarned sync.Map
	// shadowedWarned holds the tools of the upstream's lists logged as
	// hidden by a tool renamed to their name (see exposeTools), once each.
	shadowedWarned sync.Map
	// retired is set while the gateway's configuration no longer runs
	// (see Retire).
	retired atomic.Bool
}

// Retire marks the gateway as one whose configuration a reload replaced,
// or, with retired unset, as one whose configuration runs again (the one
// that replaced it failed to start). Requests it took before the reload
// may go on for long (a stream a server sends its requests on, a held
// call): from then on, what they carry is decided by the gateways that
// serve its server now (see deciders), and it learns nothing more of
// the upstream's tools for them.
func (g *Gateway) Retire(retired bool) {
	g.retired.Store(retired)
}

// ClaimTools makes the catalog's list of the upstream this gateway's
// configuration's, as it starts to run (or runs again): the list is
// forgotten, to be fetched anew, and lists the gateways of other
// configurations fetch are never recorded as current (see
// catalog.Catalog.Reset). A reload may route the upstream's name to
// another MCP server.
func (g *Gateway) ClaimTools() {
	g.catalog.Reset(g.cfg.Upstream, g.cfg.Epoch)
}

// ownsList reports whether the catalog's list of the upstream is this
// gateway's configuration's (see ClaimTools).
func (g *Gateway) ownsList() bool {
	return g.catalog.Owns(g.cfg.Upstream, g.cfg.Epoch)
}

// listGeneration is the catalog's generation of the upstream's list, to
// read before fetching it (see catalog.Catalog.GenerationFor).
func (g *Gateway) listGeneration() uint64 {
	return g.catalog.GenerationFor(g.cfg.Upstream, g.cfg.Epoch)
}

// judges is deciders, without asking Running while the gateway's own
// configuration runs (it is then the one judge): for what a request
// carries, on the path of every call.
func (g *Gateway) judges() []*Gateway {
	if !g.retired.Load() {
		return []*Gateway{g}
	}
	return g.deciders()
}

// deciders returns the gateways whose policy decides this gateway's
// requests now: this one while its configuration runs; after a reload,
// every gateway that serves its server in the configuration running then
// (which of them took over from this one, the gateway cannot tell) and
// identifies callers from the same place (its caller ids are this
// one's: "alice" of another realm is not this one's alice); none when
// no such gateway runs.
func (g *Gateway) deciders() []*Gateway {
	if g.cfg.Running == nil {
		return []*Gateway{g}
	}
	running := g.cfg.Running()
	if slices.Contains(running, g) {
		return []*Gateway{g}
	}
	var sameRealm []*Gateway
	for _, h := range running {
		if h.identityRealm() == g.identityRealm() {
			sameRealm = append(sameRealm, h)
		}
	}
	return sameRealm
}

// New builds a Gateway from cfg.
func New(cfg Config) (*Gateway, error) {
	if cfg.Engine == nil || cfg.Catalog == nil || cfg.Sessions == nil || cfg.Metrics == nil || cfg.Sealer == nil {
		return nil, errors.New("gateway: an engine, a catalog, session state, a session sealer and metrics are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Server == "" {
		cfg.Server = DefaultServer
	}
	if cfg.Upstream == "" {
		cfg.Upstream = cfg.Server
	}
	g := &Gateway{
		cfg: cfg, host: cfg.Host, logger: cfg.Logger, catalog: cfg.Catalog, sessions: cfg.Sessions, metrics: cfg.Metrics.of(cfg.Upstream),
		missFetches:    ttlcache.New[string, missFetch](missFetchesKept, missFetchesFor),
		missLimiter:    rate.NewLimiter(missFetchesPerSecond, missFetchesBurst),
		droppedLimiter: rate.NewLimiter(droppedFetchesPerSecond, droppedFetchesBurst),
	}
	if g.host.ClientIP == nil {
		g.host.ClientIP = func(r *http.Request) string { return hostname(r.RemoteAddr) }
	}
	if g.host.TrustedProxy == nil {
		g.host.TrustedProxy = func(*http.Request) bool { return false }
	}
	if g.host.RequestID == nil {
		g.host.RequestID = func(*http.Request) string { return "" }
	}
	if g.host.OriginalPath == nil {
		g.host.OriginalPath = func(*http.Request) string { return "" }
	}
	if err := g.checkTableNames(); err != nil {
		return nil, fmt.Errorf("gateway: tool overrides: %w", err)
	}
	if cfg.Identity != nil {
		callers, err := newCallerIdentifier(cfg.Identity)
		if err != nil {
			return nil, err
		}
		g.callers = callers
	}
	return g, nil
}

// Close releases what the gateway owns: the policy engine and the token
// verifier.
func (g *Gateway) Close() error {
	g.Retire(true)
	var err error
	if g.cfg.Identity != nil && g.cfg.Identity.Verifier != nil {
		err = g.cfg.Identity.Verifier.Close()
	}
	return errors.Join(err, g.cfg.Engine.Close())
}

// hostname strips the port from host:port, if there is one.
func hostname(hostport string) string {
	if host, _, err := net.SplitHostPort(hostport); err == nil {
		return host
	}
	return hostport
}
