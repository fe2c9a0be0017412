package policy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"
	"go.uber.org/zap"
)

// DefaultDecisionQuery is the query evaluated when none is configured.
const DefaultDecisionQuery = "data.mcp.decision"

// DefaultPermissionQuery is the tool permission query evaluated when none
// is configured.
const DefaultPermissionQuery = "data.mcp.tool_permission"

// DefaultTimeout bounds one evaluation when no timeout is configured.
const DefaultTimeout = time.Second

// Options configures an Engine. The policy comes from Paths, or from a
// Bundle, plus Modules and Data, which combine with either; together they
// must give at least one Rego module.
type Options struct {
	// Paths are Rego files or folders; folders are read recursively. Their
	// .json and .yaml files load as data. Rego test files (*_test.rego)
	// are left out: they belong to `opa test`, not to the running policy.
	// Paths cannot be combined with Bundle.
	Paths []string
	// Modules are further Rego modules, file name to source, such as the
	// library built into the gateway. Names ending in _test.rego are left
	// out, as in Paths. A name also loaded from Paths is an error.
	Modules map[string]string
	// Data is merged at the root of the data document, beside the data
	// of Paths or the Bundle (for example {"mcp": {"permissions": ...}}).
	// Objects merge member by member; a path that both set is an error
	// naming it, at New for Paths and at activation for a bundle.
	Data map[string]any
	// Query is the decision reference; DefaultDecisionQuery when empty.
	Query string
	// PermissionQuery is the reference to a tool's permission in the
	// organization's table alone, which ToolPermission evaluates to hide
	// blocked tools from tools/list; DefaultPermissionQuery when empty.
	PermissionQuery string
	// Timeout bounds one evaluation; DefaultTimeout when zero.
	Timeout time.Duration
	// CacheSize is how many results each query remembers, by the part of
	// the input its policy reads, when the policy calls no
	// non-deterministic built-in; DefaultCacheSize when zero, none when
	// negative.
	CacheSize int
	// Watch reloads the policy whenever a file or folder under Paths
	// changes, including files added later. An edit that does not load or
	// compile is logged and the previous policy stays in force. Watch
	// needs Paths.
	Watch bool
	// Bundle loads the policy and its data from an OPA bundle server,
	// polling for new revisions; see BundleConfig.
	Bundle *BundleConfig
	// ValidApprover, when set, says whether an approver a policy names
	// is a principal the gateway knows: the approvers a policy's own
	// rules name as constants are checked as it loads, and a warning
	// names those it refuses.
	ValidApprover func(approver string) bool
	// Logger receives reload and bundle messages; nil discards them.
	Logger *zap.Logger
	// OnReload, when set, is told of every reload after the first load
	// (a watched file changed, a bundle came or failed): nil on success,
	// else why the previous policy stays in force.
	OnReload func(error)
}

// Engine holds a compiled policy and its prepared queries. It is safe for
// concurrent use; a reload swaps the prepared queries without blocking
// evaluations in progress.
type Engine struct {
	queries atomic.Pointer[preparedQueries]
	timeout time.Duration
	logger  *zap.Logger
	// onReload is Options.OnReload.
	onReload func(error)
	builder  *policyBuilder

	// loading serializes loading files, so that a load that started
	// earlier never replaces the policy of one that started later.
	loading sync.Mutex

	// stop cancels the context of reloads that run in the background.
	stop      context.CancelFunc
	watcher   *policyWatcher
	bundle    *policyBundle
	closeOnce sync.Once
}

// preparedQueries are the queries of one compiled policy.
type preparedQueries struct {
	decision   preparedQuery
	permission preparedQuery
	// input is what the policy reads of the input document: all of it
	// that evaluations build.
	input *inputUse
	// revision names the policy and data (revisionOf).
	revision string
	// shared are the values of the rules every evaluation computes alike.
	shared *sharedRules
	// warnings say what the policy does that its author evidently did
	// not mean (lint), logged as it is put in force.
	warnings []string
	// table are the names its permissions table gives tools and servers.
	table tableNames
}

// preparedQuery is one query of a compiled policy, with the results it
// remembers; cache is nil when the policy is not deterministic or caching
// is off.
type preparedQuery struct {
	prepared rego.PreparedEvalQuery
	cache    *decisionCache
	// options are what every evaluation of the query is given besides
	// its input: the policy's transaction, results left as OPA values,
	// no metrics.
	options []rego.EvalOption
}

