package gateway_test

import (
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/upstreamtest"
)

// TestBlockSecrets: with block_secrets, a tool call whose arguments hold
// a well-known credential is blocked whatever the policy decides (the
// table allows echo), with a reason that names what was found and where
// but not the credential, and the server never sees it; other calls go
// on as before. Without it, the same call runs.
func TestBlockSecrets(t *testing.T) {
	token := "ghp" + "_" + strings.Repeat("a1B2", 9)
	for _, block := range []bool{true, false} {
		up := newUpstream(t, upstreamtest.StatefulJSON)
		cfg := libraryConfig(t)
		cfg.BlockSecrets = block
		gw := serveGateway(t, cfg, up.URL)
		session := connect(t, gw.URL, nil, "")
		text, isError := callTool(t, session, "echo", "my token is "+token)
		switch {
		case block && (!isError || !strings.Contains(text, `tool "echo" is blocked: its arguments hold what looks like a GitHub token (at "text")`) || strings.Contains(text, token)):
			t.Errorf("block_secrets: echo with a token answered %q (isError %v); want it blocked, naming the kind and the place, not the token", text, isError)
		case block && up.SawBodyContaining(token):
			t.Error("block_secrets: the server received the token")
		case !block && (isError || text != "echo:my token is "+token):
			t.Errorf("without block_secrets: echo with a token answered %q (isError %v); want it run", text, isError)
		}
		if text, isError := callTool(t, session, "echo", "no token here"); isError || text != "echo:no token here" {
			t.Errorf("block_secrets %v: echo without a token answered %q (isError %v); want it run", block, text, isError)
		}
	}
}
