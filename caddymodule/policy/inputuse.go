package policy

import (
	"slices"

	"github.com/open-policy-agent/opa/v1/ast"
)

// inputUse is the part of the input document that a compiled policy can
// read, found from the references to input in its modules: a tree of
// member names, where whole marks a member read entirely (and a nil
// *inputUse one never read).
//
// The gateway builds only that part for each evaluation. Building the
// whole document (headers, params, claims) costs more than many a policy's
// own evaluation, and a policy cannot tell the difference: every way to
// reach a member it was not given (input[k], walk(input), x := input,
// json.marshal(input), input.params[k], ...) is a reference whose static
// prefix stops above that member, and marks all below the prefix as read.
// One built-in is understood: object.get(input.a, "b", d) reads input.a.b
// alone, unless a module replaces object.get (with object.get as f). OPA
// has no such projection of its own; it reads whatever input it is handed.
type inputUse struct {
	whole   bool
	members map[string]*inputUse
}

// wholeInput reads everything: the use of Input.Value.
var wholeInput = &inputUse{whole: true}

// member returns the use of one member: nil when it is never read, the
// member's own tree otherwise (a whole parent reads its members whole).
func (u *inputUse) member(name string) *inputUse {
	if u == nil || u.whole {
		return u
	}
	return u.members[name]
}

// isWhole reports whether the member is read entirely.
func (u *inputUse) isWhole() bool {
	return u != nil && u.whole
}

// add marks the member at path, and everything below it, as read.
func (u *inputUse) add(path []string) {
	node := u
	for _, name := range path {
		if node.whole {
			return
		}
		child := node.members[name]
		if child == nil {
			if node.members == nil {
				node.members = map[string]*inputUse{}
			}
			child = &inputUse{}
			node.members[name] = child
		}
		node = child
	}
	node.whole, node.members = true, nil
}

// staticPrefix returns the member names that a reference into input
// starts with: a.b for input.a.b[k].c.
func staticPrefix(ref ast.Ref) []string {
	path := make([]string, 0, len(ref)-1)
	for _, t := range ref[1:] {
		name, ok := t.Value.(ast.String)
		if !ok {
			break
		}
		path = append(path, string(name))
	}
	return path
}

// staticPath returns the member names of a reference into input made of
// names only (input.tool.arguments), and whether it is one.
func staticPath(term *ast.Term) ([]string, bool) {
	ref, ok := term.Value.(ast.Ref)
	if !ok || !ref.HasPrefix(ast.InputRootRef) {
		return nil, false
	}
	path := staticPrefix(ref)
	return path, len(path) == len(ref)-1
}

// objectGetPath returns the path that object.get(operands...) reads when
// its object is a static reference into input and its key a constant:
// object.get(input.a, "b", d) reads input.a.b, not all of input.a.
func objectGetPath(operator *ast.Term, operands []*ast.Term) ([]string, bool) {
	if !operator.Equal(objectGetRef) || len(operands) < 3 {
		return nil, false
	}
	path, ok := staticPath(operands[0])
	if !ok {
		return nil, false
	}
	key, ok := objectGetKey(operands[1])
	if !ok {
		return nil, false
	}
	return append(path, key...), true
}

// objectGetKey returns the member names an object.get key names, when it
// is a constant string or a constant non-empty array of strings.
func objectGetKey(term *ast.Term) ([]string, bool) {
	switch key := term.Value.(type) {
	case ast.String:
		return []string{string(key)}, true
	case *ast.Array:
		if key.Len() == 0 {
			return nil, false
		}
		names := make([]string, 0, key.Len())
		for i := range key.Len() {
			name, ok := key.Elem(i).Value.(ast.String)
			if !ok {
				return nil, false
			}
			names = append(names, string(name))
		}
		return names, true
	}
	return nil, false
}

// walkPolicy walks every module and query of a policy.
func walkPolicy(visitor *ast.GenericVisitor, modules map[string]*ast.Module, queries []ast.Body) {
	for _, module := range modules {
		visitor.Walk(module)
	}
	for _, query := range queries {
		visitor.Walk(query)
	}
}

// objectGetRef is the operator of object.get.
var objectGetRef = ast.RefTerm(ast.VarTerm("object"), ast.StringTerm("get"))

