package policy

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// sharedRules are the values of the rules that every evaluation of a
// policy would compute alike: rules that read no input, modify nothing
// with `with`, call no built-in whose result can change, and depend only
// on rules of the same kind (in the shipped library: the sets of
// categories, member names and methods, and the organization's own
// reasons and approvers). They are computed once, when the policy is
// prepared, and each evaluation finds them in its rule cache (ruleCache)
// rather than evaluating them again.
type sharedRules struct {
	root sharedNode
}

// sharedNode is one level of the paths under data: the value of the rule
// at this path when shared is set (nil: the rule is undefined), and the
// levels below.
type sharedNode struct {
	shared   bool
	value    *ast.Term
	children map[string]*sharedNode
}

// lookup returns the value of the shared rule at ref, and whether there
// is one: (value, true) for a defined rule, (nil, true) for an undefined
// one.
func (s *sharedRules) lookup(ref ast.Ref) (*ast.Term, bool) {
	if len(ref) < 2 || !ref[0].Equal(ast.DefaultRootDocument) {
		return nil, false
	}
	node := &s.root
	for _, term := range ref[1:] {
		name, ok := term.Value.(ast.String)
		if !ok {
			return nil, false
		}
		if node = node.children[string(name)]; node == nil {
			return nil, false
		}
	}
	return node.value, node.shared
}

// add records the value of the rule at path, under data.
func (s *sharedRules) add(path []string, value *ast.Term) {
	node := &s.root
	for _, name := range path {
		child := node.children[name]
		if child == nil {
			if node.children == nil {
				node.children = map[string]*sharedNode{}
			}
			child = &sharedNode{}
			node.children[name] = child
		}
		node = child
	}
	node.shared, node.value = true, value
}

// findSharedRules finds the rules of a compiled policy that evaluate alike
// whatever the input, and evaluates them, within one evaluation timeout
// for all. A rule whose evaluation fails, or does not end in time, is
// left to each evaluation, which fails or takes as long as it would have.
func findSharedRules(ctx context.Context, compiler *ast.Compiler, store storage.Store, txn storage.Transaction, timeout time.Duration) *sharedRules {
	shared := &sharedRules{}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for _, path := range alikeRulePaths(compiler) {
		query := ast.DefaultRootRef.Copy()
		for _, name := range path {
			query = query.Append(ast.StringTerm(name))
		}
		prepared, err := rego.New(
			rego.ParsedQuery(ast.NewBody(ast.NewExpr(ast.NewTerm(query)))),
			rego.Compiler(compiler),
			rego.Store(store),
			rego.StoreReadAST(true),
			rego.StrictBuiltinErrors(true),
		).PrepareForEval(ctx)
		if err != nil {
			continue
		}
		rs, err := prepared.Eval(ctx, rego.EvalTransaction(txn), termResults, noMetrics)
		switch {
		case ctx.Err() != nil:
			return shared
		case err != nil:
		case len(rs) == 0 || len(rs[0].Expressions) == 0:
			shared.add(path, nil)
		default:
			if term, ok := rs[0].Expressions[0].Value.(*ast.Term); ok {
				shared.add(path, term)
			}
		}
	}
	return shared
}

// alikeRulePaths returns the paths under data of the rules that evaluate
// alike whatever the input: every rule at the path (else branches
// included) is no function, varies not by itself (variesByItself), and
// depends only on rules that do not vary either. Paths that hold rules
// below them, or that are not made of names alone, are left out.
func alikeRulePaths(compiler *ast.Compiler) [][]string {
	alike := map[*ast.Rule]bool{}
	var evaluatesAlike func(rule *ast.Rule) bool
	evaluatesAlike = func(rule *ast.Rule) bool {
		if same, known := alike[rule]; known {
			return same
		}
		alike[rule] = false // policies have no recursion: this only ends a cycle
		same := !variesByItself(rule)
		for dependency := range compiler.Graph.Dependencies(rule) {
			if !same {
				break
			}
			same = evaluatesAlike(dependency.(*ast.Rule))
		}
		alike[rule] = same
		return same
	}
	var paths [][]string
	// underRules is set below a node that holds rules of its own: a rule
	// there (a[k] := v, k from the input) may give the same key as a
	// rule below it (a.b := "x"), which is Rego's conflict error, and so a
	// block, in the evaluation that has both; a value computed once for
	// a.b would hide it.
	var walk func(node *ast.TreeNode, path []string, underRules bool)
	walk = func(node *ast.TreeNode, path []string, underRules bool) {
		for key, child := range node.Children {
			if name, ok := key.(ast.String); ok {
				walk(child, append(path[:len(path):len(path)], string(name)), underRules || len(node.Values) > 0)
			}
		}
		if underRules || len(node.Values) == 0 || len(node.Children) > 0 || len(path) == 0 {
			return
		}
		for _, value := range node.Values {
			for rule := value; rule != nil; rule = rule.Else {
				if len(rule.Head.Args) > 0 || !rule.Ref().IsGround() || !evaluatesAlike(rule) {
					return
				}
			}
		}
		paths = append(paths, path)
	}
	if data := compiler.RuleTree.Child(ast.DefaultRootDocument.Value); data != nil {
		walk(data, nil, false)
	}
	return paths
}

