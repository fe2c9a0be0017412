package secrets

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// random returns n characters of alphabet, the same on every run, as
// varied as issued credentials are. Tokens are built from it, so that no
// whole credential stands in the source.
func random(alphabet string, n int) string {
	r := rand.New(rand.NewPCG(uint64(n), uint64(len(alphabet))))
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[r.IntN(len(alphabet))]
	}
	return string(b)
}

const (
	alnum  = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	urlB64 = alnum + "-_"
	upper  = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	hex    = "0123456789abcdef"
)

// privateKey is a private key's whole block, as a file holds it.
var privateKey = "-----BEGIN " + "OPENSSH PRIVATE KEY-----\n" + random(alnum+"+/", 70) + "\n" + random(alnum+"+/", 70) + "\n-----END OPENSSH PRIVATE KEY-----\n"

func TestFindEachKind(t *testing.T) {
	tests := []struct {
		kind, value string
	}{
		{"AWS access key ID", "key " + "AKIA" + random(upper, 16) + " here"},
		{"AWS access key ID", "ASIA" + random(upper, 16)},
		{"GitHub token", "ghp" + "_" + random(alnum, 36)},
		{"GitHub token", "token=ghs" + "_" + random(alnum, 40)},
		{"GitHub fine-grained token", "github" + "_pat_" + random(alnum+"_", 82)},
		{"GitLab token", "glpat" + "-" + random(urlB64, 20)},
		{"Slack token", "xoxb" + "-123456789012-1234567890123-" + random(alnum, 24)},
		{"Slack webhook URL", "https://hooks.slack.com/services/" + "T" + random(upper, 8) + "/B" + random(upper, 8) + "/" + random(alnum, 24)},
		{"Stripe secret key", "sk" + "_live_" + random(alnum, 24)},
		{"Google API key", "AIza" + random(urlB64, 35)},
		{"Google OAuth client secret", "GOCSPX" + "-" + random(urlB64, 28)},
		{"private key", privateKey},
		{"private key", "-----BEGIN " + "RSA PRIVATE KEY-----\n" + random(alnum+"+/", 64) + "\n-----END RSA PRIVATE KEY-----"},
		{"OpenAI API key", "sk-proj-" + random(urlB64, 24) + "T3Blbk" + "FJ" + random(urlB64, 24)},
		{"Anthropic API key", "sk-ant" + "-api03-" + random(urlB64, 93) + "AA"},
		{"npm token", "npm" + "_" + random(alnum, 36)},
		{"PyPI token", "pypi-AgEIcHlwaS5vcmc" + random(urlB64, 60)},
		{"Docker Hub token", "dckr" + "_pat_" + random(urlB64, 27)},
		{"SendGrid API key", "SG." + random(urlB64, 22) + "." + random(urlB64, 43)},
		{"HashiCorp Vault token", "hvs" + "." + random(urlB64, 90)},
		{"Hugging Face token", "hf" + "_" + random("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", 34)},
		{"Shopify token", "shpat" + "_" + random(hex, 32)},
		{"Azure storage account key", "DefaultEndpointsProtocol=https;AccountName=x;AccountKey=" + random(alnum+"+/", 86) + "==;"},
		{"Databricks token", "dapi" + random(hex, 32)},
		{"Atlassian API token", "ATATT3" + random(urlB64, 186)},
		{"Linear API key", "lin" + "_api_" + random(alnum, 40)},
		{"Square access token", "sq0atp" + "-" + random(urlB64, 22)},
		{"JSON Web Token", "Bearer eyJ" + "hbGciOiJIUzI1NiJ9.eyJ" + "zdWIiOiIxMjM0NTY3ODkwIn0." + random(urlB64, 43)},
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
		"sk-1234 and sk_test_" + random(alnum, 36),
		"-----BEGIN PUBLIC KEY-----\nMIIBIjANBg\n-----END PUBLIC KEY-----",
		"-----BEGIN CERTIFICATE-----",
		"eyJhbGciOiJIUzI1NiJ9 alone",
		"xoxb and hooks.slack.com",
		"see https://github.com/acme/widgets/pull/42",
		"dapi is not a token, nor dapi12",
		// What a key looks like, in code and prose, is no key.
		`if strings.HasPrefix(text, "-----BEGIN RSA PRIVATE KEY-----") {`,
		"An OpenSSH key file starts with `-----BEGIN OPENSSH PRIVATE KEY-----`.",
		// The issuers' documented examples, and placeholders.
		"aws_access_key_id = AKIA" + "IOSFODNN7EXAMPLE",
		"export GITHUB_TOKEN=ghp_" + strings.Repeat("x", 36),
		"npm_" + strings.Repeat("0", 36),
	} {
		if got := Find(map[string]any{"text": value}); len(got) > 0 {
			t.Errorf("Find(%q) = %v; want nothing", value, got)
		}
	}
}