// inputUseOf returns what the compiled modules and the queries read of
// input.
func inputUseOf(modules map[string]*ast.Module, queries ...ast.Body) *inputUse {
	use := &inputUse{}
	// skip holds the compiler's bindings of temporaries whose reads
	// narrowObjectGets has already accounted for.
	skip := map[*ast.Expr]bool{}
	narrow := !mocksObjectGet(modules)
	if narrow {
		for _, module := range modules {
			for _, rule := range module.Rules {
				narrowObjectGets(rule, use, skip)
			}
		}
	}
	var visitor *ast.GenericVisitor
	visitor = ast.NewGenericVisitor(func(x any) bool {
		switch x := x.(type) {
		case *ast.Expr:
			if skip[x] {
				return true
			}
			if !narrow || !x.IsCall() {
				return false
			}
			if path, ok := objectGetPath(x.OperatorTerm(), x.Operands()); ok {
				use.add(path)
				walkAfterObject(visitor, x)
				return true
			}
		case *ast.Head:
			// The visitor walks a head's name, key and value, not the
			// whole reference of a ref head (a.b[k].c := ...).
			for _, term := range x.Reference {
				visitor.Walk(term)
			}
		case ast.Ref:
			if !x.HasPrefix(ast.InputRootRef) {
				return false
			}
			// input.a.b[k].c reads a.b whole. The terms after the head
			// can hold references of their own (input.a[input.b]).
			use.add(staticPrefix(x))
			for _, term := range x[1:] {
				visitor.Walk(term)
			}
			return true
		case ast.Var:
			// input on its own (as an argument, say), if the compiler
			// ever leaves it as a variable rather than a reference.
			if x.Equal(ast.InputRootDocument.Value) {
				use.add(nil)
			}
		}
		return false
	})
	walkPolicy(visitor, modules, queries)
	return use
}

// walkAfterObject walks what an object.get call holds besides its object
// (key, default, output, with modifiers), for references of their own.
func walkAfterObject(visitor *ast.GenericVisitor, call *ast.Expr) {
	for _, term := range call.Operands()[1:] {
		visitor.Walk(term)
	}
	for _, with := range call.With {
		visitor.Walk(with)
	}
}

// mocksObjectGet reports whether a module replaces object.get (with
// object.get as f): the replacement may read the whole object, so no call
// of object.get can be trusted to read only its key.
func mocksObjectGet(modules map[string]*ast.Module) bool {
	mocked := false
	for _, module := range modules {
		ast.WalkWiths(module, func(w *ast.With) bool {
			mocked = mocked || w.Target.Equal(objectGetRef)
			return mocked
		})
	}
	return mocked
}

// narrowObjectGets finds, in a rule (with its else branches), the
// compiler's temporaries that hold a static reference into input and are
// read only through object.get with constant keys. The compiler turns
// object.get(input.a, "b", d) into __local1__ = input.a; object.get(
// __local1__, "b", d, out): without this, the binding would read all of
// input.a. For each such temporary the paths of its keys are added to use,
// and its binding to skip. A temporary read any other way, or not at all
// (its binding still needs input.a to exist), is left to the visitor.
func narrowObjectGets(rule *ast.Rule, use *inputUse, skip map[*ast.Expr]bool) {
	type temporary struct {
		path    []string
		binding *ast.Expr
		keys    [][]string
		escapes bool
	}
	temporaries := map[ast.Var]*temporary{}
	bindings := map[*ast.Expr]bool{}
	ast.WalkExprs(rule, func(e *ast.Expr) bool {
		if !e.IsEquality() || len(e.With) > 0 {
			return false
		}
		for _, pair := range [][2]*ast.Term{{e.Operand(0), e.Operand(1)}, {e.Operand(1), e.Operand(0)}} {
			name, isVar := pair[0].Value.(ast.Var)
			if !isVar || !name.IsGenerated() {
				continue
			}
			if path, ok := staticPath(pair[1]); ok {
				temporaries[name] = &temporary{path: path, binding: e}
				bindings[e] = true
			}
		}
		return false
	})
	if len(temporaries) == 0 {
		return
	}
	var visitor *ast.GenericVisitor
	visitor = ast.NewGenericVisitor(func(x any) bool {
		switch x := x.(type) {
		case *ast.Expr:
			if bindings[x] {
				return true
			}
			operands := x.Operands()
			if !x.IsCall() || !x.OperatorTerm().Equal(objectGetRef) || len(operands) < 3 {
				return false
			}
			name, isVar := operands[0].Value.(ast.Var)
			t := temporaries[name]
			if !isVar || t == nil {
				return false
			}
			key, ok := objectGetKey(operands[1])
			if !ok {
				return false
			}
			t.keys = append(t.keys, append(slices.Clone(t.path), key...))
			walkAfterObject(visitor, x)
			return true
		case ast.Var:
			if t := temporaries[x]; t != nil {
				t.escapes = true
			}
		}
		return false
	})
	visitor.Walk(rule)
	for _, t := range temporaries {
		if t.escapes || len(t.keys) == 0 {
			continue
		}
		skip[t.binding] = true
		for _, key := range t.keys {
			use.add(key)
		}
	}
}
