package policy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/util"

	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
)

// policyBuilder compiles a policy from the modules and data of its source
// (files or a bundle) together with what the gateway adds to every source,
// and prepares its queries.
type policyBuilder struct {
	decisionQuery   string
	permissionQuery string
	// queryBodies are both queries, parsed, for what they read of input
	// and which built-ins they call.
	queryBodies []ast.Body
	// cacheSize is Options.CacheSize.
	cacheSize int
	// timeout bounds evaluating a policy ahead of its input, as it
	// bounds every evaluation.
	timeout time.Duration
	// modules are Options.Modules, parsed once.
	modules map[string]*ast.Module
	// data is Options.Data as plain JSON values.
	data map[string]any
}

// newPolicyBuilder checks the queries, parses Options.Modules and turns
// Options.Data into plain JSON values.
func newPolicyBuilder(opts Options) (*policyBuilder, error) {
	b := &policyBuilder{
		decisionQuery:   opts.Query,
		permissionQuery: opts.PermissionQuery,
		cacheSize:       opts.CacheSize,
		timeout:         opts.Timeout,
		modules:         make(map[string]*ast.Module, len(opts.Modules)),
	}
	if b.decisionQuery == "" {
		b.decisionQuery = DefaultDecisionQuery
	}
	if b.permissionQuery == "" {
		b.permissionQuery = DefaultPermissionQuery
	}
	for _, q := range []struct{ what, query string }{{"decision", b.decisionQuery}, {"permission", b.permissionQuery}} {
		ref, err := ast.ParseRef(q.query)
		if err != nil {
			return nil, fmt.Errorf("%s query %q is not a reference: %w", q.what, q.query, err)
		}
		b.queryBodies = append(b.queryBodies, ast.NewBody(ast.NewExpr(ast.NewTerm(ref))))
	}
	for name, source := range opts.Modules {
		if strings.HasSuffix(name, "_test.rego") {
			continue
		}
		module, err := ast.ParseModule(name, source)
		if err != nil {
			return nil, fmt.Errorf("parsing policy module %s: %w", name, err)
		}
		b.modules[name] = module
	}
	if opts.Data != nil {
		var data any = opts.Data
		if err := util.RoundTrip(&data); err != nil {
			return nil, fmt.Errorf("policy data is not a JSON document: %w", err)
		}
		b.data = data.(map[string]any)
	}
	return b, nil
}

// build compiles modules and data, from origin, with the builder's own,
// and prepares both queries. Neither modules nor data is modified.
func (b *policyBuilder) build(ctx context.Context, modules map[string]*ast.Module, data map[string]any, origin string) (*preparedQueries, error) {
	all := make(map[string]*ast.Module, len(modules)+len(b.modules))
	for name, module := range modules {
		all[name] = module
	}
	for name, module := range b.modules {
		if _, ok := all[name]; ok {
			return nil, fmt.Errorf("policy module %s is loaded from %s and given by the gateway", name, origin)
		}
		all[name] = module
	}
	if len(all) == 0 {
		return nil, fmt.Errorf("no Rego modules found in %s", origin)
	}
	if hasMember(b.data, "mcp", "permissions") && hasMember(data, "mcp", "permissions") {
		// Merged member by member, a section or tool entry of the policy's
		// data would override the configuration's table where the table
		// is silent (a server's section allowing what the table's
		// category blocks): the table is the configuration's alone.
		return nil, fmt.Errorf("policy data from %s sets data.mcp.permissions, which the gateway's permissions table sets: give the table in one place", origin)
	}
	data, err := mergeData(data, b.data, ast.DefaultRootRef)
	if err != nil {
		return nil, fmt.Errorf("policy data from %s conflicts with the gateway's configuration: %w", origin, err)
	}
	if data == nil {
		data = map[string]any{}
	}
	q, err := b.prepare(ctx, all, data, origin, true)
	if errors.Is(err, errAhead) {
		q, err = b.prepare(ctx, all, data, origin, false)
	}
	return q, err
}

// errAhead marks a failure to evaluate a policy ahead of its input, after
// which it is prepared as it is.
var errAhead = errors.New("evaluating the policy ahead of its input")

