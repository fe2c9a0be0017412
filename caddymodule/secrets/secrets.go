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

// rule finds one kind of credential: a string holding one of keywords
// (the cheap test, made first) is matched against pattern.
type rule struct {
	kind     string
	keywords []string
	pattern  *regexp.Regexp
}

// rules are the credentials Find knows, each a format its issuer
// documents (prefixes and lengths as the issuers give them).
var rules = []rule{
	{"AWS access key ID", []string{"AKIA", "ASIA", "ABIA", "ACCA", "A3T"}, regexp.MustCompile(`\b(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}\b`)},
	{"GitHub token", []string{"ghp_", "gho_", "ghu_", "ghs_", "ghr_"}, regexp.MustCompile(`\bgh[pousr]_[A-Za-z0-9]{36,251}\b`)},
	{"GitHub fine-grained token", []string{"github_pat_"}, regexp.MustCompile(`\bgithub_pat_[A-Za-z0-9_]{82}\b`)},
	{"GitLab token", []string{"glpat-", "gldt-", "glrt-", "glptt-"}, regexp.MustCompile(`\bgl(?:pat|dt|rt|ptt)-[A-Za-z0-9_-]{20,}`)},
	{"Slack token", []string{"xox"}, regexp.MustCompile(`\bxox[abposr]-(?:[0-9]+-)+[0-9A-Za-z-]{6,}`)},
	{"Slack webhook URL", []string{"hooks.slack.com"}, regexp.MustCompile(`https://hooks\.slack\.com/(?:services|workflows)/[A-Za-z0-9+/]{20,}`)},
	{"Stripe secret key", []string{"_live_"}, regexp.MustCompile(`\b[sr]k_live_[0-9A-Za-z]{20,}\b`)},
	{"Google API key", []string{"AIza"}, regexp.MustCompile(`\bAIza[0-9A-Za-z_-]{35}\b`)},
	{"Google OAuth client secret", []string{"GOCSPX-"}, regexp.MustCompile(`\bGOCSPX-[0-9A-Za-z_-]{28}\b`)},
	{"private key", []string{"PRIVATE KEY"}, regexp.MustCompile(`-----BEGIN[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----`)},
	{"OpenAI API key", []string{"T3BlbkFJ"}, regexp.MustCompile(`\bsk-(?:[a-z]+-)?[A-Za-z0-9_-]{20,}T3BlbkFJ[A-Za-z0-9_-]{20,}`)},
	{"Anthropic API key", []string{"sk-ant-"}, regexp.MustCompile(`\bsk-ant-(?:api|admin)[0-9]{2}-[A-Za-z0-9_-]{80,}`)},
	{"npm token", []string{"npm_"}, regexp.MustCompile(`\bnpm_[A-Za-z0-9]{36}\b`)},
	{"PyPI token", []string{"pypi-AgEIcHlwaS5vcmc"}, regexp.MustCompile(`\bpypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,}`)},
	{"Docker Hub token", []string{"dckr_pat_"}, regexp.MustCompile(`\bdckr_pat_[A-Za-z0-9_-]{27,}`)},
	{"SendGrid API key", []string{"SG."}, regexp.MustCompile(`\bSG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}\b`)},
	{"HashiCorp Vault token", []string{"hvs.", "hvb."}, regexp.MustCompile(`\bhv[sb]\.[A-Za-z0-9_-]{24,}`)},
	{"Hugging Face token", []string{"hf_"}, regexp.MustCompile(`\bhf_[A-Za-z]{34}\b`)},
	{"Shopify token", []string{"shpat_", "shpca_", "shppa_", "shpss_"}, regexp.MustCompile(`\bshp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}\b`)},
	{"Azure storage account key", []string{"AccountKey="}, regexp.MustCompile(`AccountKey=[A-Za-z0-9+/]{86}==`)},
	{"Databricks token", []string{"dapi"}, regexp.MustCompile(`\bdapi[a-f0-9]{32}(?:-[0-9]+)?\b`)},
	{"Atlassian API token", []string{"ATATT3"}, regexp.MustCompile(`\bATATT3[A-Za-z0-9_=-]{180,}`)},
	{"Linear API key", []string{"lin_api_"}, regexp.MustCompile(`\blin_api_[A-Za-z0-9]{40}\b`)},
	{"Square access token", []string{"sq0atp-", "sq0csp-"}, regexp.MustCompile(`\b(?:sq0atp-[0-9A-Za-z_-]{22}|sq0csp-[0-9A-Za-z_-]{43})\b`)},
	{"JSON Web Token", []string{"eyJ"}, regexp.MustCompile(`\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{16,}`)},
}

// Find returns the credentials found in value, a JSON value as
// encoding/json decodes it (objects as map[string]any, arrays as []any),
// in its strings and its members' names, at any depth: one finding per
// kind and place, ordered by place, then kind.
func Find(value any) []Finding {
	var findings []Finding
	var walk func(v any, path string)
	walk = func(v any, path string) {
		switch v := v.(type) {
		case string:
			findings = appendFound(findings, v, path)
		case map[string]any:
			for name, member := range v {
				findings = appendFound(findings, name, "a name of "+orTop(path))
				walk(member, memberPath(path, name))
			}
		case []any:
			for i, item := range v {
				walk(item, path+"["+strconv.Itoa(i)+"]")
			}
		}
	}
	walk(value, "")
	slices.SortFunc(findings, func(a, b Finding) int {
		return cmp.Or(cmp.Compare(a.Path, b.Path), cmp.Compare(a.Kind, b.Kind))
	})
	return slices.Compact(findings)
}

// appendFound appends to findings the kinds of credential s holds: the
// rules whose keywords s holds (found in one pass over s) are matched.
func appendFound(findings []Finding, s, path string) []Finding {
	var candidates uint64
	for i := 0; i < len(s); i++ {
		for _, k := range keywordsByFirstByte[s[i]] {
			if candidates&(1<<k.rule) == 0 && strings.HasPrefix(s[i:], k.keyword) {
				candidates |= 1 << k.rule
			}
		}
	}
	for i, r := range rules {
		if candidates&(1<<i) != 0 && r.pattern.MatchString(s) {
			findings = append(findings, Finding{Kind: r.kind, Path: orTop(path)})
		}
	}
	return findings
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
		panic("secrets: more rules than appendFound's candidate bits")
	}
	for i, r := range rules {
		for _, k := range r.keywords {
			index[k[0]] = append(index[k[0]], keyword{k, i})
		}
	}
	return index
}()

// memberPath is the path of member name below path.
func memberPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// orTop names the top of the value scanned when path is empty.
func orTop(path string) string {
	if path == "" {
		return "the value itself"
	}
	return path
}