func TestFindPaths(t *testing.T) {
	token := "ghp" + "_" + random(alnum, 36)
	raw, err := json.Marshal(map[string]any{
		"title":   "fine",
		"files":   []any{map[string]any{"name": "a"}, map[string]any{"content": token}},
		"headers": map[string]any{token: "x"},
		"nested":  map[string]any{"deeper": []any{"x", privateKey, token}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var value any
	if err := json.Unmarshal(raw, &value); err != nil {
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

// TestFindBounded: what Find reads is bounded by the value's size, not by
// its shape (a long name above many items once built a path for each);
// a value dense with keywords is read up to MaxMatched, then reported as
// too much to read; one of BEGIN lines without END lines is read whole,
// each stretch looked through once; a credential past many decoys in
// one string is found
// while the budget lasts. (Times are not asserted: the counts are.)
func TestFindBounded(t *testing.T) {
	name := strings.Repeat("n", 1<<20)
	items := make([]any, 2000)
	for i := range items {
		items[i] = float64(i)
	}
	start := time.Now()
	if got := Find(map[string]any{name: items}); len(got) != 0 {
		t.Errorf("a long name over numbers: %v", got)
	}
	t.Logf("a 1 MiB name over 2,000 numbers: %v", time.Since(start))

	dense := strings.Repeat("ghp_ AKIA eyJ xoxb- PRIVATE KEY ", 200_000)
	if got := Find(dense); !slices.Equal(got, []Finding{{TooMuchToRead, "the value itself"}}) {
		t.Errorf("a value dense with keywords: %v; want it too much to read", got)
	}
	// BEGIN lines without their END: the text after them is looked
	// through for an END once, not once a line (a search tool's output
	// quoting BEGIN lines by the hundred holds no key, and is read).
	begins := strings.Repeat("-----BEGIN"+"PRIVATE KEY-----", 1<<20/26)
	if got := Find(begins); len(got) != 0 {
		t.Errorf("a value of BEGIN lines without an END: %v; want nothing", got)
	}
	var grep strings.Builder
	for i := range 200 {
		fmt.Fprintf(&grep, "internal/pem/testdata/check_%03d.go:12:\tif line == \"-----BEGIN RSA PRIVATE KEY-----\" {\n", i)
	}
	if got := Find(grep.String()); len(got) != 0 {
		t.Errorf("a search's output quoting 200 BEGIN lines: %v; want nothing", got)
	}
	token := "ghp" + "_" + random(alnum, 36)
	decoys := strings.Repeat("ghp_ decoy ", 1000) + token
	if got := Find(decoys); !slices.Equal(got, []Finding{{"GitHub token", "the value itself"}}) {
		t.Errorf("a token past 1,000 decoys: %v", got)
	}
}

// TestFindLongAndRandom: a long JSON Web Token (17 KB) is found whole;
// every AWS key of random characters is found (placeholders are runs,
// not keys that happen to repeat a character); a long log with a base64
// JSON payload (eyJ…) every 8 KiB holds no credential and is read whole,
// as is one naming many rules' keywords every 4 KiB.
func TestFindLongAndRandom(t *testing.T) {
	jwt := "eyJ" + "hbGciOiJSUzI1NiJ9.eyJ" + random(urlB64, 17000) + "." + random(urlB64, 43)
	if got := Find(jwt); !slices.Equal(got, []Finding{{"JSON Web Token", "the value itself"}}) {
		t.Errorf("a 17 KB JWT: %v", got)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 20000 {
		key := make([]byte, 16)
		for j := range key {
			key[j] = upper[r.IntN(len(upper))]
		}
		if got := Find("AKIA" + string(key)); len(got) != 1 {
			t.Fatalf("key %d, AKIA%s: %v", i, key, got)
		}
	}
	var log strings.Builder
	for i := range 75 {
		log.WriteString(random(alnum+" ", 8000))
		log.WriteString(" payload=eyJ" + random(urlB64, 100+i) + " ")
	}
	if got := Find(log.String()); len(got) != 0 {
		t.Errorf("a %d-byte log with base64 payloads: %v; want nothing", log.Len(), got)
	}
	// 3 MiB, naming every 4 KiB the keywords of seven rules, two with
	// long windows: each rule is charged a byte once, however its
	// windows overlap (the JWT rule's were charged twice, and this log
	// ran past the budget).
	log.Reset()
	for log.Len() < 3<<20 {
		log.WriteString(random(alnum+" \n", 3900))
		log.WriteString(" jwt=eyJ" + random(urlB64, 60) + " vault=hvs. jira=ATATT3 pypi=pypi-AgEIcHlwaS5vcmc slack=xoxb- azure=AccountKey= docker=dckr_pat_\n")
	}
	if got := Find(log.String()); len(got) != 0 {
		t.Errorf("a %d-byte log naming many rules' keywords: %v; want nothing", log.Len(), got)
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

// TestFindPrivateKeyBlocks: a private key's block is found however many
// BEGIN lines, END lines or other keys' pairs stand around it; and BEGIN
// lines the rule's overlapping windows match again, before a long text
// without an END, have that text looked through once, not once a window
// (it was too much to read).
func TestFindPrivateKeyBlocks(t *testing.T) {
	body := strings.Repeat("MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n", 20)
	for name, value := range map[string]string{
		"BEGIN lines, then a key": strings.Repeat("-----BEGIN PRIVATE KEY-----\n", 300) + body + "-----END PRIVATE KEY-----\n",
		"an END, then a key":      "-----END PRIVATE KEY-----\n-----BEGIN RSA PRIVATE KEY-----\n" + body + "-----END RSA PRIVATE KEY-----\n",
		"a short pair, then a key": "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n" + strings.Repeat("z", 200) +
			"-----BEGIN PRIVATE KEY-----\n" + body + "-----END PRIVATE KEY-----\n",
		"a key amid 200 KB": strings.Repeat("q", 100000) + "-----BEGIN EC PRIVATE KEY-----\n" + body + "-----END EC PRIVATE KEY-----\n" + strings.Repeat("q", 100000),
	} {
		if got := Find(value); !slices.Equal(got, []Finding{{"private key", "the value itself"}}) {
			t.Errorf("%s: %v; want the key", name, got)
		}
	}
	// The rule's keyword at 200, 328 and 456, its windows reaching back
	// 120 bytes: each matches the BEGIN lines at 340.
	var text strings.Builder
	pad := func(to int) { text.WriteString(strings.Repeat("x", to-text.Len())) }
	pad(200)
	text.WriteString("PRIVATE KEY")
	pad(328)
	text.WriteString("PRIVATE KEY")
	pad(340)
	text.WriteString("-----BEGIN PRIVATE KEY----------END\n-----BEGIN PRIVATE KEY-----")
	pad(456)
	text.WriteString("PRIVATE KEY")
	text.WriteString(strings.Repeat("ordinary log line\n", (2<<20)/18))
	if got := Find(text.String()); len(got) != 0 {
		t.Errorf("BEGIN lines matched by three windows, then 2 MiB of log: %v; want nothing", got)
	}
}

// TestFindJSON: FindJSON finds in a JSON text what Find finds in the
// value it decodes to, and refuses a text that is no JSON.
func TestFindJSON(t *testing.T) {
	token := "ghp" + "_" + random(alnum, 36)
	if got, err := FindJSON([]byte(`{"body":["` + token + `"]}`)); err != nil || !slices.Equal(got, []Finding{{"GitHub token", "body[0]"}}) {
		t.Errorf("FindJSON of an object holding a token = %v, %v", got, err)
	}
	if got, err := FindJSON([]byte(`{"body":"nothing"}`)); err != nil || len(got) != 0 {
		t.Errorf("FindJSON of an object holding none = %v, %v", got, err)
	}
	if _, err := FindJSON([]byte("not JSON " + token)); err == nil {
		t.Error("FindJSON of a text that is no JSON: no error")
	}
}
