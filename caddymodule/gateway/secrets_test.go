//lint:file-ignore SA1019 logging and sampling are deprecated (SEP-2577) but servers still send them, and block_secrets must read them.
package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mcpgate/mcpgate/caddymodule/approval"
	"github.com/mcpgate/mcpgate/caddymodule/gateway"
	"github.com/mcpgate/mcpgate/caddymodule/mcphttp"
	"github.com/mcpgate/mcpgate/caddymodule/policy"
	"github.com/mcpgate/mcpgate/internal/clienttest"
	"github.com/mcpgate/mcpgate/internal/upstreamtest"
	"github.com/mcpgate/mcpgate/policies"
)

// TestBlockSecrets: with block_secrets, a tool call whose arguments hold
// a well-known credential is blocked whatever the policy decides (the
// table allows echo), with a reason that names what was found and where
// but not the credential, and the server never sees it; other calls go
// on as before. Without it, the same call runs.
func TestBlockSecrets(t *testing.T) {
	token := "ghp" + "_" + "Zq8rT2mLx0Vb7Nc4Hd9Kf1Jw6Gs3Ye5Pa8Ui"
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

// TestBlockSecretsInResults: with block_secrets, what a server answers
// is read for credentials too: a tool's result that holds one (in its
// text, in its structured content) reaches the client as a failed result
// saying what was withheld, never the credential; a resource's contents
// that hold one, as a JSON-RPC error; answers that hold none pass as they
// came. Without it, they pass.
func TestBlockSecretsInResults(t *testing.T) {
	key := "-----BEGIN " + "OPENSSH PRIVATE KEY-----\n" + strings.Repeat("b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ", 2) + "\n-----END OPENSSH PRIVATE KEY-----"
	for _, mode := range []upstreamtest.Mode{upstreamtest.StatefulJSON, upstreamtest.StatefulSSE} {
		for _, block := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s, block_secrets %v", mode.Name, block), func(t *testing.T) {
				u := upstreamtest.Unstarted("leaky", nil, nil)
				mcp.AddTool(u.Server, &mcp.Tool{Name: "read_file", Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}},
					func(_ context.Context, _ *mcp.CallToolRequest, in upstreamtest.TextInput) (*mcp.CallToolResult, any, error) {
						switch in.Text {
						case "structured":
							return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "see structuredContent"}}}, map[string]any{"file": key}, nil
						case "text":
							return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: key}}}, nil, nil
						}
						return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: in.Text}}}, nil, nil
					})
				u.Server.AddResource(&mcp.Resource{URI: "file:///id_ed25519", Name: "key"}, func(context.Context, *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
					return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: "file:///id_ed25519", Text: key}}}, nil
				})
				up := u.Start(t, mode.Handler(u.Server))
				cfg := libraryConfig(t)
				cfg.BlockSecrets = block
				gw := serveGateway(t, cfg, up.URL)
				session := connect(t, gw.URL, nil, "")
				for _, text := range []string{"text", "structured"} {
					got, isError := callTool(t, session, "read_file", text)
					switch {
					case block && (!isError || !strings.Contains(got, "The gateway withheld this tool's result: it held what looks like a private key") || strings.Contains(got, "b3BlbnNza")):
						t.Errorf("read_file %.10q answered %q (isError %v); want it withheld", text, got, isError)
					case !block && isError:
						t.Errorf("without block_secrets, read_file %.10q answered %q (isError); want the result", text, got)
					}
				}
				if got, isError := callTool(t, session, "read_file", "nothing secret"); isError || got != "nothing secret" {
					t.Errorf("read_file without a credential answered %q (isError %v)", got, isError)
				}
				read, err := session.ReadResource(t.Context(), &mcp.ReadResourceParams{URI: "file:///id_ed25519"})
				switch {
				case block && (err == nil || !strings.Contains(err.Error(), "The gateway withheld the server's answer: it held what looks like a private key")):
					t.Errorf("resources/read of a key: %v, %v; want it withheld", read, err)
				case !block && err != nil:
					t.Errorf("without block_secrets, resources/read: %v", err)
				}
			})
		}
	}
}

