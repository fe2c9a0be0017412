package gateway

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/mcpgate/mcpgate/caddymodule/approval"
	"github.com/mcpgate/mcpgate/caddymodule/catalog"
	"github.com/mcpgate/mcpgate/caddymodule/mcphttp"
	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
	"github.com/mcpgate/mcpgate/caddymodule/policy"
)

// decide is the stage that gives every message its verdict. A
// notifications/cancelled first releases the held call it names (and is
// then decided as any other message). When the upstream, asked for its
// tools in the client's session, no longer knows the session, the request
// is answered as the upstream would answer it, 404, so that the client
// initializes anew.
func (x *exchange) decide() error {
	x.cancelHeldCalls()
	x.watchCancel()
	x.verdicts = make([]verdict, len(x.body.Messages))
	for i := range x.body.Messages {
		x.verdicts[i] = x.confirmedByCaller(x.coveredByEarlierApproval(x.decideMessage(&x.body.Messages[i])))
	}
	if x.sessionEnded {
		return refuse(http.StatusNotFound, mcpmsg.CodeInvalidRequest, "unknown session: the server ended it; initialize a new one")
	}
	return nil
}

// decideMessage builds the policy input for one message and evaluates it.
// For a tools/call it first makes sure the catalog knows the tool,
// fetching the upstream's tools/list when it does not. A call to a tool
// the upstream does not list is refused without asking the policy: the
// gateway cannot tell what the tool does.
func (x *exchange) decideMessage(m *mcpmsg.Message) verdict {
	g := x.g
	input := x.baseInput(x.version)
	input.Kind, input.Method, input.Params = m.Kind.String(), m.Method, m.Params
	v := verdict{message: m, input: input, approvals: g.cfg.Approvals != nil, calledAs: x.calledAs[m]}
	start := time.Now()
	if m.Tool == nil {
		if reason := m.UnresolvedResourceURI(); reason != "" {
			// Refused before the policy, which would read the URI as
			// sent while the server reads another resource.
			v.decision = policy.Decision{Action: policy.ActionBlock, Reason: reason}
			g.recordRefusal(x.r, input, "", v.decision)
			return v
		}
		task, followsTask := x.taskCall(m)
		if followsTask {
			// A request following a task is decided with the tool whose
			// call started it.
			known, _ := g.knownTool(task.tool)
			input.Tool = policyTool(known, nil)
		}
		ctx, span := x.startMessageSpan(input, m.ID)
		v.decision = g.evaluate(x.requestIn(ctx), x.session, m, input, "")
		if v.allowed() && x.withholdClientAnswer(m) {
			v.outcome = outcomeWithheld
		}
		if followsTask && task.coveredByApproval(x.session, v.decision) {
			// Held as the call that started the task was, and approved
			// then (other requests needing approval are refused, as only
			// a tools/call is held).
			v.decision = policy.Decision{Action: policy.ActionAllow, Reason: "the call that started the task was approved", Revision: v.decision.Revision}
		}
		v.span, v.openSpan, v.evaluated = span.SpanContext(), span, time.Since(start)
		return v
	}
	var tool catalog.Tool
	var listed bool
	var fetchErr error
	if !x.unoffered[m] {
		tool, listed, fetchErr = x.lookupTool(m.Tool.Name, m.Params)
	}
	input.Tool, v.toolHash = policyTool(tool, m.Tool.Arguments), tool.Hash
	ctx, span := x.startMessageSpan(input, m.ID)
	v.span = span.SpanContext()
	if !listed {
		v.decision = policy.Decision{Action: policy.ActionBlock, Reason: unlistedReason(m.Tool.Name, fetchErr)}
		g.recordRefusal(x.r, input, unlistedTool, v.decision)
	} else {
		v.decision = g.evaluate(x.requestIn(ctx), x.session, m, input, m.Tool.Name)
	}
	v.openSpan, v.evaluated = span, time.Since(start)
	return v
}

// unlistedReason says why a call to a tool the catalog does not know was
// refused.
func unlistedReason(name string, fetchErr error) string {
	var metaSecrets *metaSecretsError
	switch {
	case errors.As(fetchErr, &metaSecrets):
		return metaSecrets.reason(name)
	case fetchErr != nil:
		return fmt.Sprintf("the gateway could not learn the server's tools, so it cannot tell what tool %q does", name)
	}
	return fmt.Sprintf("the server does not offer a tool named %q (it is not in the server's tools/list)", name)
}

// maxListFetches bounds how many times one lookup fetches the upstream's
// tool list.
const maxListFetches = 3

