package secrets

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// Tokens are built from parts, so that no whole credential-shaped string
// stands in the source.
var (
	alnum36 = strings.Repeat("a1B2", 9)
	hex32   = strings.Repeat("0f9e", 8)
)

func TestFindEachKind(t *testing.T) {
	tests := []struct {
		kind, value string
	}{
		{"AWS access key ID", "key " + "AKIA" + "IOSFODNN7EXAMPLE" + " here"},
		{"AWS access key ID", "ASIA" + "Y34FZKBOKMUTVV7A"},
		{"GitHub token", "ghp" + "_" + alnum36},
		{"GitHub token", "token=ghs" + "_" + alnum36 + "xyz"},
		{"GitHub fine-grained token", "github" + "_pat_" + strings.Repeat("A1_b", 20) + "zz"},
		{"GitLab token", "glpat" + "-" + "xYz12_abcDEF-34567890"},
		{"Slack token", "xoxb" + "-123456789012-1234567890123-" + "abcdefghijklmnopqrstuvwx"},
		{"Slack webhook URL", "https://hooks.slack.com/services/" + "T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"},
		{"Stripe secret key", "sk" + "_live_" + strings.Repeat("4eC39HqLyjWDarjtT1zdp7dc", 1)},
		{"Google API key", "AIza" + "SyA-" + strings.Repeat("x1Y2", 7) + "abc"},
		{"Google OAuth client secret", "GOCSPX" + "-" + strings.Repeat("a1B2", 7)},
		{"private key", "-----BEGIN " + "RSA PRIVATE KEY-----\nMIIEow...\n-----END RSA PRIVATE KEY-----"},
		{"private key", "-----BEGIN " + "OPENSSH PRIVATE KEY-----"},
		{"private key", "-----BEGIN " + "PRIVATE KEY-----"},
		{"OpenAI API key", "sk-proj-" + strings.Repeat("Ab1_", 6) + "T3Blbk" + "FJ" + strings.Repeat("Cd2-", 6)},
		{"Anthropic API key", "sk-ant" + "-api03-" + strings.Repeat("Ab1_", 24) + "AA"},
		{"npm token", "npm" + "_" + alnum36},
		{"PyPI token", "pypi-AgEIcHlwaS5vcmc" + strings.Repeat("Ab1_", 14)},
		{"Docker Hub token", "dckr" + "_pat_" + strings.Repeat("Ab1-", 7)},
		{"SendGrid API key", "SG." + strings.Repeat("Ab1_", 5) + "xy." + strings.Repeat("Cd2-", 10) + "abc"},
		{"HashiCorp Vault token", "hvs" + "." + strings.Repeat("CAESI", 6)},
		{"Hugging Face token", "hf" + "_" + strings.Repeat("abcDEF", 5) + "ghij"},
		{"Shopify token", "shpat" + "_" + hex32},
		{"Azure storage account key", "DefaultEndpointsProtocol=https;AccountName=x;AccountKey=" + strings.Repeat("Ab1+", 21) + "xy==;"},
		{"Databricks token", "dapi" + hex32},
		{"Atlassian API token", "ATATT3" + strings.Repeat("xFfGF0", 31)},
		{"Linear API key", "lin" + "_api_" + strings.Repeat("a1B2", 10)},
		{"Square access token", "sq0atp" + "-" + strings.Repeat("Ab1_", 5) + "xy"},
		{"JSON Web Token", "Bearer eyJ" + "hbGciOiJIUzI1NiJ9.eyJ" + "zdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"},
	}
	for _, tt := range tests {
		got := Find(map[string]any{"body": tt.value})
		if !slices.Contains(got, Finding{Kind: tt.kind, Path: "body"}) {
			t.Errorf("Find(%q) = %v; want a %s at body", tt.value, got, tt.kind)
		}
	}
}

func TestFindNothingInOrdinaryValues(t *testing.T) {
	for _, value := range []string{
		"Summarise the open issues labelled p1 in the widgets repository",
		"AKIA is a prefix; AKIAshort",
		"commit 9fceb02d0ae598e95dc970b74767f19372d61af8",
		"id 123e4567-e89b-12d3-a456-426614174000",
		"aGVsbG8gd29ybGQgaGVsbG8gd29ybGQgaGVsbG8gd29ybGQ=",
		"ghp_ is how GitHub's tokens start",
		"sk-1234 and sk_test_" + alnum36,
		"-----BEGIN PUBLIC KEY-----\nMIIBIjANBg\n-----END PUBLIC KEY-----",
		"-----BEGIN CERTIFICATE-----",
		"eyJhbGciOiJIUzI1NiJ9 alone",
		"xoxb and hooks.slack.com",
		"see https://github.com/acme/widgets/pull/42",
		"dapi is not a token, nor dapi12",
	} {
		if got := Find(map[string]any{"text": value}); len(got) > 0 {
			t.Errorf("Find(%q) = %v; want nothing", value, got)
		}
	}
}

func TestFindPaths(t *testing.T) {
	token := "ghp" + "_" + alnum36
	var value any
	if err := json.Unmarshal([]byte(`{
		"title": "fine",
		"files": [{"name": "a"}, {"content": "`+token+`"}],
		"headers": {"`+token+`": "x"},
		"nested": {"deeper": ["x", "-----BEGIN `+`EC PRIVATE KEY-----", "`+token+`"]}
	}`), &value); err != nil {
		t.Fatal(err)
	}
	want := []Finding{
		{"GitHub token", "a name of headers"},
		{"GitHub token", "files[1].content"},
		{"private key", "nested.deeper[1]"},
		{"GitHub token", "nested.deeper[2]"},
	}
	if got := Find(value); !slices.Equal(got, want) {
		t.Errorf("Find = %v; want %v", got, want)
	}
	if got := Find(token); !slices.Equal(got, []Finding{{"GitHub token", "the value itself"}}) {
		t.Errorf("Find of a string = %v", got)
	}
	if got := Find(nil); len(got) != 0 {
		t.Errorf("Find(nil) = %v", got)
	}
}

func BenchmarkFind(b *testing.B) {
	arguments := map[string]any{
		"repo":   "acme/widgets",
		"title":  "Summarise the open issues labelled p1 in the widgets repository, oldest first",
		"body":   strings.Repeat("An ordinary paragraph of an issue, with no credential in it. ", 20),
		"labels": []any{"p1", "bug"},
	}
	b.ReportAllocs()
	for b.Loop() {
		if len(Find(arguments)) != 0 {
			b.Fatal("found a secret")
		}
	}
}