// variesByItself reports whether a rule, leaving aside the rules it
// depends on and its else branches (rules of their own), may evaluate
// differently from one evaluation to the next: it reads input, modifies
// something with `with`, or calls a built-in whose result can change (see
// deterministic).
func variesByItself(rule *ast.Rule) bool {
	alone := *rule
	alone.Else = nil
	varies := false
	ast.NewGenericVisitor(func(x any) bool {
		switch x := x.(type) {
		case *ast.With:
			varies = true
		case ast.Ref:
			varies = varies || x.HasPrefix(ast.InputRootRef)
		case ast.Var:
			varies = varies || x.Equal(ast.InputRootDocument.Value)
		}
		return varies
	}).Walk(&alone)
	pure := true
	purityVisitor(&pure).Walk(&alone)
	return varies || !pure
}

// ruleCache is the cache of rule values of one evaluation
// (topdown.VirtualCache): the policy's shared rules, then what the
// evaluation computes itself, in frames (a `with` pushes one, which can
// change what rules evaluate to: inside it only its own frame counts).
// It keeps what OPA's own cache keeps, with the semantics of its Get and
// Put, in a few slices and maps that are reused from one evaluation to
// the next (ruleCaches) rather than in a tree of maps made anew for each.
type ruleCache struct {
	shared *sharedRules
	frames []ruleFrame
	// depth is how many frames are in use; frames beyond it are kept for
	// reuse.
	depth int
}

// ruleFrame is one frame of a ruleCache: entries, found by the hash of
// their ref (first holds the first entry of each hash, next chains the
// others), whose refs' terms are kept in terms.
type ruleFrame struct {
	first   map[int]int32
	entries []ruleEntry
	terms   []*ast.Term
}

// ruleEntry is one ref's value: its terms are terms[start:end] of its
// frame; undefined marks a ref recorded as undefined.
type ruleEntry struct {
	start, end int32
	next       int32
	value      *ast.Term
	undefined  bool
}

// maxPooledEntries bounds the entries of a rule cache put back for reuse,
// so that one large evaluation does not keep its memory.
const maxPooledEntries = 4096

// ruleCaches are rule caches for evaluations to reuse.
var ruleCaches = sync.Pool{New: func() any { return &ruleCache{} }}

// newRuleCache returns an empty rule cache over shared. release gives it
// back once the evaluation is over.
func newRuleCache(shared *sharedRules) *ruleCache {
	c := ruleCaches.Get().(*ruleCache)
	c.shared = shared
	c.Push()
	return c
}

// release empties the cache and keeps it for another evaluation.
func (c *ruleCache) release() {
	size := 0
	for i := range c.frames {
		size += len(c.frames[i].entries)
		c.frames[i].reset()
	}
	c.shared, c.depth = nil, 0
	if size <= maxPooledEntries {
		ruleCaches.Put(c)
	}
}

// reset empties a frame, keeping its memory.
func (f *ruleFrame) reset() {
	clear(f.first)
	clear(f.entries)
	clear(f.terms)
	f.entries, f.terms = f.entries[:0], f.terms[:0]
}

// Push enters a `with`.
func (c *ruleCache) Push() {
	if c.depth == len(c.frames) {
		c.frames = append(c.frames, ruleFrame{first: map[int]int32{}})
	}
	c.depth++
}

// Pop leaves a `with`, forgetting what was recorded inside it.
func (c *ruleCache) Pop() {
	c.depth--
	c.frames[c.depth].reset()
}

// Get returns the value of ref: (value, false) when known, (nil, true)
// when known to be undefined, (nil, false) when not known.
func (c *ruleCache) Get(ref ast.Ref) (*ast.Term, bool) {
	if c.depth == 1 {
		if value, shared := c.shared.lookup(ref); shared {
			return value, value == nil
		}
	}
	f := &c.frames[c.depth-1]
	if e := f.find(ref, ref.Hash()); e != nil {
		if e.undefined {
			return nil, true
		}
		return e.value, false
	}
	return nil, false
}

// Put records the value of ref (nil: undefined). Like OPA's own cache, a
// ref once recorded undefined stays so.
func (c *ruleCache) Put(ref ast.Ref, value *ast.Term) {
	f := &c.frames[c.depth-1]
	hash := ref.Hash()
	e := f.find(ref, hash)
	if e == nil {
		next, chained := f.first[hash]
		if !chained {
			next = -1
		}
		f.first[hash] = int32(len(f.entries))
		start := int32(len(f.terms))
		f.terms = append(f.terms, ref...)
		f.entries = append(f.entries, ruleEntry{start: start, end: int32(len(f.terms)), next: next})
		e = &f.entries[len(f.entries)-1]
	}
	if value == nil {
		e.undefined = true
	} else {
		e.value = value
	}
}

// find returns the entry of ref, which has the given hash, if any.
func (f *ruleFrame) find(ref ast.Ref, hash int) *ruleEntry {
	i, ok := f.first[hash]
	for ok && i >= 0 {
		e := &f.entries[i]
		if ast.Ref(f.terms[e.start:e.end]).Equal(ref) {
			return e
		}
		i = e.next
	}
	return nil
}

// Keys returns the refs with a value in the current frame.
func (c *ruleCache) Keys() []ast.Ref {
	f := &c.frames[c.depth-1]
	var keys []ast.Ref
	for _, e := range f.entries {
		if e.value != nil {
			keys = append(keys, slices.Clone(ast.Ref(f.terms[e.start:e.end])))
		}
	}
	return keys
}

var _ topdown.VirtualCache = (*ruleCache)(nil)
