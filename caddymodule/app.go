package caddymodule

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/mcpgate/mcpgate/caddymodule/approval"
	"github.com/mcpgate/mcpgate/caddymodule/gateway"
	"github.com/mcpgate/mcpgate/caddymodule/policy"
)

func init() {
	caddy.RegisterModule(App{})
}

// App is mcpgate's view of one configuration as a whole. Its handlers
// register in it as they are provisioned, so that a configuration whose
// handlers cannot tell their upstreams apart is refused before it runs. It
// is created for each configuration, with nothing to configure.
type App struct {
	names *names
	ctx   caddy.Context
	// epoch names this configuration among those provisioned.
	epoch uint64
}

// names is what the handlers of one configuration have claimed.
type names struct {
	mu sync.Mutex
	// upstreams maps each upstream name a handler fronts to whether it
	// was named explicitly (upstream <name>).
	upstreams map[string]bool
	// servers maps each server name to the upstream it stands for.
	servers map[string]string
	// unnamed maps each default server name to true once a handler
	// without `server` has it.
	unnamed map[string]bool
	// realms maps each upstream to where its handler's callers' ids come
	// from (see IdentityConfig.realm), when it identifies callers.
	realms map[string]callerRealm
	// guards maps each server name to what its handler decides and
	// guards with (see Handler.guards).
	guards map[string]string
	// approvals maps each approval service (store and instance) to the
	// settings its handlers gave it (see resolvedApproval.fingerprint).
	approvals map[string]string
	// approvalUses are the handlers' uses of those services (see
	// claimApprovals).
	approvalUses []approvalUse
	// approvalSecrets maps each approval service to its handlers'
	// secrets, for checkCrossedSecrets.
	approvalSecrets map[string]approvalSecrets
	// approvalsServed are the instances the mcp_approvals handlers serve,
	// "" for every one (see serveApprovals).
	approvalsServed []string
	// inHTTP is set once a handler is provisioned in an HTTP server: Start
	// then checks the HTTP servers' layout.
	inHTTP bool
	// gateways are the handlers' gateways.
	gateways *configGateways
	// inboxes are the mcp_approvals inboxes (see claimInbox).
	inboxes []claimedInbox
	// tableServers are the servers the handlers' permissions tables have
	// sections for, sorted and without repeats (see nameTableServers).
	tableServers []string
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID: "mcpgate",
		New: func() caddy.Module {
			return &App{names: &names{upstreams: map[string]bool{}, servers: map[string]string{}, unnamed: map[string]bool{}, realms: map[string]callerRealm{}, guards: map[string]string{}, approvals: map[string]string{},
				gateways: &configGateways{byServer: map[string][]*gateway.Gateway{}}}}
		},
	}
}

// Start implements caddy.App. The app holds no running parts; it checks,
// now that every handler is provisioned (the app itself may be provisioned
// before some of them), that every mcp_approvals handler has approvals to
// decide (see checkApprovalsServed) and that someone can hold every inbox
// approver a permissions table names (checkApprovers), and warns of table
// sections for servers no handler serves (checkTableServers); and, now
// that every HTTP server is provisioned, that no request reaches an
// upstream of theirs past mcp_policy (see checkLayout).
// Once the checks pass, its gateways are the ones running (see
// runningGateways).
func (a *App) Start() error {
	a.names.mu.Lock()
	defer a.names.mu.Unlock()
	if err := a.names.checkApprovalsServed(); err != nil {
		return err
	}
	if err := a.names.checkApprovers(a.ctx.Logger()); err != nil {
		return err
	}
	a.names.checkTableServers(a.ctx.Logger())
	if a.names.inHTTP {
		// Every server of the configuration: another site or port may
		// proxy to an upstream that one holding mcp_policy guards.
		app, err := a.ctx.AppIfConfigured("http")
		if err != nil {
			return fmt.Errorf("finding the HTTP servers to check their layout: %w", err)
		}
		if err := checkLayout(app.(*caddyhttp.App).Servers); err != nil {
			return err
		}
	}
	running.start(a.names.gateways)
	return nil
}

// serve records the gateway a handler of this configuration runs for a
// server name.
func (a *App) serve(server string, g *gateway.Gateway) {
	a.names.mu.Lock()
	defer a.names.mu.Unlock()
	a.names.gateways.byServer[server] = append(a.names.gateways.byServer[server], g)
}

// running holds the gateways of the configuration running now, by server
// name, for the calls held across a reload (see gateway.Config.Running).
var running runningGateways

// configGateways are the gateways of one configuration, by server name.
type configGateways struct {
	byServer map[string][]*gateway.Gateway
}