// TestBlockSecretsAcrossReload: a reload that turns block_secrets on
// covers what the configuration before it still relays: a call held for
// approval with a token in its arguments, decided again once approved,
// does not run; a gateway the reload retired withholds the key a tool's
// result holds, as the gateways serving its server now would.
func TestBlockSecretsAcrossReload(t *testing.T) {
	token := "ghp" + "_" + "Zq8rT2mLx0Vb7Nc4Hd9Kf1Jw6Gs3Ye5Pa8Ui"
	key := "-----BEGIN " + "OPENSSH PRIVATE KEY-----\n" + strings.Repeat("b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ", 2) + "\n-----END OPENSSH PRIVATE KEY-----"
	u := upstreamtest.Unstarted("leaky", nil, upstreamTools)
	mcp.AddTool(u.Server, &mcp.Tool{Name: "read_file", Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}},
		func(context.Context, *mcp.CallToolRequest, upstreamtest.TextInput) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: key}}}, nil, nil
		})
	up := u.Start(t, upstreamtest.StatefulJSON.Handler(u.Server))
	var running atomic.Pointer[[]*gateway.Gateway]
	cfg := libraryConfig(t)
	cfg.Approvals = &gateway.Approvals{Service: newApprovalService(t, ""), Hold: time.Minute, Keepalive: time.Second}
	cfg.Running = func() []*gateway.Gateway { return *running.Load() }
	old := serveGateway(t, cfg, up.URL)
	running.Store(&[]*gateway.Gateway{old.gateway})
	header := sessionHeader(t, old.URL)

	pending, answer := holdCreateIssueWith(t, old, header, token)
	renewed := cfg
	renewed.Running, renewed.BlockSecrets = nil, true
	running.Store(&[]*gateway.Gateway{newGateway(t, renewed)})
	if _, err := old.approvals.Decide(context.Background(), pending.ID, true, approval.Decider{ID: "admin", Principals: []string{"admin"}}, ""); err != nil {
		t.Fatal(err)
	}
	if body := <-answer; up.CallCount("create_issue") != 0 || !strings.Contains(body, "did not run") || !strings.Contains(body, "GitHub token") {
		t.Errorf("the held call with a token, approved after block_secrets was turned on: %s (ran %d times); want it not run", body, up.CallCount("create_issue"))
	}

	old.gateway.Retire(true)
	got := post(t, old.URL, header, callBody("1", "read_file", "x"))
	if strings.Contains(string(got.body), "b3BlbnNza") || !strings.Contains(string(got.body), "The gateway withheld this tool's result") {
		t.Errorf("a retired gateway relayed %s; want the key withheld, as the gateway serving its server now would", got.body)
	}
}