// errListKeptChanging is why a call was refused whose tool list the
// upstream announced changed again after each of maxListFetches fetches.
var errListKeptChanging = errors.New("the server's tool list kept changing while the gateway fetched it")

// lookupTool returns what the catalog knows of a tool, and whether the
// upstream listed it, refreshing the upstream's tool list first when it
// is stale (never fetched whole, announced changed, or past its age:
// catalog.Freshness); fetchErr says why
// a refresh failed. A list that went stale again while it was fetched (a
// reload resets it, a list_changed forgets it) is fetched again, up to
// maxListFetches times in all: a call is decided only on a current list,
// and refused when there is none. A tool the current list lacks has the
// list fetched anew in the call's own session, within bounds (see
// refetchOnMiss): servers list tools per session or caller (by the
// capabilities a client declared, the scopes of its token), and the list
// the gateway holds may be another session's. That list is learned as
// the current one, not forgotten first: other callers' calls go on being
// decided on a current list meanwhile.
func (x *exchange) lookupTool(name string, params map[string]any) (tool catalog.Tool, listed bool, fetchErr error) {
	g := x.g
	if !g.ownsList() {
		// The catalog's list is another configuration's (a reload
		// replaced this one, or this one has not started yet): its
		// upstream of the name may be another MCP server.
		return x.toolUnrecorded(name, params)
	}
	tool, listed, fetched, fetchErr := x.lookupCurrent(name, params)
	if !listed && fetchErr == nil && !fetched && x.refetchOnMiss(name) {
		// On failure the list held stays current: the call is refused on
		// it.
		err := x.refreshList(name, params, false)
		if metaSecrets := (*metaSecretsError)(nil); errors.As(err, &metaSecrets) {
			// Not fetched: refused for what the fetch would have sent.
			return tool, false, err
		}
		if err == nil && !g.catalog.Stale(g.cfg.Upstream) {
			tool, listed = g.knownTool(name)
		}
		g.missFetches.Add(x.session.String(), missFetch{list: g.heldList(), found: listed, at: time.Now()})
	}
	if listed && tool.Changed {
		// Accepted through another gateway sharing the pins, perhaps. (A
		// list reset meanwhile leaves the tool as it was: Changed.)
		if rechecked, ok := g.catalog.Recheck(x.r.Context(), g.cfg.Upstream, name); ok {
			tool = rechecked
		}
	}
	return tool, listed, fetchErr
}

// How many sessions refetchOnMiss remembers, and for how long; how often
// a session may have the list fetched so; how many of its fetches the
// gateway makes at most, a second and at once.
const (
	missFetchesKept      = 10_000
	missFetchesFor       = 10 * time.Minute
	missFetchInterval    = 2 * time.Second
	missFetchesPerSecond = 2
	missFetchesBurst     = 4
	// droppedFetchesPerSecond and droppedFetchesBurst bound the fetches
	// for tools a renewal dropped (see refetchOnMiss).
	droppedFetchesPerSecond = 4
	droppedFetchesBurst     = 8
)

// missFetch is a session's last fetch of the list for a tool it lacked:
// the digest of the list held after it (see noteList), whether the tool
// was in it, and when.
type missFetch struct {
	list  [sha256.Size]byte
	found bool
	at    time.Time
}

// refetchOnMiss reports whether a call naming a tool the current list
// lacks has the list fetched anew, in its own session, first. Never while
// the list held is the one the session's last such fetch left (its own:
// the tool is not in it, whatever tool it names next); after a fetch that
// did not find the tool either, no sooner than missFetchInterval (a
// session naming tools no list has, taking turns with another whose list
// differs, would have each fetch re-arm the other); and at most
// missFetchesPerSecond for the whole gateway; droppedFetchesPerSecond
// more when the list held is a renewal that dropped the tool
// (catalog.Catalog.Dropped: a server that lists tools per caller had it
// renewed in another caller's session, and the sessions calling a tool
// of their own would otherwise share the first limit with every session
// naming tools no list has). A session whose tool another session's list
// lacked gets it back each time; one naming tools no list has costs the
// upstream a tools/list at most every missFetchInterval.
func (x *exchange) refetchOnMiss(name string) bool {
	g := x.g
	key := x.session.String()
	held := g.heldList()
	if last, ok := g.missFetches.Get(key); ok && (last.list == held || !last.found && time.Since(last.at) < missFetchInterval) {
		return false
	}
	limiter := g.missLimiter
	if g.catalog.Dropped(g.cfg.Upstream, name) {
		limiter = g.droppedLimiter
	}
	if !limiter.Allow() {
		return false
	}
	// Taken until the fetch is learned, when lookupTool records what it
	// left.
	g.missFetches.Add(key, missFetch{list: held, at: time.Now()})
	return true
}

