package catalog

// Category is how much a tool may change, as its MCP annotations describe it.
// Policies see it as input.tool.category.
type Category string

// The categories, from least to most cautious.
const (
	// ReadOnly is a tool whose readOnlyHint is true.
	ReadOnly Category = "read_only"
	// Write is a tool whose readOnlyHint is false and whose destructiveHint
	// is explicitly false.
	Write Category = "write"
	// Destructive is every other tool, including one without annotations.
	Destructive Category = "destructive"
)

// CategoryOf returns the category of a tool with the given annotations.
//
// A hint that is absent or not a JSON boolean takes its MCP default
// (specification, server/tools, "Tool Annotations"): readOnlyHint false and
// destructiveHint true. So a tool is Write only when its destructiveHint is
// explicitly false, and nil annotations make a tool Destructive.
func CategoryOf(annotations map[string]any) Category {
	if hint(annotations, "readOnlyHint", false) {
		return ReadOnly
	}
	if !hint(annotations, "destructiveHint", true) {
		return Write
	}
	return Destructive
}

// hint returns the boolean annotation key, or def when it is absent or not a
// boolean.
func hint(annotations map[string]any, key string, def bool) bool {
	if b, ok := annotations[key].(bool); ok {
		return b
	}
	return def
}

// moreCautious reports whether a calls for more caution than b.
func (a Category) moreCautious(b Category) bool {
	return a.rank() > b.rank()
}

// rank orders the categories from least to most cautious; an unknown
// category ranks as Destructive.
func (a Category) rank() int {
	switch a {
	case ReadOnly:
		return 0
	case Write:
		return 1
	default:
		return 2
	}
}