// TestBlockSecretsInServerMessages: with block_secrets, what a server
// sends the client besides results is read for credentials too: a
// JSON-RPC error quoting a token reaches the client as the gateway's
// error, a log line holding one is dropped, and a sampling request
// holding one is refused to the server (the tool learns why) and never
// reaches the client. Without it, the error and the log line pass.
func TestBlockSecretsInServerMessages(t *testing.T) {
	token := "ghp" + "_" + "Zq8rT2mLx0Vb7Nc4Hd9Kf1Jw6Gs3Ye5Pa8Ui"
	for _, block := range []bool{true, false} {
		t.Run(fmt.Sprintf("block_secrets %v", block), func(t *testing.T) {
			u := upstreamtest.Unstarted("leaky", nil, nil)
			mcp.AddTool(u.Server, &mcp.Tool{Name: "leak", Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}},
				func(ctx context.Context, req *mcp.CallToolRequest, in upstreamtest.TextInput) (*mcp.CallToolResult, any, error) {
					text := "done"
					switch in.Text {
					case "error":
						return nil, nil, &jsonrpc.Error{Code: -32000, Message: "the upstream refused the credentials " + token}
					case "log":
						for _, line := range []string{"signed in with " + token, "end of log"} {
							if err := req.Session.Log(ctx, &mcp.LoggingMessageParams{Level: "info", Data: line}); err != nil {
								text = "log failed: " + err.Error()
							}
						}
					case "sample":
						if _, err := req.Session.CreateMessage(ctx, &mcp.CreateMessageParams{
							Messages: []*mcp.SamplingMessage{{Role: "user", Content: &mcp.TextContent{Text: "summarise the repository with " + token}}}, MaxTokens: 10,
						}); err != nil {
							text = "sampling failed: " + err.Error()
						}
					}
					return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: text}}}, nil, nil
				})
			up := u.Start(t, upstreamtest.StatefulSSE.Handler(u.Server))
			cfg := libraryConfig(t)
			cfg.BlockSecrets = block
			gw := serveGateway(t, cfg, up.URL)
			logged := make(chan string, 10)
			sampled := make(chan string, 10)
			session := connect(t, gw.URL, &mcp.ClientOptions{
				LoggingMessageHandler: func(_ context.Context, req *mcp.LoggingMessageRequest) {
					logged <- fmt.Sprint(req.Params.Data)
				},
				CreateMessageHandler: func(_ context.Context, req *mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
					sampled <- fmt.Sprint(req.Params.Messages[0].Content.(*mcp.TextContent).Text)
					return &mcp.CreateMessageResult{Role: "assistant", Model: "m", Content: &mcp.TextContent{Text: "ok"}}, nil
				},
			}, "")
			if err := session.SetLoggingLevel(t.Context(), &mcp.SetLoggingLevelParams{Level: "debug"}); err != nil {
				t.Fatalf("setting the log level: %v", err)
			}

			_, err := session.CallTool(t.Context(), &mcp.CallToolParams{Name: "leak", Arguments: map[string]any{"text": "error"}})
			switch {
			case err == nil:
				t.Error("an error quoting a token: no error")
			case block && (strings.Contains(err.Error(), token) || !strings.Contains(err.Error(), "The gateway withheld the server's answer: it held what looks like a GitHub token")):
				t.Errorf("an error quoting a token: %v; want it withheld", err)
			case !block && !strings.Contains(err.Error(), token):
				t.Errorf("without block_secrets, an error quoting a token: %v; want it as the server sent it", err)
			}

			if text, isError := callTool(t, session, "leak", "log"); isError || text != "done" {
				t.Errorf("the call that logs: %q (isError %v)", text, isError)
			}
			// The client's handler may see the lines after the result:
			// they are read until the last, which holds nothing.
			var lines []string
			for len(lines) == 0 || lines[len(lines)-1] != "end of log" {
				select {
				case line := <-logged:
					lines = append(lines, line)
				case <-time.After(5 * time.Second):
					t.Fatalf("the log's last line never came (lines: %q)", lines)
				}
			}
			if sawToken := slices.ContainsFunc(lines, func(line string) bool { return strings.Contains(line, token) }); sawToken == block {
				t.Errorf("block_secrets %v: the client's log lines %q", block, lines)
			}

			if block {
				text, _ := callTool(t, session, "leak", "sample")
				if !strings.Contains(text, "The gateway withheld the server's request: it held what looks like a GitHub token") || strings.Contains(text, token) {
					t.Errorf("the call that asks for a sampling with a token: %q; want the sampling refused to the server by block_secrets", text)
				}
				select {
				case got := <-sampled:
					t.Errorf("a sampling request holding a token reached the client: %q", got)
				default:
				}
			}
		})
	}
}