// runningGateways are the gateways of the configuration running now, and
// of the one before it while that one has not stopped (a configuration
// whose start fails stops at once, and the one before it runs on).
type runningGateways struct {
	mu                sync.Mutex
	current, previous *configGateways
}

// start makes a configuration's gateways the running ones.
func (r *runningGateways) start(gateways *configGateways) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.previous, r.current = r.current, gateways
	r.previous.retire(true)
	r.current.run()
}

// stop forgets a configuration's gateways: the one before it runs again
// if it was the running one (its start failed).
func (r *runningGateways) stop(gateways *configGateways) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch gateways {
	case r.current:
		r.current, r.previous = r.previous, nil
		r.current.run()
	case r.previous:
		r.previous = nil
	}
	gateways.retire(true)
}

// retire marks the configuration's gateways as replaced by a reload (see
// gateway.Gateway.Retire).
func (c *configGateways) retire(retired bool) {
	if c == nil {
		return
	}
	for _, gateways := range c.byServer {
		for _, g := range gateways {
			g.Retire(retired)
		}
	}
}

// run makes the configuration's gateways the running ones: not retired,
// and owning the lists of their upstreams' tools (see
// gateway.Gateway.ClaimTools).
func (c *configGateways) run() {
	if c == nil {
		return
	}
	c.retire(false)
	for _, gateways := range c.byServer {
		for _, g := range gateways {
			g.ClaimTools()
		}
	}
}

// serving returns the gateways that serve server in the configuration
// running now.
func (r *runningGateways) serving(server string) []*gateway.Gateway {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.current == nil {
		return nil
	}
	return slices.Clone(r.current.byServer[server])
}

// Provision implements caddy.Provisioner: the app keeps its context, to
// find the HTTP servers when it starts.
func (a *App) Provision(ctx caddy.Context) error {
	a.ctx = ctx
	a.epoch = appEpochs.Add(1)
	return nil
}

// appEpochs counts the configurations provisioned, to name each (see
// gateway.Config.Epoch).
var appEpochs atomic.Uint64

// upstreamOf is the upstream name a server name of this configuration
// stands for, or the name itself.
func (a *App) upstreamOf(server string) string {
	a.names.mu.Lock()
	defer a.names.mu.Unlock()
	if upstream, ok := a.names.servers[server]; ok {
		return upstream
	}
	return server
}

// guard records whether a handler is provisioned in an HTTP server, for
// Start.
func (a *App) guard(ctx caddy.Context) {
	if _, ok := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); !ok {
		return
	}
	a.names.mu.Lock()
	defer a.names.mu.Unlock()
	a.names.inHTTP = true
}

// Stop implements caddy.App: its gateways no longer run.
func (a *App) Stop() error {
	a.names.mu.Lock()
	defer a.names.mu.Unlock()
	running.stop(a.names.gateways)
	return nil
}

// Cleanup implements caddy.CleanerUpper: its gateways no longer run. Caddy
// cancels a configuration whose setting up fails after its apps started
// (a remote admin, a config loader) without stopping them; the one
// before it runs on, and its gateways are the running ones again.
func (a *App) Cleanup() error {
	return a.Stop()
}

// appOf returns the configuration's App.
func appOf(ctx caddy.Context) (*App, error) {
	app, err := ctx.App("mcpgate")
	if err != nil {
		return nil, fmt.Errorf("loading the mcpgate app: %w", err)
	}
	return app.(*App), nil
}

// defaultServer names a handler configured without `server`: after the
// ports (or unix sockets) of the HTTP server it is in, ":8443". The name
// comes from configuration alone, and not from the host addresses
// listened on, which may differ between replicas (bind {env.POD_IP}):
// replicas and restarts of one configuration agree on it (pins are kept
// under it), and no request can choose it. One HTTP server may hold one
// handler without `server`; a second one is refused, since nothing about
// it (not even its order, which Caddy does not keep for named routes)
// tells its upstream apart for good. Outside an HTTP server the name is
// gateway.DefaultServer.
func (a *App) defaultServer(ctx caddy.Context) (string, error) {
	name := gateway.DefaultServer
	if srv, ok := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok && len(srv.Listen) > 0 {
		name = listenerName(srv.Listen)
	}
	claims := a.names
	claims.mu.Lock()
	defer claims.mu.Unlock()
	if claims.unnamed[name] {
		return "", fmt.Errorf("two mcp_policy handlers without `server` in the HTTP server listening on %s: "+
			"give each its own `server <name>`, since what the gateway learns of an upstream's tools (their categories and pins) is kept under that name", name)
	}
	claims.unnamed[name] = true
	return name, nil
}