// refreshList fetches the upstream's tool list in the exchange's session,
// for a call to the named tool (params its params, whose _meta the fetch
// repeats), and records it (with renew, renewing the list held); it
// notes a session the upstream no longer knows, and logs a failure.
func (x *exchange) refreshList(name string, params map[string]any, renew bool) error {
	g := x.g
	meta, err := x.fetchMeta(params)
	if err != nil {
		return err
	}
	err = x.fetcher().refresh(g.cfg.Upstream, meta, renew)
	if errors.Is(err, errSessionEnded) {
		x.sessionEnded = true
	} else if err != nil {
		g.logger.Warn("could not fetch the upstream's tool list",
			zap.String("upstream", g.cfg.Upstream), zap.String("tool", name), zap.Bool("renewal", renew), zap.Error(err))
	}
	return err
}

// lookupCurrent is lookupTool on the current list: fetched says whether it
// fetched the list in the session, and the list held is the session's
// own. (A renewal is not: another session's list may replace it, or it
// another's that started later, so a tool the list held after it lacks
// is fetched for as any other: see refetchOnMiss.)
func (x *exchange) lookupCurrent(name string, params map[string]any) (tool catalog.Tool, listed, fetched bool, fetchErr error) {
	g := x.g
	for fetches := 1; ; fetches++ {
		renewed := false
		if freshness := g.catalog.Freshness(g.cfg.Upstream); freshness != catalog.Current {
			fetched, renewed = true, freshness == catalog.Renewable
			fetchErr = x.refreshList(name, params, renewed)
		}
		if g.catalog.Freshness(g.cfg.Upstream) == catalog.Current {
			// A list learned whose pins could not be stored is current
			// too: its new tools are unpinned, so changed.
			tool, listed = g.knownTool(name)
			if renewed && !listed && fetchErr == nil {
				fetched = false
			}
			return tool, listed, fetched, fetchErr
		}
		// What the catalog still holds is the list a refresh was to
		// replace (forgotten on list_changed, or learned before a
		// reload): a call decided on it could run a tool that is now
		// something else. Refused, as never listed.
		if fetchErr != nil {
			return notListed(name), false, fetched, fetchErr
		}
		if fetches == maxListFetches {
			return notListed(name), false, fetched, errListKeptChanging
		}
	}
}

// knownTool returns what the catalog knows of a tool, and whether the
// upstream listed it. A tool it did not list is destructive (the MCP
// defaults).
func (g *Gateway) knownTool(name string) (catalog.Tool, bool) {
	tool, listed := g.catalog.Lookup(g.cfg.Upstream, name)
	if !listed {
		tool = notListed(name)
	}
	return tool, listed
}