// prepare compiles modules and data and prepares both queries, and, when
// ahead is set and the policy is deterministic, evaluates them ahead of
// their input (OPA's partial evaluation, with input unknown): what depends
// on data alone is evaluated once here (a tool table is looked up, rules
// that read no input are decided), so that each evaluation does only what
// depends on the input. That evaluation is bounded by the evaluation
// timeout; one that fails or takes longer fails with errAhead. A
// non-deterministic policy is never evaluated ahead, since what it does
// with data alone can change from one evaluation to the next.
func (b *policyBuilder) prepare(ctx context.Context, modules map[string]*ast.Module, data map[string]any, origin string, ahead bool) (*preparedQueries, error) {
	// The store copies data, so the policy in force shares nothing with
	// the loader, Options.Data or a bundle plugin's store.
	// Keep data as OPA values, so that reading data.mcp.tools on every
	// evaluation does not convert a large table from Go values each time.
	store := inmem.NewWithOpts(inmem.OptReturnASTValuesOnRead(true))
	compiler := ast.NewCompiler()
	err := storage.Txn(ctx, store, storage.WriteParams, func(txn storage.Transaction) error {
		if err := store.Write(ctx, txn, storage.AddOp, storage.RootPath, data); err != nil {
			return fmt.Errorf("storing policy data: %w", err)
		}
		// Rules and data must not define the same document.
		compiler = compiler.WithPathConflictsCheck(storage.NonEmpty(ctx, store, txn))
		if compiler.Compile(modules); compiler.Failed() {
			return fmt.Errorf("compiling policy from %s: %w", origin, compiler.Errors)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}

	if err := b.checkDecisionDefined(compiler, data, origin); err != nil {
		return nil, err
	}
	var q preparedQueries
	if q.revision, err = revisionOf(modules, data); err != nil {
		return nil, err
	}
	q.input = inputUseOf(compiler.Modules, b.queryBodies...)
	cacheable := deterministic(compiler.Modules, b.queryBodies...)
	for _, p := range []struct {
		query, namespace string
		prepared         *preparedQuery
	}{{b.decisionQuery, "mcpgate_decision", &q.decision}, {b.permissionQuery, "mcpgate_permission", &q.permission}} {
		if cacheable {
			if p.prepared.cache, err = newDecisionCache(b.cacheSize); err != nil {
				return nil, err
			}
		}
		// Strict built-in errors: a built-in that fails (to_number on
		// text, say) stops the evaluation, and so blocks, instead of
		// quietly making one rule undefined while another, more
		// permissive one applies. Evaluating ahead, they make it fail
		// rather than leave out what would have failed.
		r := rego.New(
			rego.Query(p.query),
			rego.Compiler(compiler),
			rego.Store(store),
			rego.StoreReadAST(true),
			rego.StrictBuiltinErrors(true),
			rego.PartialNamespace(p.namespace),
		)
		if ahead && cacheable {
			aheadCtx, cancel := context.WithTimeout(ctx, b.timeout)
			p.prepared.prepared, err = r.PrepareForEval(aheadCtx, rego.WithPartialEval(), rego.WithNoInline(singleValueRules(compiler, p.query)))
			cancel()
			if err != nil {
				return nil, fmt.Errorf("%w: query %s: %w", errAhead, p.query, err)
			}
		} else if p.prepared.prepared, err = r.PrepareForEval(ctx); err != nil {
			return nil, fmt.Errorf("preparing query %s: %w", p.query, err)
		}
	}
	// Every evaluation reads the store in one transaction, opened once:
	// nothing writes to this store after it is built (a reload builds a
	// new one), and reads in a read transaction share no state.
	txn, err := store.NewTransaction(ctx)
	if err != nil {
		return nil, fmt.Errorf("opening the policy data: %w", err)
	}
	q.shared = findSharedRules(ctx, compiler, store, txn, b.timeout)
	options := []rego.EvalOption{rego.EvalTransaction(txn), termResults, noMetrics}
	q.decision.options, q.permission.options = options, options
	return &q, nil
}

// revisionOf names a policy by its content: a SHA-256 of its modules (as
// OPA prints them, in order, whatever the files were called) and its data
// (as canonical JSON), so that audit records say exactly which policy
// decided, alike on replicas that load it from different places.
func revisionOf(modules map[string]*ast.Module, data map[string]any) (string, error) {
	printed := make([]string, 0, len(modules))
	for _, module := range modules {
		printed = append(printed, module.String())
	}
	slices.Sort(printed)
	h := sha256.New()
	for _, module := range printed {
		fmt.Fprintf(h, "%d\n%s\n", len(module), module)
	}
	encoded, err := json.Marshal(data)
	if err != nil {
		return "", fmt.Errorf("hashing policy data: %w", err)
	}
	h.Write(encoded)
	return "sha256:" + hex.EncodeToString(h.Sum(nil))[:16], nil
}

// mergeData returns base with extra merged into it, member by member for
// objects both hold. A path both set to anything else is a conflict, named
// in the error. Neither argument is modified; the result shares their
// values.
func mergeData(base, extra map[string]any, at ast.Ref) (map[string]any, error) {
	if len(extra) == 0 {
		return base, nil
	}
	if len(base) == 0 {
		return extra, nil
	}
	merged := make(map[string]any, len(base)+len(extra))
	for key, value := range base {
		merged[key] = value
	}
	for key, value := range extra {
		prev, ok := merged[key]
		if !ok {
			merged[key] = value
			continue
		}
		path := at.Append(ast.StringTerm(key))
		prevObject, prevIsObject := prev.(map[string]any)
		object, isObject := value.(map[string]any)
		if !prevIsObject || !isObject {
			return nil, fmt.Errorf("%s is set twice", path)
		}
		sub, err := mergeData(prevObject, object, path)
		if err != nil {
			return nil, err
		}
		merged[key] = sub
	}
	return merged, nil
}

// hasMember reports whether data holds the member at path.
func hasMember(data map[string]any, path ...string) bool {
	var value any = data
	for _, name := range path {
		object, ok := value.(map[string]any)
		if !ok {
			return false
		}
		if value, ok = object[name]; !ok {
			return false
		}
	}
	return true
}

// checkDecisionDefined refuses a policy in which the decision query names
// neither a rule nor a document of its data (a misspelt `decision`, a
// policy written for another package): every message would be blocked
// as undefined, which the gateway would find out only from the traffic.
// A query with other than names in it (data.mcp[x]) is not checked.
func (b *policyBuilder) checkDecisionDefined(compiler *ast.Compiler, data map[string]any, origin string) error {
	ref, err := ast.ParseRef(b.decisionQuery)
	if err != nil || !ref.HasPrefix(ast.DefaultRootRef) {
		return nil // checked when the builder was made; not a data query
	}
	path := make([]string, 0, len(ref)-1)
	for _, term := range ref[1:] {
		name, ok := term.Value.(ast.String)
		if !ok {
			return nil
		}
		path = append(path, string(name))
	}
	if len(compiler.GetRules(ref)) > 0 || hasMember(data, path...) {
		return nil
	}
	return fmt.Errorf("the policy from %s defines no %s (the decision query): every message would be blocked; define it, or name the decision the policy defines with the decision subdirective", origin, b.decisionQuery)
}

// singleValueRules are the refs of the rules that give one value (complete
// rules, functions, object rules) other than query's own. In Rego such a
// rule giving two values for one input (two definitions that hold, or
// one that holds twice) is an error, which the gateway turns into a block;
// inlined into the query by partial evaluation, its definitions and
// solutions become alternatives, any one of which decides, and the error
// is lost (a call with "repo": "acme/x" and "repository": "evil/x" passed
// a rule on repo := input.tool.arguments.repo and
// repo := input.tool.arguments.repository). Left out of the inlining, they
// are evaluated as rules, each evaluation checking their values agree.
func singleValueRules(compiler *ast.Compiler, query string) []string {
	var refs []string
	seen := map[string]bool{query: true}
	var walk func(node *ast.TreeNode)
	walk = func(node *ast.TreeNode) {
		for _, rule := range node.Values {
			if rule.Default || rule.Head.RuleKind() != ast.SingleValue {
				continue
			}
			ref := rule.Ref().GroundPrefix().String()
			if !seen[ref] {
				seen[ref] = true
				refs = append(refs, ref)
			}
		}
		for _, child := range node.Children {
			walk(child)
		}
	}
	walk(compiler.RuleTree)
	return refs
}