// New loads and compiles the policy and prepares its queries, so that every
// later evaluation only runs them. With a Bundle, New waits until the first
// bundle is activated, so the gateway never runs without a policy; ctx
// bounds that wait, and BundleConfig.ActivationTimeout bounds it when ctx
// has no deadline. Background work (watching, polling) runs until Close,
// not until ctx ends.
func New(ctx context.Context, opts Options) (*Engine, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	builder, err := newPolicyBuilder(opts)
	if err != nil {
		return nil, err
	}
	logger := opts.Logger
	if logger == nil {
		logger = zap.NewNop()
	}
	background, stop := context.WithCancel(context.Background())
	e := &Engine{timeout: opts.Timeout, logger: logger, builder: builder, stop: stop, onReload: opts.OnReload}

	switch {
	case opts.Bundle != nil:
		if len(opts.Paths) > 0 {
			return nil, e.closeWith(errors.New("policy paths and a policy bundle cannot be combined"))
		}
		if opts.Watch {
			return nil, e.closeWith(errors.New("watching needs policy paths; a policy bundle is polled instead"))
		}
		if e.bundle, err = startBundle(ctx, background, e, opts.Bundle); err != nil {
			return nil, e.closeWith(err)
		}
	case opts.Watch:
		if len(opts.Paths) == 0 {
			return nil, e.closeWith(errors.New("watching needs policy paths"))
		}
		// Watch first, so that an edit made while the policy loads is
		// not missed.
		if e.watcher, err = watchPolicy(opts.Paths, logger, func() { e.reloadFiles(background, opts.Paths) }); err != nil {
			return nil, e.closeWith(err)
		}
		if err := e.loadFiles(ctx, opts.Paths); err != nil {
			return nil, e.closeWith(err)
		}
	default:
		if len(opts.Paths) == 0 && len(builder.modules) == 0 {
			return nil, e.closeWith(errors.New("no policy paths, modules or bundle given"))
		}
		if err := e.loadFiles(ctx, opts.Paths); err != nil {
			return nil, e.closeWith(err)
		}
	}
	return e, nil
}

// closeWith closes a half-built engine and returns err.
func (e *Engine) closeWith(err error) error {
	return errors.Join(err, e.Close())
}

// Close stops watching files and polling for bundles. The engine keeps
// deciding with the last policy it loaded. Close may be called more than
// once.
func (e *Engine) Close() error {
	var err error
	e.closeOnce.Do(func() {
		e.stop()
		if e.watcher != nil {
			err = e.watcher.close()
		}
		if e.bundle != nil {
			e.bundle.stop()
		}
	})
	return err
}

// Revision names the policy and data the engine decides with now: it
// changes when they do (a file rewritten, a bundle activated).
func (e *Engine) Revision() string {
	return e.queries.Load().revision
}

// warnings say what the policy in force does that its author evidently
// did not mean (lint); they are logged as it is put in force.
func (e *Engine) warnings() []string {
	return slices.Clone(e.queries.Load().warnings)
}

// Decide evaluates the policy for one input. It always returns a decision
// the gateway can act on: when evaluation fails, times out, or yields
// anything but a well-formed decision, the decision is a block whose reason
// says why, and the error is returned too so the caller can log it.
func (e *Engine) Decide(ctx context.Context, input *Input) (Decision, error) {
	queries := e.queries.Load()
	r, err := e.result(ctx, queries, &queries.decision, input)
	switch {
	case err != nil:
		r.decision, err = blockedByError(err)
	case !r.defined:
		r.decision, err = blockedByError(errUndefined)
	}
	r.decision.Revision = queries.revision
	return r.decision, err
}

// DecidesWithoutArguments reports whether the policy in force never reads
// a tools/call's arguments: none of input.tool.arguments,
// input.tool.argument_names, input.tool.secrets and
// input.params.arguments, nor input,
// input.tool or input.params whole (any reference into them whose member
// is chosen at run time reads them whole). Its decision on a call of a
// tool without arguments is then its decision on every call of that tool
// in the same context (caller, session, request, and what else of params
// the call carries, such as _meta), which a tools/list may hide the tool
// by.
func (e *Engine) DecidesWithoutArguments() bool {
	use := e.queries.Load().input
	tool, params := use.member("tool"), use.member("params")
	return !use.isWhole() && !tool.isWhole() && !params.isWhole() &&
		tool.member("arguments") == nil && tool.member("argument_names") == nil && tool.member("secrets") == nil &&
		params.member("arguments") == nil
}

