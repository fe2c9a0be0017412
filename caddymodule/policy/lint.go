package policy

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"

	"github.com/agnivade/levenshtein"
	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/mcpgate/mcpgate/policies"
)

// A policy can load, compile and decide, and still not say what its
// author meant: an organization's rule written in another package, or
// misspelt (`blocks`, `deny`), is a rule no decision reads, and a rule
// reading `input.tool.args` reads a member the gateway never sets; either
// leaves calls allowed that the author meant to refuse, without a word.
// Both may also be meant (a helper kept for later, a member read in case a
// future gateway sets it), so they are warnings, logged at every load,
// not errors. OPA's compiler and `opa check` say neither: an undefined
// reference is, to Rego, just false.

// maxListedInWarning bounds how many rules or members one warning names.
const maxListedInWarning = 10

// lint returns what the compiled policy does that its author evidently did
// not mean: its own rules (not those the gateway gives it) that neither
// query reads, approvers it names that are no principal, documents of
// data it reads that nothing defines beside one of a name close to
// theirs, and members of input it reads that the gateway never sets.
func (b *policyBuilder) lint(compiler *ast.Compiler, data map[string]any, use *inputUse) []string {
	var warnings []string
	if w := b.unreadRules(compiler); w != "" {
		warnings = append(warnings, w)
	}
	if invalid := b.invalidApprovers(compiler); len(invalid) > 0 {
		warnings = append(warnings, fmt.Sprintf("the policy names approvers %s, which are not principals (caller, inbox, inbox:<user>, group:<name>, webhook, admin or admin:<name>): a call it holds for their approval is refused", listed(invalid)))
	}
	if misspelt := b.misspeltReads(compiler, data); len(misspelt) > 0 {
		warnings = append(warnings, fmt.Sprintf("the policy reads %s, which neither a rule nor the data defines: such a reference is always undefined", listed(misspelt)))
	}
	if unknown := unknownInputMembers(use, reflect.TypeFor[Input](), "input"); len(unknown) > 0 {
		warnings = append(warnings, fmt.Sprintf("the policy reads %s, which the gateway never sets: such a reference is always undefined (see the input document in docs/policy.md)", listed(unknown)))
	}
	return warnings
}

// queryRules returns the rules the builder's queries name.
func (b *policyBuilder) queryRules(compiler *ast.Compiler) []*ast.Rule {
	var rules []*ast.Rule
	for _, body := range b.queryBodies {
		ast.WalkRefs(body, func(ref ast.Ref) bool {
			rules = append(rules, compiler.GetRulesDynamicWithOpts(ref, ast.RulesOptions{IncludeHiddenModules: true})...)
			return false
		})
	}
	return rules
}

// walkDependencies calls visit with each rule from rules and every rule
// they depend on (OPA's dependency graph, which counts a reference with a
// variable, data.mcp[x], as reading every rule it may select), each once,
// until visit returns true.
func walkDependencies(compiler *ast.Compiler, rules []*ast.Rule, visit func(*ast.Rule) (stop bool)) {
	seen := map[*ast.Rule]bool{}
	for queue := slices.Clone(rules); len(queue) > 0; {
		rule := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		if seen[rule] {
			continue
		}
		seen[rule] = true
		if visit(rule) {
			return
		}
		if rule.Else != nil {
			queue = append(queue, rule.Else)
		}
		for dependency := range compiler.Graph.Dependencies(rule) {
			if r, ok := dependency.(*ast.Rule); ok {
				queue = append(queue, r)
			}
		}
	}
}

// rulesRead returns the rules of roots and every rule they depend on.
func rulesRead(compiler *ast.Compiler, roots []*ast.Rule) map[*ast.Rule]bool {
	read := map[*ast.Rule]bool{}
	walkDependencies(compiler, roots, func(rule *ast.Rule) bool {
		read[rule] = true
		return false
	})
	return read
}

