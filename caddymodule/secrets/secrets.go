// Package secrets finds well-known credentials (cloud and service access
// keys, tokens, private keys) in the values a tool call carries, so that
// the gateway can block or hold a call that would hand one to a server:
// an assistant pasting a token into an issue, a key into a message. It
// matches formats that announce themselves (a fixed prefix, a fixed
// length, a checksum-bearing shape), not strings that merely look random,
// so that ordinary arguments are not taken for secrets. It is a guard
// against accidents: a credential encoded (base64, split, escaped inside
// a string of JSON) passes it.
//
// The rules are written here, after the public rule sets of gitleaks
// (MIT) and Trivy (Apache-2.0), which Docker's MCP gateway copies for its
// --block-secrets: those libraries bring configuration frameworks,
// archive readers and container registries with them, which a gateway
// has no use for, to scan a few strings.
package secrets

import (
	"cmp"
	"encoding/json"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Finding is one credential found: its kind ("GitHub token") and where
// (a JSON path below the value scanned: "body", "files[2].content",
// "a name of headers" for one found in a member's name).
type Finding struct {
	Kind string `json:"kind"`
	Path string `json:"path"`
}

// rule finds one kind of credential: where a string holds one of
// keywords (the cheap test, made first), the text from just before it to
// window bytes after it is matched against pattern, and a match counts
// unless it looks like a placeholder: a run of few characters
// ("ghp_xxxx…"), less varied than any issued credential, or, for AWS
// keys, the documentation's example ("…EXAMPLE").
type rule struct {
	kind     string
	keywords []string
	pattern  *regexp.Regexp
	// window is the longest a credential may be, with room to spare:
	// a match is looked for from a keyword to twice that far.
	window int
	// exampleSuffix, when set, marks a match ending with it as the
	// issuer's documented example.
	exampleSuffix string
	// lead is how far before its keyword a match may start (where the
	// keyword is not the credential's first characters); 16 when zero.
	lead int
	// block makes a match count only when the block it opens follows
	// (a private key's: 64 characters or more, then its END line); the
	// block, not the opening line, needs no variety.
	block bool
}

// rules are the credentials Find knows, each a format its issuer
// documents (prefixes and lengths as the issuers give them).
var rules = []rule{
	{kind: "AWS access key ID", keywords: []string{"AKIA", "ASIA", "ABIA", "ACCA", "A3T"}, pattern: regexp.MustCompile(`\b(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}\b`), window: 64, exampleSuffix: "EXAMPLE"},
	{kind: "GitHub token", keywords: []string{"ghp_", "gho_", "ghu_", "ghs_", "ghr_"}, pattern: regexp.MustCompile(`\bgh[pousr]_[A-Za-z0-9]{36,251}\b`), window: 300},
	{kind: "GitHub fine-grained token", keywords: []string{"github_pat_"}, pattern: regexp.MustCompile(`\bgithub_pat_[A-Za-z0-9_]{82}\b`), window: 128},
	{kind: "GitLab token", keywords: []string{"glpat-", "gldt-", "glrt-", "glptt-"}, pattern: regexp.MustCompile(`\bgl(?:pat|dt|rt|ptt)-[A-Za-z0-9_-]{20,}`), window: 128},
	{kind: "Slack token", keywords: []string{"xox"}, pattern: regexp.MustCompile(`\bxox[abposr]-(?:[0-9]+-)+[0-9A-Za-z-]{6,}`), window: 256},
	{kind: "Slack webhook URL", keywords: []string{"hooks.slack.com"}, pattern: regexp.MustCompile(`https://hooks\.slack\.com/(?:services|workflows)/[A-Za-z0-9+/]{20,}`), window: 256},
	{kind: "Stripe secret key", keywords: []string{"_live_"}, pattern: regexp.MustCompile(`\b[sr]k_live_[0-9A-Za-z]{20,}\b`), window: 300},
	{kind: "Google API key", keywords: []string{"AIza"}, pattern: regexp.MustCompile(`\bAIza[0-9A-Za-z_-]{35}\b`), window: 64},
	{kind: "Google OAuth client secret", keywords: []string{"GOCSPX-"}, pattern: regexp.MustCompile(`\bGOCSPX-[0-9A-Za-z_-]{28}\b`), window: 64},
	// The whole block, as gitleaks and Trivy match it: a BEGIN line
	// alone is a key's name in prose or code, not a key.
	{kind: "private key", keywords: []string{"PRIVATE KEY"}, pattern: regexp.MustCompile(`-----BEGIN[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----`), window: 128, lead: 120, block: true},
	{kind: "OpenAI API key", keywords: []string{"T3BlbkFJ"}, pattern: regexp.MustCompile(`\bsk-(?:[a-z]+-)?[A-Za-z0-9_-]{20,}T3BlbkFJ[A-Za-z0-9_-]{20,}`), window: 300, lead: 160},
	{kind: "Anthropic API key", keywords: []string{"sk-ant-"}, pattern: regexp.MustCompile(`\bsk-ant-(?:api|admin)[0-9]{2}-[A-Za-z0-9_-]{80,}`), window: 300},
	{kind: "npm token", keywords: []string{"npm_"}, pattern: regexp.MustCompile(`\bnpm_[A-Za-z0-9]{36}\b`), window: 64},
	{kind: "PyPI token", keywords: []string{"pypi-AgEIcHlwaS5vcmc"}, pattern: regexp.MustCompile(`\bpypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,}`), window: 512},
	{kind: "Docker Hub token", keywords: []string{"dckr_pat_"}, pattern: regexp.MustCompile(`\bdckr_pat_[A-Za-z0-9_-]{27,}`), window: 128},
	{kind: "SendGrid API key", keywords: []string{"SG."}, pattern: regexp.MustCompile(`\bSG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}\b`), window: 96},
	{kind: "HashiCorp Vault token", keywords: []string{"hvs.", "hvb."}, pattern: regexp.MustCompile(`\bhv[sb]\.[A-Za-z0-9_-]{24,}`), window: 512},
	{kind: "Hugging Face token", keywords: []string{"hf_"}, pattern: regexp.MustCompile(`\bhf_[A-Za-z]{34}\b`), window: 64},
	{kind: "Shopify token", keywords: []string{"shpat_", "shpca_", "shppa_", "shpss_"}, pattern: regexp.MustCompile(`\bshp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}\b`), window: 64},
	{kind: "Azure storage account key", keywords: []string{"AccountKey="}, pattern: regexp.MustCompile(`AccountKey=[A-Za-z0-9+/]{86}==`), window: 128},
	{kind: "Databricks token", keywords: []string{"dapi"}, pattern: regexp.MustCompile(`\bdapi[a-f0-9]{32}(?:-[0-9]+)?\b`), window: 64},
	{kind: "Atlassian API token", keywords: []string{"ATATT3"}, pattern: regexp.MustCompile(`\bATATT3[A-Za-z0-9_=-]{180,}`), window: 512},
	{kind: "Linear API key", keywords: []string{"lin_api_"}, pattern: regexp.MustCompile(`\blin_api_[A-Za-z0-9]{40}\b`), window: 64},
	{kind: "Square access token", keywords: []string{"sq0atp-", "sq0csp-"}, pattern: regexp.MustCompile(`\b(?:sq0atp-[0-9A-Za-z_-]{22}|sq0csp-[0-9A-Za-z_-]{43})\b`), window: 64},
	{kind: "JSON Web Token", keywords: []string{"eyJ"}, pattern: regexp.MustCompile(`\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{16,}`), window: 64 << 10},
}

// TooMuchToRead is the kind of the finding Find gives, in place of any
// other, when a value holds more text around the rules' keywords than it
// reads (MaxMatched, and twice the length of its strings): what it
// could not read may hold a credential, so a guard treats it as one.
const TooMuchToRead = "more credential-like text than the gateway reads"

// MaxMatched, with twice the length of a value's strings, bounds the
// text Find matches against the rules' patterns in one value (and looks
// through for a private key's END line), so that a value dense with
// keywords of many rules (a body of "ghp_ AKIA eyJ …") costs the gateway
// a time linear in its size; past it, Find gives TooMuchToRead.
const MaxMatched = 1 << 20

// Find returns the credentials found in value, a JSON value as
// encoding/json decodes it (objects as map[string]any, arrays as []any),
// in its strings and its members' names, at any depth: one finding per
// kind and place, ordered by place, then kind. Its cost is linear in the
// value's size, and the text it matches is bounded (MaxMatched).
func Find(value any) []Finding {
	f := finder{budget: MaxMatched}
	f.walk(value)
	if f.overflow {
		return []Finding{{Kind: TooMuchToRead, Path: "the value itself"}}
	}
	slices.SortFunc(f.findings, func(a, b Finding) int {
		return cmp.Or(cmp.Compare(a.Path, b.Path), cmp.Compare(a.Kind, b.Kind))
	})
	return slices.Compact(f.findings)
}

// FindJSON is Find over text, a JSON value, decoded as encoding/json
// decodes it; an error when text is no JSON.
func FindJSON(text []byte) ([]Finding, error) {
	var value any
	if err := json.Unmarshal(text, &value); err != nil {
		return nil, err
	}
	return Find(value), nil
}

// finder is one Find: where it is in the value (a stack of members and
// indexes, joined into a path only for a finding), what it found, and how
// much text it may still match.
type finder struct {
	path     []pathStep
	findings []Finding
	budget   int
	overflow bool
}

// pathStep is a member's name, or an array's index when name is unset.
type pathStep struct {
	name    string
	index   int
	isIndex bool
}

// walk looks for credentials in v and below it.
func (f *finder) walk(v any) {
	if f.overflow {
		return
	}
	switch v := v.(type) {
	case string:
		f.check(v, false)
	case map[string]any:
		for name, member := range v {
			f.check(name, true)
			f.path = append(f.path, pathStep{name: name})
			f.walk(member)
			f.path = f.path[:len(f.path)-1]
		}
	case []any:
		for i, item := range v {
			f.path = append(f.path, pathStep{index: i, isIndex: true})
			f.walk(item)
			f.path = f.path[:len(f.path)-1]
		}
	}
}

// check records the kinds of credential s holds: s itself, or a member
// name of the object at the current path when isName.
func (f *finder) check(s string, isName bool) {
	// Each string adds twice its length to what may be matched:
	// ordinary text, where keywords are rare, is read whole whatever its
	// size; a string dense with keywords of many rules runs out.
	f.budget += 2 * len(s)
	var candidates uint64
	for i := 0; i < len(s); i++ {
		for _, k := range keywordsByFirstByte[s[i]] {
			if candidates&(1<<k.rule) == 0 && strings.HasPrefix(s[i:], k.keyword) {
				candidates |= 1 << k.rule
			}
		}
	}
	for i := range rules {
		if candidates&(1<<i) == 0 {
			continue
		}
		found, ok := f.matches(&rules[i], s)
		if !ok {
			f.overflow = true
			return
		}
		if found {
			f.findings = append(f.findings, Finding{Kind: rules[i].kind, Path: f.describePath(isName)})
		}
	}
}

// matches reports whether s holds a credential of r, matching r's pattern
// only around each of its keywords; ok is false when that would take the
// finder past its budget.
func (f *finder) matches(r *rule, s string) (found, ok bool) {
	// Matched from a little before a keyword, so that the pattern's
	// leading \b sees the character before it.
	lead := cmp.Or(r.lead, 16)
	next := keywordIndexes{keywords: r.keywords}
	// charged is where the text this rule was charged for ends: windows
	// overlap (by up to half), and a byte is charged to a rule once, so
	// that text read by one rule with long windows (a log with a JWT-like
	// payload every few KiB) costs its length, not twice it, and leaves
	// the budget to the other rules. (The matching reads an overlapped
	// byte at most twice: the cost stays linear in what is charged.)
	charged := 0
	var ends endIndex
	for from := 0; from < len(s); {
		at := next.from(s, from)
		if at < 0 {
			return false, true
		}
		// Twice the longest credential: one that starts before the
		// window's middle ends inside it; the next window starts there.
		start, end := max(at-lead, 0), min(at+2*r.window, len(s))
		if f.budget -= end - max(start, charged); f.budget < 0 {
			return false, false
		}
		charged = end
		for _, m := range r.pattern.FindAllStringIndex(s[start:end], -1) {
			if !r.counts(s[start+m[0] : start+m[1]]) {
				continue
			}
			if !r.block {
				return true, true
			}
			follows, ok := f.blockFollows(s, start+m[1], &ends)
			if !ok || follows {
				return follows, ok
			}
		}
		if end == len(s) {
			return false, true
		}
		from = at + r.window
	}
	return false, true
}

// counts reports whether a match of r is a credential rather than a
// placeholder: varied enough, and not the issuer's documented example.
func (r *rule) counts(match string) bool {
	if r.exampleSuffix != "" && strings.HasSuffix(match, r.exampleSuffix) {
		return false
	}
	return r.block || !isPlaceholder(match)
}

// isPlaceholder reports whether a match ends in a run of few characters,
// as placeholders do ("ghp_xxxx…", "npm_0000…"): its last 16 characters
// hold at most 4 different ones, which 16 random characters of any
// credential's alphabet hold once in billions of draws.
func isPlaceholder(match string) bool {
	tail := match[max(len(match)-16, 0):]
	var seen [256]bool
	distinct := 0
	for i := 0; i < len(tail); i++ {
		if !seen[tail[i]] {
			seen[tail[i]] = true
			distinct++
		}
	}
	return distinct <= 4
}

// blockFollows reports whether what follows a private key's BEGIN line,
// s from at on, is its block: 64 characters or more, then, within 32 KiB
// (a 16384-bit RSA key's), an END line of a private key. Written out
// rather than in the pattern, which would make its automaton hundreds of
// states wide. The END is found through ends, which looks through each
// byte of s once, however many BEGIN lines precede one END (a search
// result quoting BEGIN lines by the hundred) and however the rule's
// windows overlap, and charges what it looks through to the budget; ok
// is false past the budget.
func (f *finder) blockFollows(s string, at int, ends *endIndex) (follows, ok bool) {
	end, ok := ends.first(f, s, at)
	if !ok {
		return false, false
	}
	if end < 0 || end-at < 64 {
		return false, true
	}
	line := s[end+len(endMarker):]
	line = line[:min(len(line), 120)]
	return strings.Contains(line, "PRIVATE KEY"), true
}

// endMarker opens a private key's END line; endWindow is how far after a
// BEGIN line its END may start.
const (
	endMarker = "-----END"
	endWindow = 32<<10 - len(endMarker)
)

// endIndex holds where the endMarkers of one string stand within the
// stretch of it looked through so far, [from, to).
type endIndex struct {
	from, to int
	ends     []int
}

// first returns the index of the first endMarker of s that starts in
// [at, at+endWindow], or -1, looking through only what no earlier call
// looked through (a stretch before from, or after to; one that lies
// apart from the last starts the index anew), and charging f's budget
// what it looks through; ok is false past the budget.
func (e *endIndex) first(f *finder, s string, at int) (end int, ok bool) {
	limit := min(len(s), at+endWindow+1)
	if at > e.to || len(e.ends) == 0 && e.from == e.to {
		e.from, e.to, e.ends = at, at, e.ends[:0]
	}
	if at < e.from {
		found, ok := f.findEnds(s, at, e.from)
		if !ok {
			return 0, false
		}
		e.ends, e.from = append(found, e.ends...), at
	}
	if limit > e.to {
		found, ok := f.findEnds(s, e.to, limit)
		if !ok {
			return 0, false
		}
		e.ends, e.to = append(e.ends, found...), limit
	}
	i, _ := slices.BinarySearch(e.ends, at)
	if i == len(e.ends) || e.ends[i] >= limit {
		return -1, true
	}
	return e.ends[i], true
}

// findEnds returns where the endMarkers that start in s[from:to] stand,
// charging f's budget what it reads; ok is false past the budget.
func (f *finder) findEnds(s string, from, to int) (ends []int, ok bool) {
	// Read on past to by a marker's length, for one that starts before.
	stretch := s[from:min(len(s), to+len(endMarker)-1)]
	if f.budget -= len(stretch); f.budget < 0 {
		return nil, false
	}
	for i := 0; ; {
		j := strings.Index(stretch[i:], endMarker)
		if j < 0 || from+i+j >= to {
			return ends, true
		}
		ends = append(ends, from+i+j)
		i += j + 1
	}
}

// keywordIndexes finds a rule's keywords in a string from one place on,
// then from further on: each keyword's next place is remembered, so that
// a keyword is looked for once along the string, however many windows
// the others open (looking again from each window for one the rest of the
// string lacks read the string once a window).
type keywordIndexes struct {
	keywords []string
	// next is each keyword's next index, -1 when it has no more, and
	// unknown until known.
	next  [8]int
	known [8]bool
}

// from returns the index of the first of the keywords in s at or after
// from, or -1.
func (k *keywordIndexes) from(s string, from int) int {
	first := -1
	for i, keyword := range k.keywords {
		if !k.known[i] || k.next[i] >= 0 && k.next[i] < from {
			k.known[i], k.next[i] = true, -1
			if at := strings.Index(s[from:], keyword); at >= 0 {
				k.next[i] = from + at
			}
		}
		if at := k.next[i]; at >= 0 && (first < 0 || at < first) {
			first = at
		}
	}
	return first
}

// describePath writes the current path: "files[1].content", or for a
// member name, "a name of files[1]".
func (f *finder) describePath(isName bool) string {
	var b strings.Builder
	for i, step := range f.path {
		switch {
		case step.isIndex:
			b.WriteString("[" + strconv.Itoa(step.index) + "]")
		case i > 0:
			b.WriteString("." + step.name)
		default:
			b.WriteString(step.name)
		}
	}
	path := b.String()
	if path == "" {
		path = "the value itself"
	}
	if isName {
		return "a name of " + path
	}
	return path
}

// keyword is one of the keywords of rules[rule].
type keyword struct {
	keyword string
	rule    int
}

// keywordsByFirstByte holds the rules' keywords by their first byte, so
// that one pass over a string finds which rules to match it against.
var keywordsByFirstByte = func() (index [256][]keyword) {
	if len(rules) > 64 {
		panic("secrets: more rules than check's candidate bits")
	}
	for i, r := range rules {
		if len(r.keywords) > len(keywordIndexes{}.next) {
			panic("secrets: a rule with more keywords than keywordIndexes holds")
		}
		for _, k := range r.keywords {
			index[k[0]] = append(index[k[0]], keyword{k, i})
		}
	}
	return index
}()
