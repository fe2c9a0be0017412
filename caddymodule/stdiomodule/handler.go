// Package stdiomodule provides http.handlers.mcp_stdio, which serves an
// MCP server that speaks over stdio (a program Caddy starts, one process
// per session) on MCP's Streamable HTTP transport, so that mcp_policy
// sits in front of it as it sits in front of reverse_proxy. The work is
// done by package stdio; this package is its Caddy glue.
package stdiomodule

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/mcpgate/mcpgate/caddymodule/stdio"
)

func init() {
	caddy.RegisterModule(Handler{})
	httpcaddyfile.RegisterHandlerDirective("mcp_stdio", func(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
		handler := new(Handler)
		return handler, handler.UnmarshalCaddyfile(h.Dispenser)
	})
	httpcaddyfile.RegisterDirectiveOrder("mcp_stdio", httpcaddyfile.After, "reverse_proxy")
}

// servers holds the running stdio servers, keyed by their whole resolved
// configuration, so that a config reload that leaves an mcp_stdio block
// unchanged keeps its sessions and processes, and one that changes or
// removes it drains them.
var servers = caddy.NewUsagePool()

// exitPoll is how often endOnExit looks whether the process is exiting.
const exitPoll = 100 * time.Millisecond

// watchingExit starts endOnExit once per process.
var watchingExit sync.Once

// endOnExit waits until the process starts exiting (a signal, or the
// admin API's /stop), then ends every stdio server's sessions, as their
// config's Cleanup would. Caddy runs Cleanup only after its apps have
// stopped, and its http app, while exiting, waits for every request to
// end (for ever, with the default grace_period): a client's GET stream,
// or a call a server never answers, held the process and its stdio
// processes for as long as the client stayed. Caddy tells modules of
// the exit only through caddy.Exiting (its "stopping" event needs the
// events app configured, and apps stop in no set order), hence the poll.
func endOnExit() {
	for !caddy.Exiting() {
		time.Sleep(exitPoll)
	}
	var live []pooledServer
	servers.Range(func(_, value any) bool {
		live = append(live, value.(pooledServer))
		return true
	})
	for _, server := range live {
		go func() { _ = server.Close() }()
	}
}

// Handler serves an MCP server that speaks over stdio. Each MCP session
// gets a process of its own, started on initialize and stopped
// (gracefully: stdin closed, then SIGTERM, then SIGKILL, to its whole
// process group) when the client ends the session, when it idles, and
// when the config changes or Caddy stops. It is a terminal handler: it
// answers every request.
type Handler struct {
	// The program each session runs: a path, or a name looked up in the
	// PATH it runs with (see env). Required.
	//
	// In command, args, env values and dir, global placeholders such as
	// {env.GITHUB_TOKEN} are replaced when the config loads; a request's
	// placeholder ({http.*}, {mcp.*}) is refused.
	Command string `json:"command,omitempty"`
	// The program's arguments.
	Args []string `json:"args,omitempty"`
	// Environment variables for the program. It gets these, plus PATH and
	// HOME from Caddy's environment unless they are set here, and nothing
	// else: secrets in Caddy's environment do not reach it.
	Env map[string]string `json:"env,omitempty"`
	// The program's working directory. Default: Caddy's.
	Dir string `json:"dir,omitempty"`
	// How many session processes may run at once. Past it, initialize is
	// answered with HTTP 503, a Retry-After, and a JSON-RPC error.
	// Default: 32.
	MaxSessions int `json:"max_sessions,omitempty"`
	// How many session processes one caller may run at once, so that one
	// caller cannot hold every one of max_sessions. A caller is the user
	// mcp_policy identified ({mcp.user.id}), or else the client's address
	// (behind trusted proxies, the client's, read strictly only with
	// trusted_proxies_strict; many users behind one address are one
	// caller). Past it, that caller's initialize is
	// answered as past max_sessions. Default: none but max_sessions.
	MaxSessionsPerCaller int `json:"max_sessions_per_caller,omitempty"`
	// How long a session may go without a POST in progress before it
	// ends and its process stops (open GET streams do not count; clients
	// keep a session alive with pings). Default: 30m.
	IdleTimeout caddy.Duration `json:"idle_timeout,omitempty"`
	// How long a new process may take to answer initialize, and any
	// process to take a message off its stdin; past it, the process is
	// killed and the client gets an error (a JSON-RPC error, -32000, in
	// an HTTP 200 for initialize).
	// Default: 30s.
	InitTimeout caddy.Duration `json:"init_timeout,omitempty"`
	// How long a stopping process gets after its stdin closes before
	// SIGTERM, and after SIGTERM before SIGKILL; also how long a changed
	// config waits for the calls in progress in the sessions it ends.
	// Default: 5s.
	StopGrace caddy.Duration `json:"stop_grace,omitempty"`
	// How many warm processes serve stateless clients (MCP 2026-07-28),
	// each one request at a time; server/discover then offers 2026-07-28,
	// so clients that speak it go stateless. Only for servers whose calls
	// stand alone: what a process keeps between requests is shared by
	// every stateless client. 0 (the default) serves sessions only:
	// stateless requests get an Unsupported Protocol Version error that
	// lists the session revisions, and SDK clients then initialize a
	// session.
	StatelessPool int `json:"stateless_pool,omitempty"`
	// The largest JSON-RPC message, in bytes, that a client may post or
	// the program may write. Default: 16 MiB.
	MaxMessageSize int `json:"max_message_size,omitempty"`

	config stdio.Config
	key    string
	server *stdio.Server
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.mcp_stdio",
		New: func() caddy.Module { return new(Handler) },
	}
}