// listenerName is the ports of listener addresses (":8443"), or the
// addresses whole when they are not host:port (unix sockets), sorted and
// joined with ",".
func listenerName(listen []string) string {
	var parts []string
	for _, address := range listen {
		part := address
		if na, err := caddy.ParseNetworkAddress(address); err == nil && !na.IsUnixNetwork() {
			part = ":" + strconv.FormatUint(uint64(na.StartPort), 10)
			if na.EndPort != na.StartPort {
				part += "-" + strconv.FormatUint(uint64(na.EndPort), 10)
			}
		}
		parts = append(parts, part)
	}
	slices.Sort(parts)
	return strings.Join(slices.Compact(parts), ",")
}

// callerRealm is where a handler's callers' ids come from (its name, ""
// without an identity), and whether handlers fronting one upstream may
// share it (IdentityConfig.realmShared).
type callerRealm struct {
	name   string
	shared bool
}

// claim records that a handler fronts the upstream called upstream (named
// explicitly with the upstream subdirective or not) under the server name
// server. Two handlers of one configuration may front the same upstream,
// or share a server name, only when both say so with the same upstream
// <name>: what the gateway learns of an upstream's tools must never apply
// to another's, and a server name, which policies key rules on, stands for
// one upstream.
//
// Handlers that front one upstream and both identify callers must take
// caller ids from the same place (realm): "alice" of one identity
// provider is not "alice" of another, and sessions, approvals and
// confirmations are bound to the caller's id. Handlers that share a
// server name share its sessions (gateway.Gateway.sessionScope), and must
// decide and guard alike (guards: Handler.guards): a session opened on
// one would have its calls decided by the other and their answers
// guarded by the first.
func (a *App) claim(server, upstream string, explicit bool, realm callerRealm, guards string) error {
	claims := a.names
	claims.mu.Lock()
	defer claims.mu.Unlock()
	if other, taken := claims.servers[server]; taken && other != upstream {
		return fmt.Errorf("two mcp_policy handlers name the server %q with different upstreams (%q, %q): "+
			"give each upstream its own server name", server, other, upstream)
	}
	// Operators name an upstream's tools by server name or upstream name
	// (`mcpgate tools accept --server`): a name may not stand for one
	// upstream as a server and for another as an upstream.
	if _, named := claims.upstreams[server]; named && server != upstream {
		return fmt.Errorf("an mcp_policy handler names the server %q for the upstream %q, while %q names another upstream: "+
			"operators could not tell which one a name stands for; give them names apart", server, upstream, server)
	}
	if other, named := claims.servers[upstream]; named && other != upstream {
		return fmt.Errorf("an mcp_policy handler names the upstream %q, while another names the server %q for the upstream %q: "+
			"operators could not tell which one a name stands for; give them names apart", upstream, upstream, other)
	}
	wasExplicit, taken := claims.upstreams[upstream]
	if taken && !(explicit && wasExplicit) {
		return fmt.Errorf("two mcp_policy handlers name the server %q: give each upstream its own name; "+
			"if both really front the same MCP server, say so in both with `upstream %s`", upstream, upstream)
	}
	if other, ok := claims.realms[upstream]; ok && realm.name != "" && other.name != realm.name {
		return fmt.Errorf("two mcp_policy handlers front the upstream %q and identify callers from different places (%s; %s): "+
			"a caller of one could pass for a caller of the other; give them the same identity, or each its own upstream", upstream, other.name, realm.name)
	} else if ok && realm.name != "" && !(other.shared && realm.shared) {
		return fmt.Errorf("two mcp_policy handlers front the upstream %q with Caddy's authentication (%s): the gateway cannot tell whether their authentications know the same users "+
			"(two basic_auth lists may each have an alice); if they do, say so with the same `realm <name>` under `identity caddy` in both, else give each its own upstream", upstream, realm.name)
	}
	if other, taken := claims.guards[server]; taken && other != guards {
		return fmt.Errorf("two mcp_policy handlers name the server %q and decide or guard otherwise (their policy, decision, permissions, bundle, "+
			"block_secrets, tool overrides or parse limits differ): they share its sessions, and a session opened on one could be used on the other; "+
			"give each its own server name (both may keep `upstream %s`)", server, upstream)
	}
	claims.upstreams[upstream] = explicit
	claims.servers[server] = upstream
	claims.guards[server] = guards
	if realm.name != "" {
		claims.realms[upstream] = realm
	}
	return nil
}

