package policy

import (
	"context"
	"fmt"
	"strings"
	"sync"
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
	// timeout bounds computing the shared rules, as it bounds every
	// evaluation.
	timeout time.Duration
	// modules are Options.Modules, parsed once.
	modules map[string]*ast.Module
	// data is Options.Data as plain JSON values.
	data map[string]any
	// validApprover is Options.ValidApprover.
	validApprover func(string) bool
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
		validApprover:   opts.ValidApprover,
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
	return b.prepare(ctx, all, data, origin)
}

// compiling makes the gateway's compilations of policies take turns,
// its own and those of OPA's bundle plugin (see compileTurns). OPA's type
// checker writes into the types built-in functions declare, which every
// compiler shares (ast.mergeTypes widening the object that object.union
// returns, when a rule's definitions give it with another object): two
// policies compiled at once (two sites' files reloaded, a bundle
// activated while another site loads) race on them. Compiling is done
// once per loaded policy, never per call.
var compiling sync.Mutex

// prepare compiles modules and data and prepares both queries, as they
// are. They are not evaluated ahead of their input (OPA's partial
// evaluation, with input unknown), which an earlier version did for speed:
// the query it leaves does not decide as the policy does. Rego's errors
// (a built-in given the wrong type, under strict built-in errors; a rule
// giving two values) depend on the order in which expressions run, which
// partial evaluation changes (it reorders bodies, drops those false on
// data, narrows iterations, inlines a rule's definitions as alternatives
// and keeps the first support rule it makes, `with data` included), and a
// call that OPA refuses with an error was allowed (TestDecidesAsOPA). What
// depends on data alone is still computed once per policy (sharedRules).
func (b *policyBuilder) prepare(ctx context.Context, modules map[string]*ast.Module, data map[string]any, origin string) (*preparedQueries, error) {
	compiling.Lock()
	defer compiling.Unlock()
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
	if err := b.checkTableRead(compiler, origin); err != nil {
		return nil, err
	}
	if err := b.checkTableNotDefined(compiler, origin); err != nil {
		return nil, err
	}
	var q preparedQueries
	if q.revision, err = revisionOf(modules, data); err != nil {
		return nil, err
	}
	q.input = inputUseOf(compiler.Modules, b.queryBodies...)
	q.warnings = b.lint(compiler, data, q.input)
	// The configuration's table and one in the policy's data are never
	// both given (build refuses it).
	q.table = tableNamesOf(data, !hasMember(b.data, "mcp", "permissions"))
	cacheable := deterministic(compiler.Modules, b.queryBodies...)
	for _, p := range []struct {
		query    string
		prepared *preparedQuery
	}{{b.decisionQuery, &q.decision}, {b.permissionQuery, &q.permission}} {
		if cacheable {
			if p.prepared.cache, err = newDecisionCache(b.cacheSize); err != nil {
				return nil, err
			}
		}
		// Strict built-in errors: a built-in that fails (to_number on
		// text, say) stops the evaluation, and so blocks, instead of
		// quietly making one rule undefined while another, more
		// permissive one applies.
		r := rego.New(
			rego.Query(p.query),
			rego.Compiler(compiler),
			rego.Store(store),
			rego.StoreReadAST(true),
			rego.StrictBuiltinErrors(true),
		)
		if p.prepared.prepared, err = r.PrepareForEval(ctx); err != nil {
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
	_, ok := dataAt(data, path)
	return ok
}

// checkDecisionDefined refuses a policy in which the decision query names
// neither a rule nor a document of its data (a misspelt `decision`, a
// policy written for another package): every message would be blocked
// as undefined, which the gateway would find out only from the traffic.
// A query with other than names in it (data.mcp[x]) is not checked.
func (b *policyBuilder) checkDecisionDefined(compiler *ast.Compiler, data map[string]any, origin string) error {
	ref, path, ok := b.decisionPath()
	if !ok {
		return nil
	}
	rules := compiler.GetRules(ref)
	if len(rules) == 0 && !hasMember(data, path...) {
		return fmt.Errorf("the policy from %s defines no %s (the decision query): every message would be blocked; define it, or name the decision the policy defines with the decision subdirective", origin, b.decisionQuery)
	}
	// A decision that can only be something other than an object (a
	// constant, a set, data that is not one) blocks every message too.
	// Rules under the decision (decision.action, decision["reason"], a
	// package of that name) make it an object.
	exact := compiler.GetRulesExact(ref)
	notObject := len(exact) > 0 && len(exact) == len(rules)
	for _, rule := range exact {
		for ; rule != nil; rule = rule.Else {
			value := rule.Head.Value
			if rule.Head.RuleKind() == ast.SingleValue && value != nil && (!value.IsGround() || isObject(value.Value)) {
				notObject = false
			}
		}
	}
	if document, ok := dataAt(data, path); ok && len(rules) == 0 {
		_, object := document.(map[string]any)
		notObject = !object
	}
	if notObject {
		return fmt.Errorf("the policy from %s defines %s (the decision query) as something other than an object: every message would be blocked; a decision is an object such as {\"action\": \"allow\", \"reason\": \"...\"}", origin, b.decisionQuery)
	}
	return nil
}

// decisionPath returns the decision query as a reference and as the
// names of its path under data, when it is made of names only
// (data.mcp.decision, not data.mcp[x]).
func (b *policyBuilder) decisionPath() (ast.Ref, []string, bool) {
	ref, err := ast.ParseRef(b.decisionQuery)
	if err != nil || !ref.HasPrefix(ast.DefaultRootRef) {
		return nil, nil, false // checked when the builder was made; not a data query
	}
	path := make([]string, 0, len(ref)-1)
	for _, term := range ref[1:] {
		name, ok := term.Value.(ast.String)
		if !ok {
			return nil, nil, false
		}
		path = append(path, string(name))
	}
	return ref, path, true
}

// isObject reports whether v is an object (as opposed to a rule's value
// that is a set, a string, a number...).
func isObject(v ast.Value) bool {
	_, ok := v.(ast.Object)
	return ok
}

// dataAt returns the document at path in data, and whether there is one.
func dataAt(data map[string]any, path []string) (any, bool) {
	var value any = data
	for _, name := range path {
		object, ok := value.(map[string]any)
		if !ok {
			return nil, false
		}
		if value, ok = object[name]; !ok {
			return nil, false
		}
	}
	return value, true
}

// permissionsRef is where the gateway's permissions table is in data.
var permissionsRef = ast.MustParseRef("data.mcp.permissions")

// checkTableRead refuses a policy whose decision never reads the
// permissions table the configuration gives it (one written without the
// library, or a decision of its own beside the library's): the table
// would be ignored without a word, and every tool it blocks allowed. The
// decision's rules are read, and every rule they depend on (OPA's
// dependency graph); a reference that may reach the table (data.mcp,
// data[x]) counts as reading it. A decision query with other than names
// in it is not checked.
func (b *policyBuilder) checkTableRead(compiler *ast.Compiler, origin string) error {
	ref, _, ok := b.decisionPath()
	if !ok || !hasMember(b.data, "mcp", "permissions") {
		return nil
	}
	read := false
	visitor := ast.NewGenericVisitor(func(x any) bool {
		if ref, ok := x.(ast.Ref); ok && mayReach(ref, permissionsRef) {
			read = true
		}
		return read
	})
	walkDependencies(compiler, compiler.GetRules(ref), func(rule *ast.Rule) bool {
		// The rule, not its module: a package's path (data.mcp) is no
		// read.
		visitor.Walk(rule)
		return read
	})
	if read {
		return nil
	}
	return fmt.Errorf("the policy from %s decides (%s) without reading data.mcp.permissions, so the permissions table the configuration gives would be ignored: include the library (policies/) in the policy paths and decide with it, or read the table in the policy's decision", origin, b.decisionQuery)
}

// checkTableNotDefined refuses a policy whose rules define documents in
// the permissions table the configuration gives (package
// mcp.permissions.servers.tracker, say): OPA merges them into the table,
// where the table is silent, as it would data (which build refuses), so a
// rule could allow what the table's category blocks.
func (b *policyBuilder) checkTableNotDefined(compiler *ast.Compiler, origin string) error {
	if !hasMember(b.data, "mcp", "permissions") {
		return nil
	}
	if rules := compiler.GetRulesWithPrefix(permissionsRef); len(rules) > 0 {
		return fmt.Errorf("the policy from %s defines %s, inside data.mcp.permissions, which the gateway's permissions table sets: give the table in one place", origin, rules[0].Ref())
	}
	return nil
}

// mayReach reports whether ref may name target or a document in or
// around it: it has target's head (data), and each of its other terms, up
// to the shorter's length, is either the target's or not a constant.
func mayReach(ref, target ast.Ref) bool {
	if len(ref) == 0 || !ref[0].Equal(target[0]) {
		return false
	}
	for i := 1; i < len(ref) && i < len(target); i++ {
		if !ref[i].IsGround() {
			return true
		}
		if !ref[i].Equal(target[i]) {
			return false
		}
	}
	return true
}