// notListed is a tool the upstream did not list: by the MCP defaults,
// destructive.
func notListed(name string) catalog.Tool {
	return catalog.Tool{Name: name, Annotations: map[string]any{}, Category: catalog.Destructive}
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

// baseInput is the policy input every message of the request shares.
func (x *exchange) baseInput(version string) *policy.Input {
	input := &policy.Input{
		Direction:       policy.DirectionClientToServer,
		Server:          x.g.cfg.Server,
		Session:         x.r.Header.Get(mcphttp.HeaderSessionID),
		ProtocolVersion: version,
		Request:         x.g.requestInfo(x.r),
		User:            x.caller,
	}
	if client, known := x.capabilities(); known {
		input.Client = client.input()
	}
	return input
}

// requestInfo describes the HTTP request for policy input. Its headers
// are made from the request's only for a policy that reads them.
func (g *Gateway) requestInfo(r *http.Request) policy.Request {
	return policy.Request{
		RemoteIP: g.host.ClientIP(r),
		Host:     r.Host,
		Path:     r.URL.Path,
		Header:   r.Header,
	}
}

// evaluate decides one policy input, that of m (nil for a server's
// request, whose secrets are read as it is relayed) sent in session, and
// records the decision in the metrics and the decision log.
func (g *Gateway) evaluate(r *http.Request, session sessionKey, m *mcpmsg.Message, input *policy.Input, toolLabel string) policy.Decision {
	if g.retired.Load() {
		return g.evaluateRunning(r, session, m, input, toolLabel)
	}
	return g.evaluateOwn(r, session, m, input, toolLabel)
}

// evaluateRunning decides, for a gateway a reload retired, a message of a
// request it took before (a stream, a long call) by the policy in force
// now: with every gateway that serves its server now (see deciders),
// each reading the request as it would (its headers, its host), each
// counting and logging its decision. The strictest decision stands; one
// held by some for other reviewers than others is refused, as a held
// call decided again is, and one the caller may approve only by some is
// held for the reviewers alone.
func (g *Gateway) evaluateRunning(r *http.Request, session sessionKey, m *mcpmsg.Message, input *policy.Input, toolLabel string) policy.Decision {
	running := g.judges()
	if len(running) == 0 {
		decision := policy.Decision{Action: policy.ActionBlock, Reason: notServedReason(g.cfg.Server)}
		g.recordRefusal(r, input, toolLabel, decision)
		return decision
	}
	var strictest policy.Decision
	for i, h := range running {
		now := *input
		now.Request = h.requestInfo(r)
		d := h.evaluateOwn(r, session, m, &now, toolLabel)
		switch {
		case i == 0 || actionRank[d.Action] > actionRank[strictest.Action]:
			strictest = d
		case d.Action == policy.ActionNeedsApproval && strictest.Action == policy.ActionNeedsApproval &&
			!slices.Equal(reviewersOf(d.Approvers), reviewersOf(strictest.Approvers)):
			return policy.Decision{Action: policy.ActionBlock, Reason: "the gateways serving it now hold it for different reviewers", Revision: d.Revision}
		case d.Action == policy.ActionNeedsApproval && strictest.Action == policy.ActionNeedsApproval &&
			!slices.Contains(d.Approvers, approval.PrincipalCaller):
			// Held for the same reviewers: the caller may approve it
			// only if every gateway lets them (reviewersOf leaves the
			// caller out; found by a review).
			strictest = d
		}
	}
	return strictest
}

// actionRank orders the actions from the least strict to the strictest.
var actionRank = map[policy.Action]int{policy.ActionAllow: 0, policy.ActionNeedsApproval: 1, policy.ActionBlock: 2}

// evaluateOwn is evaluate by the gateway's own policy.
func (g *Gateway) evaluateOwn(r *http.Request, session sessionKey, m *mcpmsg.Message, input *policy.Input, toolLabel string) policy.Decision {
	start := time.Now()
	decision, err := g.cfg.Engine.Decide(r.Context(), input)
	decision = g.blockSecrets(session, m, input, decision)
	g.record(r, input, toolLabel, decision, time.Since(start), err)
	return decision
}

// record counts a decision the policy took in the metrics, with how long
// it took, and writes it to the decision log.
func (g *Gateway) record(r *http.Request, input *policy.Input, toolLabel string, d policy.Decision, elapsed time.Duration, err error) {
	g.metrics.count(toolLabel, d, elapsed, true)
	g.logDecision(r, input, d, elapsed, err)
}

// recordRefusal counts and logs a refusal the gateway made without asking
// the policy: it is not an evaluation, so it stays out of the evaluation
// time histogram.
func (g *Gateway) recordRefusal(r *http.Request, input *policy.Input, toolLabel string, d policy.Decision) {
	g.metrics.count(toolLabel, d, 0, false)
	g.logDecision(r, input, d, 0, nil)
}

// logDecision writes the decision log: one structured entry per decision.
// Arguments are left out unless log_arguments is set.
func (g *Gateway) logDecision(r *http.Request, input *policy.Input, d policy.Decision, elapsed time.Duration, err error) {
	level, message := zap.InfoLevel, "decision"
	if err != nil {
		level, message = zap.ErrorLevel, "policy evaluation failed; message blocked"
	}
	// Check first: the fields (and the request id) cost time on every
	// call, and are only worth it when the entry is written.
	entry := g.logger.Check(level, message)
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
		zap.String("request_id", g.host.RequestID(r)),
		zap.String("remote_ip", input.Request.RemoteIP),
	}
	if input.Tool != nil {
		fields = append(fields, zap.String("tool", input.Tool.Name), zap.String("category", input.Tool.Category))
		if g.cfg.LogArguments {
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

// decideServerRequest decides a request the server sends the client, on
// the stream the exchange's request carries, sent under version, to a
// client that declared the given capabilities (known: whether it
// declared any). A request for a client feature the client did not
// declare is refused without asking the policy.
func (x *exchange) decideServerRequest(version, method string, params map[string]any, declared capabilities, known bool) policy.Decision {
	input := x.baseInput(version)
	input.Direction = policy.DirectionServerToClient
	input.Kind, input.Method, input.Params = mcpmsg.KindRequest.String(), method, params
	input.Client = nil
	if known {
		input.Client = declared.input()
	}
	if reason := declared.undeclared(method, params); reason != "" {
		decision := policy.Decision{Action: policy.ActionBlock, Reason: reason}
		x.g.recordRefusal(x.r, input, "", decision)
		return decision
	}
	return x.g.evaluate(x.r, x.session, nil, input, "")
}