// RunsServer names the MCP server the handler runs: its program,
// arguments, environment and folder as they resolve once provisioned
// (placeholders replaced, the program found and its path made canonical:
// stdio.Command.Identity), not how it runs it (sessions, timeouts). The
// check of the configuration's layout takes two handlers of one name for
// the same server, reached through mcp_policy or not, however each
// spells it. Before Provision, the name is the configuration as written.
func (h *Handler) RunsServer() string {
	if h.server != nil {
		return h.config.Command.Identity()
	}
	name, err := json.Marshal(struct {
		Command string            `json:"command"`
		Args    []string          `json:"args"`
		Env     map[string]string `json:"env"`
		Dir     string            `json:"dir"`
	}{h.Command, h.Args, h.Env, h.Dir})
	if err != nil {
		// Unreachable: strings, a list and a map of strings.
		return fmt.Sprintf("%p", h)
	}
	return string(name)
}

// Provision resolves placeholders and takes the stdio server for this
// configuration from the pool, which starts no process until a client
// asks.
func (h *Handler) Provision(ctx caddy.Context) error {
	repl := caddy.NewReplacer()
	args := make([]string, len(h.Args))
	for i, arg := range h.Args {
		args[i] = repl.ReplaceKnown(arg, "")
	}
	env := make(map[string]string, len(h.Env))
	for name, value := range h.Env {
		env[name] = repl.ReplaceKnown(value, "")
	}
	h.config = stdio.Config{
		Command: stdio.Command{
			Path: repl.ReplaceKnown(h.Command, ""),
			Args: args,
			Env:  stdio.Environment(env),
			Dir:  repl.ReplaceKnown(h.Dir, ""),
		},
		MaxSessions:          h.MaxSessions,
		MaxSessionsPerCaller: h.MaxSessionsPerCaller,
		IdleTimeout:          time.Duration(h.IdleTimeout),
		InitTimeout:          time.Duration(h.InitTimeout),
		StopGrace:            time.Duration(h.StopGrace),
		StatelessPool:        h.StatelessPool,
		MaxMessageSize:       h.MaxMessageSize,
	}
	key, err := poolKey(h.config)
	if err != nil {
		return err
	}
	logger := ctx.Logger()
	value, _, err := servers.LoadOrNew(key, func() (caddy.Destructor, error) {
		return pooledServer{stdio.New(h.config, logger)}, nil
	})
	if err != nil {
		return err
	}
	h.key = key
	h.server = value.(pooledServer).Server
	h.server.SetLogger(logger)
	if err := h.config.Command.Unavailable(); err != nil {
		logger.Warn("the MCP server's command cannot start as configured; sessions will fail until it can", zap.Error(err))
	}
	watchingExit.Do(func() { go endOnExit() })
	return nil
}