// ToolPermission evaluates the permission query for a tools/call input:
// the action the organization's table alone gives the tool, which the
// gateway uses to hide blocked tools from tools/list. ok is false when the
// policy leaves the permission undefined, and then the tool is shown. When
// evaluation fails or yields anything but a well-formed decision, the
// result errs on the side of hiding: a block, ok true, and the error.
func (e *Engine) ToolPermission(ctx context.Context, input *Input) (d Decision, ok bool, err error) {
	queries := e.queries.Load()
	r, err := e.result(ctx, queries, &queries.permission, input)
	if err != nil {
		d, err = blockedByError(err)
		return d, true, err
	}
	return r.decision, r.defined, nil
}

// result evaluates one of the policy's queries for input, or recalls the
// result of an earlier evaluation on the same part of the input (see
// decisionCache).
func (e *Engine) result(ctx context.Context, queries *preparedQueries, query *preparedQuery, input *Input) (cachedResult, error) {
	value, err := input.value(queries.input)
	if err != nil {
		return cachedResult{}, inputError{fmt.Errorf("building policy input: %w", err)}
	}
	cache := query.cache
	var key string
	if !cache.consulted() {
		cache = nil
	}
	if cache != nil {
		var ok bool
		if key, ok, err = cacheKey(value); err != nil {
			return cachedResult{}, err
		}
		if !ok {
			cache = nil
		} else if r, found := cache.get(key); found {
			r.decision.Cached = true
			return r, nil
		}
	}
	rs, err := e.eval(ctx, query, queries.shared, value)
	if err != nil {
		return cachedResult{}, err
	}
	r := cachedResult{defined: true}
	r.decision, err = parseDecision(rs)
	switch {
	case errors.Is(err, errUndefined):
		r = cachedResult{}
	case err != nil:
		return cachedResult{}, err
	}
	cache.put(key, r)
	return r, nil
}

// eval runs a prepared query on an input document within the evaluation
// timeout, and while ctx lasts.
func (e *Engine) eval(ctx context.Context, query *preparedQuery, shared *sharedRules, input ast.Value) (rego.ResultSet, error) {
	cancel := &evalCancel{ctx: ctx, deadline: time.Now().Add(e.timeout)}
	rules := newRuleCache(shared)
	defer rules.release()
	options := append(query.options[:len(query.options):len(query.options)],
		rego.EvalParsedInput(input), rego.EvalExternalCancel(cancel), rego.EvalVirtualCache(rules))
	rs, err := query.prepared.Eval(ctx, options...)
	if err != nil {
		// A built-in that sees the cancel reports it in its own words
		// ("timed out before ..."): say which ended the evaluation.
		if topdown.IsCancel(err) {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return nil, fmt.Errorf("evaluating policy: %w", ctxErr)
			}
			if cancel.timedOut() {
				return nil, fmt.Errorf("%w (%s)", errTimedOut, e.timeout)
			}
		}
		return nil, fmt.Errorf("evaluating policy: %w", err)
	}
	return rs, nil
}

// evalCancel is what an evaluation asks, between two of its expressions,
// whether to stop: once its deadline has passed or its context has ended.
// It looks at the clock on every ask, and at the context on one ask in
// contextCheckEvery (the context's Err walks the request's chain of
// contexts), rather than be told by a timer and a context callback: those
// would be set up and torn down on every evaluation, one of the costs of
// the gateway's hot path (and without a cancel of its own, OPA starts a
// goroutine per evaluation to watch the context). OPA asks from the
// evaluating goroutine; the atomics keep it safe should that change.
type evalCancel struct {
	ctx      context.Context
	deadline time.Time
	asked    atomic.Uint32
	stopped  atomic.Bool
}

var _ topdown.Cancel = (*evalCancel)(nil)

// contextCheckEvery is how often evalCancel looks at the context: an
// evaluation whose request ends stops within this many expressions.
const contextCheckEvery = 8

// Cancel stops the evaluation (topdown.Cancel).
func (c *evalCancel) Cancel() { c.stopped.Store(true) }

// Cancelled reports whether the evaluation is to stop (topdown.Cancel).
func (c *evalCancel) Cancelled() bool {
	if c.stopped.Load() {
		return true
	}
	if c.timedOut() || (c.asked.Add(1)%contextCheckEvery == 1 && c.ctx.Err() != nil) {
		c.stopped.Store(true)
		return true
	}
	return false
}

// timedOut reports whether the evaluation's deadline has passed. It reads
// the monotonic clock alone (time.Until on a time.Now), one clock read
// where time.Now makes two: it is asked between every two expressions.
func (c *evalCancel) timedOut() bool {
	return time.Until(c.deadline) <= 0
}

