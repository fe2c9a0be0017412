package policy

import (
	"fmt"
	"sync/atomic"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/open-policy-agent/opa/v1/ast"
)

// DefaultCacheSize is how many decisions an Engine remembers per query when
// Options.CacheSize is zero.
const DefaultCacheSize = 10000

// maxCacheKeyBytes bounds the key of a remembered result, and so the
// cache's memory: a policy that reads a whole large argument is evaluated
// every time rather than remembered by it (such keys rarely repeat).
const maxCacheKeyBytes = 2048

// decisionCache remembers the results of one prepared query by the part of
// the input its policy reads. Evaluating a policy is a pure function of that
// part and of the policy's data when the policy calls no non-deterministic
// built-in (time.now_ns, http.send, rand.intn, ...), so a result found here
// is exactly the one evaluation would give. Each compiled policy has caches
// of its own: a reload starts empty ones, and no result outlives the
// policy and data that gave it. Failed evaluations are never remembered.
//
// A cache only pays when inputs repeat: when they do not (a rule reads an
// argument whose every value is new), writing each key and remembering
// each result is work for nothing. So each window of lookups counts its
// hits, and after a window in which fewer than one in rarelyHits hit, the
// cache is consulted on one call in sparseEvery only, until a window of
// those finds inputs repeating again. The calls in between are evaluated,
// which gives the same result.
type decisionCache struct {
	results *lru.Cache[string, cachedResult]
	// calls counts the calls that may consult the cache; lookups and
	// hits, those of the current window that did, and found a result.
	calls, lookups, hits atomic.Uint64
	// sparse is set while the cache is consulted on one call in
	// sparseEvery.
	sparse atomic.Bool
}

// The cache's window: how many lookups it counts, the share of hits below
// which it is consulted sparsely (one in rarelyHits), and how sparsely.
const (
	cacheWindow = 1024
	rarelyHits  = 64
	sparseEvery = 16
)

// cachedResult is one remembered evaluation: the decision, and whether the
// policy defined it.
type cachedResult struct {
	decision Decision
	defined  bool
}

// newDecisionCache returns a cache of size results, or nil when size is
// negative (caching is off).
func newDecisionCache(size int) (*decisionCache, error) {
	if size < 0 {
		return nil, nil
	}
	if size == 0 {
		size = DefaultCacheSize
	}
	results, err := lru.New[string, cachedResult](size)
	if err != nil {
		return nil, fmt.Errorf("making the decision cache: %w", err)
	}
	return &decisionCache{results: results}, nil
}

// cacheKey is the canonical text of an input part: OPA writes objects with
// their keys sorted and strings quoted, so two parts have the same key
// exactly when they are equal. ok is false when the key is too long to be
// worth remembering (see maxCacheKeyBytes), which is found before the key
// is written.
func cacheKey(value ast.Value) (key string, ok bool, err error) {
	if value.StringLength() > maxCacheKeyBytes {
		return "", false, nil
	}
	appender, isAppender := value.(textAppender)
	if !isAppender {
		return "", false, nil // not cacheable; every OPA value is an appender
	}
	text, err := appender.AppendText(make([]byte, 0, value.StringLength()))
	if err != nil {
		return "", false, fmt.Errorf("writing the decision cache key: %w", err)
	}
	if len(text) > maxCacheKeyBytes {
		return "", false, nil
	}
	return string(text), true, nil
}

// textAppender is how OPA values write their canonical text.
type textAppender interface {
	AppendText(b []byte) ([]byte, error)
}

// consulted reports whether this call consults the cache: always, unless
// inputs have stopped repeating (see decisionCache). A nil cache is never
// consulted.
func (c *decisionCache) consulted() bool {
	if c == nil {
		return false
	}
	return !c.sparse.Load() || c.calls.Add(1)%sparseEvery == 0
}

// get returns the remembered result for key, and counts the lookup in the
// cache's window.
func (c *decisionCache) get(key string) (cachedResult, bool) {
	r, found := c.results.Get(key)
	if found {
		c.hits.Add(1)
	}
	if c.lookups.Add(1)%cacheWindow == 0 {
		c.sparse.Store(c.hits.Swap(0) < cacheWindow/rarelyHits)
	}
	return r, found
}

// put remembers a result; a nil cache does nothing.
func (c *decisionCache) put(key string, result cachedResult) {
	if c != nil {
		c.results.Add(key, result)
	}
}

// impure are the built-ins that OPA does not mark non-deterministic but
// that a remembered result would misrepresent: print and trace, whose
// output it would skip, and certificate verification, which checks
// validity against the clock unless told a time.
var impure = map[string]bool{
	ast.Print.Name:         true,
	ast.InternalPrint.Name: true,
	ast.Trace.Name:         true,
	ast.CryptoX509ParseAndVerifyCertificates.Name:            true,
	ast.CryptoX509ParseAndVerifyCertificatesWithOptions.Name: true,
}

// deterministic reports whether the compiled modules and the queries call
// no built-in whose result can change between two evaluations on the same
// input and data (those OPA marks non-deterministic), nor any of impure.
// Built-ins are found by name, so a rule that mocks one (with time.now_ns
// as ...) counts as calling it.
func deterministic(modules map[string]*ast.Module, queries ...ast.Body) bool {
	pure := true
	walkPolicy(purityVisitor(&pure), modules, queries)
	return pure
}

// purityVisitor returns a visitor that sets *pure to false at the first
// call of a built-in whose result can change between two evaluations (see
// deterministic), and then stops.
func purityVisitor(pure *bool) *ast.GenericVisitor {
	check := func(operator *ast.Term) {
		ref, ok := operator.Value.(ast.Ref)
		if !ok {
			return
		}
		name := ref.String()
		if builtin, ok := ast.BuiltinMap[name]; ok && builtin.Nondeterministic || impure[name] {
			*pure = false
		}
	}
	return ast.NewGenericVisitor(func(x any) bool {
		if !*pure {
			return true
		}
		switch x := x.(type) {
		case *ast.Expr:
			if x.IsCall() {
				check(x.OperatorTerm())
			}
		case ast.Call:
			if len(x) > 0 {
				check(x[0])
			}
		case *ast.With:
			check(x.Target)
			check(x.Value)
		}
		return false
	})
}