// unreadRules says which of the policy's own rules neither query reads,
// directly or through other rules; "" when every one is read.
func (b *policyBuilder) unreadRules(compiler *ast.Compiler) string {
	read := rulesRead(compiler, b.queryRules(compiler))
	var unread []string
	seen := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(compiler.Modules)) {
		if b.notTheAuthors(name, compiler.Modules[name]) {
			continue
		}
		ast.WalkRules(compiler.Modules[name], func(rule *ast.Rule) bool {
			path := rule.Ref().GroundPrefix().String()
			// A function no rule calls is a helper kept for policies
			// to come (the library's argument(name)): only a rule that
			// makes a document may have been meant to decide.
			if read[rule] || seen[path] || isTestRule(rule) || len(rule.Head.Args) > 0 || libraryHelpers()[path] {
				return false
			}
			seen[path] = true
			at := ""
			if rule.Location != nil {
				at = fmt.Sprintf(" (%s:%d)", rule.Location.File, rule.Location.Row)
			}
			unread = append(unread, path+at)
			return false
		})
	}
	if len(unread) == 0 {
		return ""
	}
	return fmt.Sprintf("the policy's rules %s are read by neither %s nor %s, so they decide nothing: an organization's rule must be one the decision reads (with the shipped library, block, needs_approval or approvers in package mcp; see docs/policy.md)",
		listed(unread), b.decisionQuery, b.permissionQuery)
}

// libraryHelpers are the documents the shipped library defines for the
// organization's rules to read (data.mcp.resource_uris) that neither of
// its queries reads, computed once from the library alone. A rule at one
// of those paths is the library's helper wherever it was loaded from (a
// copy of the library among the policy's files), not a rule meant to
// decide; a rule at any other path the library defines is one its
// decision reads, and is warned of like any other when nothing reads it.
var libraryHelpers = sync.OnceValue(func() map[string]bool {
	modules := map[string]*ast.Module{}
	for name, source := range policies.Library() {
		module, err := ast.ParseModule(name, source)
		if err != nil {
			// The library's own tests parse and compile every file of it.
			panic(fmt.Sprintf("the shipped library's %s does not parse: %v", name, err))
		}
		modules[name] = module
	}
	compiler := ast.NewCompiler()
	if compiler.Compile(modules); compiler.Failed() {
		panic(fmt.Sprintf("the shipped library does not compile: %v", compiler.Errors))
	}
	var queried []*ast.Rule
	for _, query := range []string{DefaultDecisionQuery, DefaultPermissionQuery} {
		queried = append(queried, compiler.GetRulesDynamicWithOpts(ast.MustParseRef(query), ast.RulesOptions{IncludeHiddenModules: true})...)
	}
	read := rulesRead(compiler, queried)
	helpers := map[string]bool{}
	for _, module := range compiler.Modules {
		ast.WalkRules(module, func(rule *ast.Rule) bool {
			if !read[rule] && len(rule.Head.Args) == 0 {
				helpers[rule.Ref().GroundPrefix().String()] = true
			}
			return false
		})
	}
	return helpers
})

// notTheAuthors reports whether a module is left out of the warnings:
// the gateway's own (the library), and `opa test`'s (a package named
// *_test), which a bundle built with `opa build` carries (files named
// *_test.rego are left out as they are read; in a bundle such a file is
// in force, and warned of, unless its package is a test's).
func (b *policyBuilder) notTheAuthors(name string, module *ast.Module) bool {
	if _, given := b.modules[name]; given {
		return true
	}
	path := module.Package.Path
	last, _ := path[len(path)-1].Value.(ast.String)
	return strings.HasSuffix(string(last), "_test")
}

// misspeltReads returns the references to data in the policy's own
// modules that reach a document nothing defines (no rule, no data) where
// a document beside it has a name close to its (data.mcp.permission where
// data.mcp.permissions is defined), each with that name. A reference to
// a document nothing defines is not enough: the shipped library reads
// the organization's rules, which a policy may leave undefined, and
// policies read optional data alike; a near miss is most likely a typo.
func (b *policyBuilder) misspeltReads(compiler *ast.Compiler, data map[string]any) []string {
	found := map[string]bool{}
	for name, module := range compiler.Modules {
		if b.notTheAuthors(name, module) {
			continue
		}
		ast.WalkRefs(module, func(ref ast.Ref) bool {
			if miss := misspeltRead(compiler.RuleTree.Child(ast.DefaultRootDocument.Value), data, ref); miss != "" {
				found[miss] = true
			}
			return false
		})
	}
	return slices.Sorted(maps.Keys(found))
}