// TestBlockSecretsInFailures: with block_secrets, what a server answers
// besides tool results is read too: a JSON-RPC error sent with HTTP 400,
// or a line of text sent with a 500, that quotes a token has its body
// replaced by the gateway's error, its status kept; an error answering a
// request that no tool runs (logging/setLevel) is withheld as one to a
// tool call is; a notification holding a token outside its params is
// dropped, and a response's own member holding one taken out; a DELETE's
// failure quoting one has its body replaced, its status kept.
func TestBlockSecretsInFailures(t *testing.T) {
	token := "ghp" + "_" + "Zq8rT2mLx0Vb7Nc4Hd9Kf1Jw6Gs3Ye5Pa8Ui"
	deleteEncodings := make(chan string, 1)
	u := upstreamtest.Unstarted("leaky", nil, upstreamTools)
	inner := upstreamtest.StatefulJSON.Handler(u.Server)
	up := u.Start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		var message struct{ ID json.RawMessage }
		_ = json.Unmarshal(body, &message)
		switch {
		case r.Method == http.MethodDelete:
			deleteEncodings <- r.Header.Get("Accept-Encoding")
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintf(w, "session ended: its server exited; its last stderr line: Error: bad key %s\n", token)
		case bytes.Contains(body, []byte(`"extra"`)):
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"ok"}]},"debug":"%s"}`, message.ID, token)
		case bytes.Contains(body, []byte(`"status400"`)):
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"error":{"code":-32000,"message":"the upstream refused the credentials %s"}}`, message.ID, token)
		case bytes.Contains(body, []byte(`"status500"`)):
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprintf(w, "Error: bad key %s\n", token)
		case bytes.Contains(body, []byte(`"logging/setLevel"`)):
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"error":{"code":-32000,"message":"auth failed for %s"}}`, message.ID, token)
		case bytes.Contains(body, []byte(`"toplevel"`)):
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprintf(w, "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"level\":\"info\",\"data\":\"x\"},\"debug\":\"%s\"}\n\n", token)
			fmt.Fprintf(w, "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"ok\"}]}}\n\n", message.ID)
		default:
			inner.ServeHTTP(w, r)
		}
	}))
	cfg := libraryConfig(t)
	cfg.BlockSecrets = true
	gw := serveGateway(t, cfg, up.URL)
	session := connect(t, gw.URL, nil, "")
	header := sessionHeader(t, gw.URL)

	const withheld = "The gateway withheld the server's answer: it held what looks like a GitHub token"
	for _, tt := range []struct {
		trigger string
		status  int
	}{{"status400", http.StatusBadRequest}, {"status500", http.StatusInternalServerError}} {
		got := post(t, gw.URL, header, callBody("9", "echo", tt.trigger))
		if got.status != tt.status || strings.Contains(string(got.body), token) || !strings.Contains(string(got.body), withheld) {
			t.Errorf("a %d quoting a token: HTTP %d %s; want HTTP %d with the body withheld", tt.status, got.status, got.body, tt.status)
		}
	}
	if _, err := session.CallTool(t.Context(), &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "status400"}}); err == nil || strings.Contains(err.Error(), token) || !strings.Contains(err.Error(), withheld) {
		t.Errorf("the Go SDK's client, given a 400 quoting a token: %v; want the gateway's error", err)
	}
	if err := session.SetLoggingLevel(t.Context(), &mcp.SetLoggingLevelParams{Level: "debug"}); err == nil || strings.Contains(err.Error(), token) || !strings.Contains(err.Error(), withheld) {
		t.Errorf("an error to logging/setLevel quoting a token: %v; want it withheld", err)
	}
	if got := post(t, gw.URL, header, callBody("7", "echo", "toplevel")); strings.Contains(string(got.body), token) || !strings.Contains(string(got.body), `"ok"`) {
		t.Errorf("a notification with a token outside its params: HTTP %d %s; want it dropped, the result relayed", got.status, got.body)
	}
	if got := post(t, gw.URL, header, callBody("8", "echo", "extra")); strings.Contains(string(got.body), token) || !strings.Contains(string(got.body), `{"jsonrpc":"2.0","id":8,"result":{"content":[{"type":"text","text":"ok"}]}}`) {
		t.Errorf("a response with a token in a member of its own: HTTP %d %s; want the member taken out, the result relayed", got.status, got.body)
	}
	deleting := clienttest.NewRequest(t, http.MethodDelete, gw.URL, header, nil)
	deleting.Header.Set("Accept-Encoding", "gzip")
	if got := send(t, deleting); got.status != http.StatusNotFound || strings.Contains(string(got.body), token) || !strings.Contains(string(got.body), withheld) {
		t.Errorf("a DELETE answered 404 quoting a token: HTTP %d %s; want the body withheld, the status kept", got.status, got.body)
	}
	// A failure the gateway could not read would be refused.
	if encoding := <-deleteEncodings; encoding != "identity" {
		t.Errorf("the DELETE reached the server accepting %q; want its reply uncompressed", encoding)
	}
}

// TestBlockSecretsInWhatClientsSend: with block_secrets, what a client
// hands the server besides a tool call's arguments is read too: a
// prompt's arguments and a resource's URI with a token in its query are
// refused, and a client's answer to the server's elicitation holding
// one reaches the server as the gateway's error in its stead (the tool
// that asked learns why at once); the server never sees the token.
// Calls without one go on.
func TestBlockSecretsInWhatClientsSend(t *testing.T) {
	token := "ghp" + "_" + "Zq8rT2mLx0Vb7Nc4Hd9Kf1Jw6Gs3Ye5Pa8Ui"
	u := upstreamtest.Unstarted("asking", nil, nil)
	mcp.AddTool(u.Server, &mcp.Tool{Name: "ask", Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}},
		func(ctx context.Context, req *mcp.CallToolRequest, _ upstreamtest.TextInput) (*mcp.CallToolResult, any, error) {
			ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			text := "answered"
			if _, err := req.Session.Elicit(ctx, &mcp.ElicitParams{Message: "Your token?", RequestedSchema: &jsonschema.Schema{Type: "object", Properties: map[string]*jsonschema.Schema{"token": {Type: "string"}}}}); err != nil {
				text = "no answer: " + err.Error()
			}
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: text}}}, nil, nil
		})
	u.Server.AddPrompt(&mcp.Prompt{Name: "greet", Arguments: []*mcp.PromptArgument{{Name: "who"}}}, func(context.Context, *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
		return &mcp.GetPromptResult{Messages: []*mcp.PromptMessage{{Role: "user", Content: &mcp.TextContent{Text: "hello"}}}}, nil
	})
	u.Server.AddResourceTemplate(&mcp.ResourceTemplate{URITemplate: "https://api.example/{path}", Name: "api"}, func(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: req.Params.URI, Text: "data"}}}, nil
	})
	up := u.Start(t, upstreamtest.StatefulSSE.Handler(u.Server))
	engine, err := policy.New(context.Background(), policy.Options{Modules: policies.Library(), Data: map[string]any{"mcp": map[string]any{"permissions": map[string]any{
		"read_only": "allow", "resources": "allow", "prompts": "allow",
	}}}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, engine, filepath.Join(t.TempDir(), "pins.json"))
	cfg.MaxBody = 64 << 10
	cfg.BlockSecrets = true
	core, audited := observer.New(zapcore.InfoLevel)
	cfg.Audit = &gateway.Audit{Logger: zap.New(core)}
	gw := serveGateway(t, cfg, up.URL)
	session := connect(t, gw.URL, &mcp.ClientOptions{ElicitationHandler: func(context.Context, *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
		return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"token": token}}, nil
	}}, mcphttp.Version20251125)

	if _, err := session.GetPrompt(t.Context(), &mcp.GetPromptParams{Name: "greet", Arguments: map[string]string{"who": "me, " + token}}); err == nil || !strings.Contains(err.Error(), "prompts/get is blocked: its params hold what looks like a GitHub token") {
		t.Errorf("a prompt with a token in its arguments: %v; want it blocked", err)
	}
	if _, err := session.GetPrompt(t.Context(), &mcp.GetPromptParams{Name: "greet", Arguments: map[string]string{"who": "me"}}); err != nil {
		t.Errorf("a prompt without one: %v", err)
	}
	if _, err := session.ReadResource(t.Context(), &mcp.ReadResourceParams{URI: "https://api.example/items?access_token=" + token}); err == nil || !strings.Contains(err.Error(), "resources/read is blocked: its params hold") {
		t.Errorf("a resource read with a token in its URI: %v; want it blocked", err)
	}
	if text, isError := callTool(t, session, "ask", "x"); isError || !strings.Contains(text, "The gateway withheld the client's answer: it held what looks like a GitHub token") {
		t.Errorf("a call whose elicitation the client answered with a token: %q (isError %v); want the answer withheld", text, isError)
	}
	if up.SawBodyContaining(token) {
		t.Error("the server received the token")
	}
	withheld := audited.FilterMessage("mcp message").FilterField(zap.String("outcome", "withheld")).Len()
	if withheld != 1 {
		t.Errorf("%d audit records of a withheld answer; want 1", withheld)
	}
}

// TestBlockSecretsInEveryClientMessage: under block_secrets, every
// message the client sends the server is read for credentials, not only
// a call's arguments and the requests that name data: an initialize's
// description of the client, a cancellation's reason, a progress
// notification's message, a member of _meta or of the client's own, on
// any method, a progress token, the message's id and members beside its
// params. What the method has the client hand back as the server gave it
// (a task's id, of a task it follows; a list's cursor, given to the
// session: TestBlockSecretsReadsWhatTheServerDidNotGive) is not read: a server
// may make a cursor a signed token; on other methods, such members are
// read (the first version of this test left them, a progress token and
// all but params unread; found by a review), and so is a cursor the
// client made up (left unread until 2026-12-03's evening).
func TestBlockSecretsInEveryClientMessage(t *testing.T) {
	token := "ghp" + "_" + "Zq8rT2mLx0Vb7Nc4Hd9Kf1Jw6Gs3Ye5Pa8Ui"
	jwt := "eyJhbGciOiJIUzI1NiJ9.eyJvZmZzZXQiOjEwMH0.c2lnbmF0dXJlLW9mLXRoZS1jdXJzb3I"
	up := newUpstream(t, upstreamtest.StatefulJSON)
	cfg := libraryConfig(t)
	cfg.BlockSecrets = true
	gw := serveGateway(t, cfg, up.URL)
	header := sessionHeader(t, gw.URL)
	tests := []struct {
		name    string
		body    string
		blocked string // what the refusal says; "" when it must reach the server
	}{
		{"an initialize naming the client with a token",
			`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw ` + token + `","version":"1"}}}`,
			`initialize is blocked: its params hold what looks like a GitHub token (at "clientInfo.name")`},
		{"a cancellation's reason",
			`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":99,"reason":"my token ` + token + `"}}`,
			`notifications/cancelled is blocked: its params hold what looks like a GitHub token (at "reason")`},
		{"a progress notification's message",
			`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"p1","progress":1,"message":"` + token + `"}}`,
			`notifications/progress is blocked: its params hold what looks like a GitHub token (at "message")`},
		{"a tools/list's _meta",
			`{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{"_meta":{"note":"` + token + `"}}}`,
			`tools/list is blocked: its params hold what looks like a GitHub token (at "_meta.note")`},
		{"a tool call's _meta, its arguments clean",
			`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"},"_meta":{"auth":"` + token + `"}}}`,
			`tool "echo" is blocked: its params hold what looks like a GitHub token (at "_meta.auth")`},
		{"a ping's member of the client's own",
			`{"jsonrpc":"2.0","id":4,"method":"ping","params":{"extra":"` + token + `"}}`,
			`ping is blocked: its params hold what looks like a GitHub token (at "extra")`},
		// What the client chooses itself, and what it hands back as it
		// was given on other methods than those that hand it back.
		{"a progress token",
			`{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"},"_meta":{"progressToken":"` + token + `"}}}`,
			`tool "echo" is blocked: its params hold what looks like a GitHub token (at "_meta.progressToken")`},
		{"a request's id",
			`{"jsonrpc":"2.0","id":"` + token + `","method":"ping"}`,
			`ping is blocked: the message holds what looks like a GitHub token (at "id")`},
		{"a member beside params",
			`{"jsonrpc":"2.0","id":7,"method":"ping","params":{},"x-note":"` + token + `"}`,
			`ping is blocked: the message holds what looks like a GitHub token (at "x-note")`},
		{"a cursor on a tools/call",
			`{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"},"cursor":"` + token + `"}}`,
			`tool "echo" is blocked: its params hold what looks like a GitHub token (at "cursor")`},
		{"a requestState on a ping",
			`{"jsonrpc":"2.0","id":9,"method":"ping","params":{"requestState":"` + token + `"}}`,
			`ping is blocked: its params hold what looks like a GitHub token (at "requestState")`},
		{"a taskId on a prompts/list",
			`{"jsonrpc":"2.0","id":10,"method":"prompts/list","params":{"taskId":"` + token + `"}}`,
			`prompts/list is blocked: its params hold what looks like a GitHub token (at "taskId")`},
		{"a list's cursor the server never gave the session",
			`{"jsonrpc":"2.0","id":5,"method":"tools/list","params":{"cursor":"` + jwt + `"}}`,
			`tools/list is blocked: its params hold what looks like a JSON Web Token (at "cursor")`},

		{"a cancellation without a credential",
			`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"r-` + jwt[:8] + `","reason":"changed my mind"}}`, ""},
	}
	for _, tt := range tests {
		r := post(t, gw.URL, header, tt.body)
		refused := strings.Contains(string(r.body), "is blocked: its params hold")
		switch {
		case tt.blocked != "" && !strings.Contains(strings.ReplaceAll(string(r.body), `\"`, `"`), tt.blocked):
			t.Errorf("%s: HTTP %d %s; want it blocked, saying %s", tt.name, r.status, r.body, tt.blocked)
		case tt.blocked != "" && strings.Contains(strings.Replace(string(r.body), `"id":"`+token+`"`, "", 1), token):
			// (A refusal answers the request's id, the client's own.)
			t.Errorf("%s: the refusal quotes the token: %s", tt.name, r.body)
		case tt.blocked == "" && (refused || r.status >= 300):
			t.Errorf("%s: HTTP %d %s; want it forwarded", tt.name, r.status, r.body)
		case tt.blocked == "" && !up.SawBodyContaining(tt.body[len(tt.body)-40:]):
			t.Errorf("%s: the server never received it", tt.name)
		}
	}
	for _, r := range up.Received() {
		if bytes.Contains(r.Body, []byte(token)) {
			t.Errorf("the server received the token: %s", r.Body)
		}
	}
}