// claimApprovals records that a handler, serving server, holds calls in
// the approval service of r (its store and instance) with r's settings,
// for the approvers its permissions table names; handlers of one
// configuration that give one service different settings are refused, as
// the service would run with whichever loaded last.
func (a *App) claimApprovals(r *resolvedApproval, server string, approvers []policy.TableApprovers) error {
	claims := a.names
	claims.mu.Lock()
	defer claims.mu.Unlock()
	key, fingerprint := r.poolKey(), r.fingerprint()
	if other, taken := claims.approvals[key]; taken && other != fingerprint {
		return errors.New("two mcp_policy handlers share an approval service (one store and instance) with different approval settings " +
			"(webhooks, secrets, URLs, durations, store, or `audit` on in one and not the other): it would run with one of them, announcing and " +
			"letting be decided the other's calls by its webhooks and secrets, and writing the audit records of approvals settled or not; give each its own `instance`")
	}
	for other, secrets := range claims.approvalSecrets {
		if other == key {
			continue
		}
		if err := checkCrossedSecrets(r.settings.WebhookSecrets, secrets.decision); err != nil {
			return err
		}
		if err := checkCrossedSecrets(secrets.webhook, r.settings.DecisionSecrets); err != nil {
			return err
		}
	}
	claims.approvals[key] = fingerprint
	if claims.approvalSecrets == nil {
		claims.approvalSecrets = make(map[string]approvalSecrets)
	}
	claims.approvalSecrets[key] = approvalSecrets{webhook: r.settings.WebhookSecrets, decision: r.settings.DecisionSecrets}
	claims.approvalUses = append(claims.approvalUses, approvalUse{server: server, instance: r.instance, store: r.store, approvers: approvers})
	return nil
}

// approvalSecrets are an approval service's secrets: those that sign its
// webhooks, and those that sign the decisions it takes.
type approvalSecrets struct {
	webhook, decision []approval.Secret
}

// checkCrossedSecrets refuses one approval service's webhook secret that
// signs as another's decision secret does (approval.Secret.Equal): whoever
// receives the first's approval requests, to verify them, could sign the
// second's decisions. (A service's own secrets are checked when its
// settings are read; mcp_approvals takes a decision signed with any
// secret of the service it names.)
func checkCrossedSecrets(webhook, decision []approval.Secret) error {
	for _, w := range webhook {
		if j, ok := approval.SignsAs(decision, w); ok {
			return fmt.Errorf("a webhook secret of one mcp_policy handler's approvals is a decision secret of another's (key %s), "+
				"or signs as one: whoever receives the first's approval requests could decide the second's calls; use distinct secrets", decision[j].ID())
		}
	}
	return nil
}

// approvalUse is a handler's use of an approval service, as
// claimApprovals recorded it.
type approvalUse struct {
	server, instance, store string
	// approvers are the entries of its permissions table that name
	// approvers for its calls.
	approvers []policy.TableApprovers
}

// nameTableServers records the servers a handler's permissions table has
// sections for, for checkTableServers.
func (a *App) nameTableServers(servers []string) {
	a.names.mu.Lock()
	defer a.names.mu.Unlock()
	a.names.tableServers = slices.Compact(slices.Sorted(slices.Values(append(a.names.tableServers, servers...))))
}

// serveApprovals records that an mcp_approvals handler of this
// configuration serves the approval services of instance (every one, when
// empty), for checkApprovalsServed.
func (a *App) serveApprovals(instance string) {
	a.names.mu.Lock()
	defer a.names.mu.Unlock()
	a.names.approvalsServed = append(a.names.approvalsServed, instance)
}

// claimInbox records an inbox of this configuration (an mcp_approvals
// handler's), deciding the approvals of instance (every instance, when
// empty), whose accounts hold principals (see checkApprovers), with its
// accounts, groups and caller ids as fingerprint: two
// inboxes that decide the same approvals with different ones are refused,
// since the approvers a policy names ("inbox:alice", "group:leads") would
// stand for whoever either inbox calls so, and each would keep its own
// accounts from deciding their own calls but not the other's.
func (a *App) claimInbox(instance, fingerprint string, principals []string) error {
	claims := a.names
	claims.mu.Lock()
	defer claims.mu.Unlock()
	for _, other := range claims.inboxes {
		overlap := instance == "" || other.instance == "" || instance == other.instance
		if overlap && other.fingerprint != fingerprint {
			return fmt.Errorf("two mcp_approvals inboxes decide the same approvals (instance %q and %q; none is every instance) with different accounts, groups or caller_ids: "+
				"an approver a policy names, inbox:<account> or group:<name>, would be whoever either calls so; give them the same accounts, or give each team's mcp_policy approval block its own `instance` and each inbox that instance",
				cmp.Or(other.instance, "(none)"), cmp.Or(instance, "(none)"))
		}
	}
	claims.inboxes = append(claims.inboxes, claimedInbox{instance: instance, fingerprint: fingerprint, principals: principals})
	return nil
}

// claimedInbox is an inbox claimInbox recorded.
type claimedInbox struct {
	instance, fingerprint string
	principals            []string
}

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
	_ caddy.Module       = (*App)(nil)
)