// misspeltRead follows ref (data.a.b...) down the rules (node, the rule
// tree at data) and the data (doc) while they define it; at the first
// member neither defines, it returns the reference to there and the
// sibling of a close name, if one is defined; else "".
func misspeltRead(node *ast.TreeNode, doc any, ref ast.Ref) string {
	if node == nil || !ref.HasPrefix(ast.DefaultRootRef) {
		return ""
	}
	ground := ref.GroundPrefix()
	for i := 1; i < len(ground); i++ {
		key, ok := ground[i].Value.(ast.String)
		if !ok || len(node.Values) > 0 {
			return "" // a number's key, or a rule makes the document whole
		}
		object, isObject := doc.(map[string]any)
		if doc != nil && !isObject {
			return "" // data that is no object: not followed
		}
		child := node.Child(key)
		value, inData := object[string(key)]
		if child != nil || inData {
			if child == nil {
				child = &ast.TreeNode{}
			}
			node, doc = child, value
			continue
		}
		siblings := slices.Collect(maps.Keys(object))
		for k := range node.Children {
			if name, ok := k.(ast.String); ok {
				siblings = append(siblings, string(name))
			}
		}
		slices.Sort(siblings)
		for _, sibling := range siblings {
			if nearName(string(key), sibling) {
				return fmt.Sprintf("%s (did you mean %s?)", ground[:i+1], append(ground[:i:i], ast.StringTerm(sibling)))
			}
		}
		return ""
	}
	return ""
}

// nearName reports whether two different names are close enough that one
// is likely the other mistyped: alike but for case, or within two edits
// (one for names of four letters or fewer).
func nearName(a, b string) bool {
	if a == b {
		return false
	}
	if strings.EqualFold(a, b) {
		return true
	}
	edits := 2
	if min(len(a), len(b)) <= 4 {
		edits = 1
	}
	return levenshtein.ComputeDistance(a, b) <= edits
}

// isTestRule reports whether rule is one of `opa test`'s, which a policy
// may keep beside its rules (files named *_test.rego are left out
// before this).
func isTestRule(rule *ast.Rule) bool {
	name := rule.Head.Ref()[0].Value.String()
	return strings.HasPrefix(name, "test_") || strings.HasPrefix(name, "todo_test_")
}

// unknownInputMembers returns the members use reads below the document of
// type t (at path) that the gateway never sets, as paths. The members
// the gateway sets are Input's JSON names; a map (params, arguments,
// claims, headers) holds whatever the message or the token carries, so
// nothing below one is unknown.
func unknownInputMembers(use *inputUse, t reflect.Type, path string) []string {
	if use == nil || use.whole {
		return nil
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() == reflect.Map {
		return nil
	}
	members := map[string]reflect.Type{}
	if t.Kind() == reflect.Struct {
		for i := range t.NumField() {
			field := t.Field(i)
			name, _, _ := strings.Cut(field.Tag.Get("json"), ",")
			if name != "" && name != "-" {
				members[name] = field.Type
			}
		}
	}
	var unknown []string
	for _, name := range slices.Sorted(maps.Keys(use.members)) {
		member := path + "." + name
		if t, ok := members[name]; ok {
			unknown = append(unknown, unknownInputMembers(use.members[name], t, member)...)
		} else {
			unknown = append(unknown, member)
		}
	}
	return unknown
}

// listed names items for a warning, the first maxListedInWarning of them.
func listed(items []string) string {
	if len(items) <= maxListedInWarning {
		return strings.Join(items, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(items[:maxListedInWarning], ", "), len(items)-maxListedInWarning)
}

// invalidApprovers returns the approvers the policy's own rules name as
// constants that Options.ValidApprover refuses, quoted, sorted, each
// once: the members of a partial set rule named approvers
// (`approvers contains "group:security"`, as the library reads them), and
// the members of an "approvers" array or set in an object (a decision of
// the policy's own). Approvers a rule computes are checked when a call
// is held, as every approver is.
func (b *policyBuilder) invalidApprovers(compiler *ast.Compiler) []string {
	if b.validApprover == nil {
		return nil
	}
	invalid := map[string]bool{}
	check := func(term *ast.Term) {
		if s, ok := term.Value.(ast.String); ok && !b.validApprover(string(s)) {
			invalid[term.String()] = true
		}
	}
	approversKey := ast.StringTerm("approvers")
	for name, module := range compiler.Modules {
		if b.notTheAuthors(name, module) {
			continue
		}
		ast.WalkRules(module, func(rule *ast.Rule) bool {
			ref := rule.Head.Ref()
			if rule.Head.RuleKind() == ast.MultiValue && ref[len(ref)-1].Equal(ast.VarTerm("approvers")) && rule.Head.Key != nil {
				check(rule.Head.Key)
			}
			return false
		})
		ast.WalkTerms(module, func(term *ast.Term) bool {
			object, ok := term.Value.(ast.Object)
			if !ok {
				return false
			}
			if approvers := object.Get(approversKey); approvers != nil {
				switch collection := approvers.Value.(type) {
				case *ast.Array:
					collection.Foreach(check)
				case ast.Set:
					collection.Foreach(check)
				}
			}
			return false
		})
	}
	return slices.Sorted(maps.Keys(invalid))
}