// TestBlockSecretsReadsWhatTheServerDidNotGive: under block_secrets, a
// list's cursor that reads as a credential (a server's signed token) is
// handed back unread only by the session a list of the same method gave
// it to; made up, handed back by another session or on another list, it
// is read and blocked, and never reaches the server; and so is a taskId
// on a method that names no task the gateway follows (one beginning
// "tasks/" was left unread until 2026-12-03's evening).
func TestBlockSecretsReadsWhatTheServerDidNotGive(t *testing.T) {
	jwt := "eyJhbGciOiJIUzI1NiJ9.eyJvZmZzZXQiOjEwMH0.c2lnbmF0dXJlLW9mLXRoZS1jdXJzb3I"
	madeUp := "eyJhbGciOiJIUzI1NiJ9.eyJrZXkiOiJBS0lBLi4uIn0.bWFkZS11cC1ieS10aGUtY2xpZW50"
	token := "ghp" + "_" + "Zq8rT2mLx0Vb7Nc4Hd9Kf1Jw6Gs3Ye5Pa8Ui"
	var sessions atomic.Int32
	up := upstreamtest.Raw(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		message, body := upstreamtest.ReadMessage(r)
		w.Header().Set("Content-Type", "application/json")
		switch {
		case message.Method == "initialize":
			w.Header().Set("Mcp-Session-Id", fmt.Sprintf("raw-%d", sessions.Add(1)))
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":"2025-06-18","capabilities":{"tools":{},"prompts":{}},"serverInfo":{"name":"raw","version":"1"}}}`, message.ID)
		case message.ID == nil:
			w.WriteHeader(http.StatusAccepted)
		case message.Method == "tools/list" && !bytes.Contains(body, []byte(`"cursor"`)):
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"tools":[{"name":"echo","inputSchema":{"type":"object"}}],"nextCursor":"%s"}}`, message.ID, jwt)
		case message.Method == "tools/list":
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"tools":[{"name":"search","inputSchema":{"type":"object"}}]}}`, message.ID)
		default:
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"prompts":[]}}`, message.ID)
		}
	}))
	engine, err := policy.New(context.Background(), policy.Options{Modules: map[string]string{"p.rego": "package mcp\n\ndefault decision := {\"action\": \"allow\"}\n"}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, engine, filepath.Join(t.TempDir(), "pins.json"))
	cfg.BlockSecrets, cfg.MaxBody = true, 64<<10
	gw := serveGateway(t, cfg, up.URL)
	mine, theirs := sessionHeader(t, gw.URL), sessionHeader(t, gw.URL)
	list := func(method, cursor string) string {
		if cursor == "" {
			return `{"jsonrpc":"2.0","id":2,"method":"` + method + `"}`
		}
		return `{"jsonrpc":"2.0","id":3,"method":"` + method + `","params":{"cursor":"` + cursor + `"}}`
	}
	if r := post(t, gw.URL, mine, list("tools/list", "")); !strings.Contains(string(r.body), `"nextCursor":"`+jwt+`"`) {
		t.Fatalf("the first page: HTTP %d %s; want the server's cursor", r.status, r.body)
	}
	const cursorHolds = `is blocked: its params hold what looks like a JSON Web Token (at "cursor")`
	tests := []struct {
		name    string
		header  http.Header
		body    string
		blocked string // what the refusal says; "" when it must reach the server
	}{
		{"the cursor handed back by the session given it", mine, list("tools/list", jwt), ""},
		{"the cursor handed back by another session", theirs, list("tools/list", jwt), "tools/list " + cursorHolds},
		{"the cursor handed back on another list", mine, list("prompts/list", jwt), "prompts/list " + cursorHolds},
		{"a cursor the client made up", mine, list("tools/list", madeUp), "tools/list " + cursorHolds},
		{"a taskId on a method that names no task", mine,
			`{"jsonrpc":"2.0","id":4,"method":"tasks/notes","params":{"taskId":"` + token + `"}}`,
			`tasks/notes is blocked: its params hold what looks like a GitHub token (at "taskId")`},
	}
	for _, tt := range tests {
		before := len(up.Received())
		r := post(t, gw.URL, tt.header, tt.body)
		reached := len(up.Received()) > before
		switch {
		case tt.blocked == "" && (r.status != http.StatusOK || !strings.Contains(string(r.body), `"search"`)):
			t.Errorf("%s: HTTP %d %s; want the next page", tt.name, r.status, r.body)
		case tt.blocked != "" && !strings.Contains(strings.ReplaceAll(string(r.body), `\"`, `"`), tt.blocked):
			t.Errorf("%s: HTTP %d %s; want it blocked, saying %s", tt.name, r.status, r.body, tt.blocked)
		case tt.blocked != "" && reached:
			t.Errorf("%s: the server received it", tt.name)
		}
	}
}

// TestToolListFetchRepeatsOnlyProtocolMeta: the tools/list the gateway
// sends to decide a call repeats of the call's _meta only what 2026-07-28
// makes every request carry (the client's revision, info and
// capabilities), never a member of the client's own, which would reach
// the server ahead of the call's decision (a call the policy blocks
// included); and under block_secrets, a call whose repeated _meta holds
// a credential is blocked without the list fetched.
func TestToolListFetchRepeatsOnlyProtocolMeta(t *testing.T) {
	token := "ghp" + "_" + "Zq8rT2mLx0Vb7Nc4Hd9Kf1Jw6Gs3Ye5Pa8Ui"
	header := http.Header{mcphttp.HeaderProtocolVersion: {mcphttp.Version20260728}, mcphttp.HeaderMethod: {"tools/call"}, mcphttp.HeaderName: {"echo"}}
	call := func(clientName, own string) string {
		return `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"` + clientName + `","version":"1"},"io.modelcontextprotocol/clientCapabilities":{},"progressToken":"p","x-own":"` + own + `"}}}`
	}
	for _, block := range []bool{false, true} {
		up := newUpstream(t, upstreamtest.StatelessJSON)
		cfg := libraryConfig(t)
		cfg.BlockSecrets = block
		gw := serveGateway(t, cfg, up.URL)
		if block {
			r := post(t, gw.URL, header, call("raw "+token, "x"))
			if !strings.Contains(string(r.body), `tool \"echo\" is blocked: its params hold what looks like a GitHub token (at \"_meta.io.modelcontextprotocol/clientInfo.name\")`) {
				t.Errorf("block_secrets, a call whose clientInfo holds a token: HTTP %d %s; want it blocked", r.status, r.body)
			}
			if up.SawBodyContaining(token) {
				t.Error("block_secrets: the server received the token")
			}
		}
		r := post(t, gw.URL, header, call("raw", "own-"+token[4:]))
		if r.status != http.StatusOK || !strings.Contains(string(r.body), "echo:hi") {
			t.Fatalf("block_secrets %v, a call: HTTP %d %s; want echo's answer", block, r.status, r.body)
		}
		for _, req := range up.Received() {
			if !bytes.Contains(req.Body, []byte(upstreamtest.ToolsListID)) {
				continue
			}
			switch {
			case bytes.Contains(req.Body, []byte("x-own")), bytes.Contains(req.Body, []byte("progressToken")):
				t.Errorf("block_secrets %v: the gateway's tools/list repeated the call's own _meta: %s", block, req.Body)
			case !bytes.Contains(req.Body, []byte("io.modelcontextprotocol/clientInfo")):
				t.Errorf("block_secrets %v: the gateway's tools/list lacks the client's info: %s", block, req.Body)
			}
		}
	}
}

