package policy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/open-policy-agent/opa/v1/rego"
)

// DefaultDecisionQuery is the query evaluated when none is configured.
const DefaultDecisionQuery = "data.mcp.decision"

// DefaultTimeout bounds one evaluation when no timeout is configured.
const DefaultTimeout = time.Second

// Options configures an Engine.
type Options struct {
	// Paths are Rego files or folders; folders are read recursively. Their
	// .json and .yaml files load as data. Rego test files (*_test.rego)
	// are left out: they belong to `opa test`, not to the running policy.
	Paths []string
	// Query is the decision reference; DefaultDecisionQuery when empty.
	Query string
	// Timeout bounds one evaluation; DefaultTimeout when zero.
	Timeout time.Duration
}

// Engine holds a compiled policy and its prepared decision query.
// It is safe for concurrent use.
type Engine struct {
	query   rego.PreparedEvalQuery
	timeout time.Duration
}

// New loads and compiles the policy and prepares its decision query, so
// that every later evaluation only runs the query.
func New(ctx context.Context, opts Options) (*Engine, error) {
	if len(opts.Paths) == 0 {
		return nil, errors.New("no policy paths given")
	}
	query := opts.Query
	if query == "" {
		query = DefaultDecisionQuery
	}
	if _, err := ast.ParseRef(query); err != nil {
		return nil, fmt.Errorf("decision query %q is not a reference: %w", query, err)
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}

	loaded, err := loader.NewFileLoader().Filtered(opts.Paths, skipNonPolicyFiles)
	if err != nil {
		return nil, fmt.Errorf("loading policy from %s: %w", strings.Join(opts.Paths, ", "), err)
	}
	if len(loaded.Modules) == 0 {
		return nil, fmt.Errorf("no Rego modules found in %s", strings.Join(opts.Paths, ", "))
	}
	store, err := loaded.Store()
	if err != nil {
		return nil, fmt.Errorf("loading policy data: %w", err)
	}
	// Strict built-in errors: a built-in that fails (to_number on text,
	// say) stops the evaluation, and so blocks, instead of quietly making
	// one rule undefined while another, more permissive one applies.
	regoOpts := []func(*rego.Rego){rego.Query(query), rego.Store(store), rego.StrictBuiltinErrors(true)}
	for _, module := range loaded.ParsedModules() {
		regoOpts = append(regoOpts, rego.ParsedModule(module))
	}
	prepared, err := rego.New(regoOpts...).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("compiling policy: %w", err)
	}
	return &Engine{query: prepared, timeout: timeout}, nil
}

// skipNonPolicyFiles is a loader filter: it keeps folders, Rego modules
// other than tests, and data files.
func skipNonPolicyFiles(_ string, info fs.FileInfo, _ int) bool {
	if info.IsDir() {
		return false
	}
	name := info.Name()
	switch filepath.Ext(name) {
	case ".rego":
		return strings.HasSuffix(name, "_test.rego")
	case ".json", ".yaml", ".yml":
		return false
	default:
		return true
	}
}

// Decide evaluates the policy for one input. It always returns a decision
// the gateway can act on: when evaluation fails, times out, or yields
// anything but a well-formed decision, the decision is a block whose reason
// says why, and the error is returned too so the caller can log it.
func (e *Engine) Decide(ctx context.Context, input *Input) (Decision, error) {
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	rs, err := e.query.Eval(ctx, rego.EvalInput(input.Document()))
	if err != nil {
		return blockedByError(fmt.Errorf("evaluating policy: %w", err))
	}
	d, err := parseDecision(rs)
	if err != nil {
		return blockedByError(err)
	}
	return d, nil
}

func blockedByError(err error) (Decision, error) {
	return Decision{Action: ActionBlock, Reason: "blocked: the policy gave no valid decision (" + err.Error() + ")"}, err
}