// inputError is why a message could not be made the policy's input: a
// fault of the message (a header the policy reads given twice), not of
// the policy.
type inputError struct{ error }

func (e inputError) Unwrap() error { return e.error }

// errTimedOut is why an evaluation that outlasted the policy's timeout
// stopped.
var errTimedOut = errors.New("evaluating policy: it took longer than its timeout")

// noMetrics spares evaluations the metrics OPA would otherwise make and
// time for each: nothing reads them.
var noMetrics = rego.EvalMetrics(metrics.NoOp())

// blockedByError is the block a failed evaluation gives, with err, for
// the log. The reason, which the client sees, says why in the gateway's
// own words when the policy gave no decision or ran out of time; an
// evaluation error or a malformed decision names the policy's files,
// lines and values, which are the operator's to read, not the caller's.
func blockedByError(err error) (Decision, error) {
	why := "its evaluation failed or its decision is malformed; the gateway's log says why"
	var fromInput inputError
	switch {
	case errors.As(err, &fromInput):
		// What is wrong is the message's, which its sender may know.
		why = err.Error()
	case errors.Is(err, errUndefined):
		why = "no rule gave a decision"
	case errors.Is(err, errTimedOut):
		why = err.Error()
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		why = "the request ended while it was evaluated"
	}
	return Decision{Action: ActionBlock, Reason: "blocked: the policy gave no valid decision (" + why + ")"}, err
}

// loadFiles loads and compiles the policy in paths, with the builder's
// modules and data, and makes it the one in force.
func (e *Engine) loadFiles(ctx context.Context, paths []string) error {
	e.loading.Lock()
	defer e.loading.Unlock()
	modules := map[string]*ast.Module{}
	var data map[string]any
	origin := "the gateway's modules"
	if len(paths) > 0 {
		origin = strings.Join(paths, ", ")
		loaded, err := loader.NewFileLoader().Filtered(paths, LoadFilter(false))
		if err != nil {
			return fmt.Errorf("loading policy from %s: %w", origin, err)
		}
		modules = loaded.ParsedModules()
		data = loaded.Documents
	}
	queries, err := e.builder.build(ctx, modules, data, origin)
	if err != nil {
		return err
	}
	e.install(queries, origin)
	return nil
}

// install puts a built policy in force, from origin, and logs its
// warnings.
func (e *Engine) install(queries *preparedQueries, origin string) {
	e.queries.Store(queries)
	for _, warning := range queries.warnings {
		e.logger.Warn("policy warning", zap.String("policy", origin), zap.String("warning", warning))
	}
}

// reloadFiles is loadFiles for the watcher: the outcome is logged, and a
// policy that does not load leaves the previous one in force.
func (e *Engine) reloadFiles(ctx context.Context, paths []string) {
	err := e.loadFiles(ctx, paths)
	e.reloaded(err)
	if err != nil {
		e.logger.Error("policy reload failed; keeping the previous policy", zap.Strings("paths", paths), zap.Error(err))
		return
	}
	e.logger.Info("policy reloaded", zap.Strings("paths", paths))
}

// reloaded tells Options.OnReload how a reload went.
func (e *Engine) reloaded(err error) {
	if e.onReload != nil {
		e.onReload(err)
	}
}

// LoadFilter is how the gateway reads the files and folders of a policy
// (an OPA loader.Filter, which skips what it returns true for): it keeps
// folders, Rego modules and data files, and skips hidden entries below
// the paths given. With withTests it keeps Rego tests (*_test.rego) too,
// as `mcpgate policy test` reads them beside the policy the gateway would
// load, and nothing else: a test must see the very modules the gateway
// decides with.
func LoadFilter(withTests bool) loader.Filter {
	return func(_ string, info fs.FileInfo, depth int) bool {
		if depth > 0 && strings.HasPrefix(info.Name(), ".") {
			// Hidden entries are not the policy: version control,
			// editors' files, and the timestamped folders a Kubernetes
			// ConfigMap mount keeps beside the links to its files (read
			// through those links, each once).
			return true
		}
		if info.IsDir() {
			return false
		}
		return !isPolicyFile(info.Name()) && !(withTests && strings.HasSuffix(info.Name(), "_test.rego"))
	}
}

// isPolicyFile reports whether a file of this name is part of a policy:
// a Rego module other than a test, or a data file.
func isPolicyFile(name string) bool {
	switch filepath.Ext(name) {
	case ".rego":
		return !strings.HasSuffix(name, "_test.rego")
	case ".json", ".yaml", ".yml":
		return true
	default:
		return false
	}
}