// TestBlockSecretsInEventFields: under block_secrets, an event whose id
// or type holds a credential cuts the stream (the client keeps an
// event's id, and sends it back): the credential never reaches the
// client; comments go on empty. Without block_secrets, they go on as the
// server wrote them.
func TestBlockSecretsInEventFields(t *testing.T) {
	token := "ghp" + "_" + "Zq8rT2mLx0Vb7Nc4Hd9Kf1Jw6Gs3Ye5Pa8Ui"
	for _, field := range []string{"id", "event"} {
		for _, block := range []bool{true, false} {
			up := upstreamtest.Raw(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				var request struct {
					ID json.RawMessage `json:"id"`
				}
				body, _ := io.ReadAll(r.Body)
				_ = json.Unmarshal(body, &request)
				w.Header().Set("Content-Type", "text/event-stream")
				fmt.Fprintf(w, ": note %s\n%s: %s\ndata: {\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":{}}\n\n", token, field, token, request.ID)
			}))
			cfg := libraryConfig(t)
			cfg.BlockSecrets = block
			gw := serveGateway(t, cfg, up.URL)
			// (Cut, the stream ends with an error the client reads to.)
			got, err := postQuietly(gw.URL, http.Header{mcphttp.HeaderProtocolVersion: {"2025-06-18"}}, `{"jsonrpc":"2.0","id":1,"method":"ping"}`)
			if leaked := strings.Contains(got, token); leaked == block || !block && err != nil {
				t.Errorf("an event's %s holding a token, block_secrets %v: the client read %q (%v)", field, block, got, err)
			}
		}
	}
}