// requestPlaceholder returns the first placeholder of a request
// (Caddy's http.*, mcpgate's mcp.*) in value, as Caddy's replacer finds
// them (an escaped \{ is none), or "": Provision's replacer, with no
// request, would leave it as written, and the program would get
// "{mcp.user.id}" itself.
func requestPlaceholder(value string) string {
	var found string
	repl := caddy.NewEmptyReplacer()
	repl.Map(func(key string) (any, bool) {
		if found == "" && (strings.HasPrefix(key, "http.") || strings.HasPrefix(key, "mcp.")) {
			found = "{" + key + "}"
		}
		return nil, false
	})
	repl.ReplaceKnown(value, "")
	if found == "" {
		// A brace escaped on one side only ("\{mcp.user.id}"): the
		// replacer reads no placeholder, and the program gets the text.
		if half := halfEscaped.FindString(escapedBraces.Replace(value)); half != "" {
			found = `\{` + strings.TrimPrefix(half, "\x00")
		}
	}
	return found
}

// escapedBraces marks the braces Caddy's replacer reads as escaped (after
// a backslash) with a NUL, which no configured value holds (see
// stdio.Config.Validate).
var escapedBraces = strings.NewReplacer(`\{`, "\x00", `\}`, "\x00")

// halfEscaped matches, in a value whose escaped braces escapedBraces
// marked, a request placeholder's name closed by a brace the replacer
// reads but opened by one it does not.
var halfEscaped = regexp.MustCompile(`\x00(?:http|mcp)\.[^{}\x00]*\}`)

// Validate checks the resolved configuration.
func (h *Handler) Validate() error {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(h.Env)) {
		// Environment() joins NAME=value: a name holding "=" would give
		// the program another variable than the one configured.
		if name == "" || strings.ContainsAny(name, "=\x00") {
			errs = append(errs, fmt.Errorf(`env name %q: a variable's name must be non-empty, without "=" or a NUL byte`, name))
		}
	}
	fields := map[string][]string{"command": {h.Command}, "args": h.Args, "dir": {h.Dir}}
	for name, value := range h.Env {
		fields["env "+name] = []string{value}
	}
	for _, field := range slices.Sorted(maps.Keys(fields)) {
		for _, value := range fields[field] {
			if placeholder := requestPlaceholder(value); placeholder != "" {
				errs = append(errs, fmt.Errorf("%s: %s is a request's placeholder, which has no value when the config loads: "+
					"only global placeholders ({env.*}, {file.*}, {system.*}, {time.*}) are replaced, once, as the config loads", field, placeholder))
			}
		}
	}
	if err := h.config.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("mcp_stdio: %w", err)
	}
	return nil
}

// ServeHTTP answers the request with the stdio server.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	if h.MaxSessionsPerCaller > 0 {
		r = stdio.WithCaller(r, sessionOwner(r))
	}
	h.server.ServeHTTP(w, r)
	return nil
}

// sessionOwner names whose share of max_sessions_per_caller a request's
// session counts against: the user mcp_policy identified, in its realm
// (identical mcp_stdio blocks share one server, and their mcp_policy
// handlers may identify callers from two realms, whose "alice"s are two
// people), or else the client's address as Caddy determined it
// (honouring trusted_proxies).
func sessionOwner(r *http.Request) string {
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		if id, _ := repl.GetString("mcp.user.id"); id != "" {
			realm, _ := repl.GetString("mcp.user.realm")
			return "user " + strconv.Quote(realm) + " " + strconv.Quote(id)
		}
	}
	ip, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	if ip == "" {
		ip, _, _ = net.SplitHostPort(r.RemoteAddr)
	}
	return "address " + ip
}

// Cleanup lets go of the stdio server; when no config uses it any more,
// its sessions drain and its processes stop.
func (h *Handler) Cleanup() error {
	if h.key == "" {
		return nil
	}
	_, err := servers.Delete(h.key)
	return err
}

// poolKey names a resolved configuration: a digest, so that the secrets
// in its environment are not kept as a key.
func poolKey(config stdio.Config) (string, error) {
	raw, err := json.Marshal(config)
	if err != nil {
		return "", fmt.Errorf("mcp_stdio: %w", err)
	}
	sum := sha256.Sum256(raw)
	return "mcp_stdio:" + hex.EncodeToString(sum[:]), nil
}

// pooledServer is a stdio server in the usage pool.
type pooledServer struct{ *stdio.Server }

// Destruct stops the server's processes, once no config uses it.
func (s pooledServer) Destruct() error { return s.Close() }

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
	_ caddyfile.Unmarshaler       = (*Handler)(nil)
)
