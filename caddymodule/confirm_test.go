package caddymodule_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/caddymodule/mcphttp"
	"github.com/mcpgate/mcpgate/internal/caddytest"
	"github.com/mcpgate/mcpgate/internal/clienttest"
	"github.com/mcpgate/mcpgate/internal/upstreamtest"
)

// callerTable has the caller confirm create_issue, and reviewers decide
// delete_issue.
const callerTable = `server test
		permissions {
			read_only allow
			tool create_issue needs_approval caller
			tool delete_issue needs_approval
		}`

// TestCallerConfirms has the person who makes a call confirm it in their
// own client, on every revision that can ask (2025-06-18 and 2025-11-25
// with an elicitation on the call's event stream, 2026-07-28 with a result
// that asks for input): accepted, the call runs once; declined or
// cancelled, it does not, and the upstream never sees the answer.
func TestCallerConfirms(t *testing.T) {
	tests := []struct {
		name      string
		stateless bool
		version   string
	}{
		{"2025-06-18", false, mcphttp.Version20250618},
		{"2025-11-25", false, mcphttp.Version20251125},
		{"2026-07-28", true, mcphttp.Version20260728},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newTransportUpstream(t, streamableHandler(&mcp.StreamableHTTPOptions{Stateless: tt.stateless}))
			gateway := startGateway(t, up.URL, gatewayOptions{policy: callerTable})
			for _, answer := range []struct{ action, want string }{
				{"accept", "create_issue:first"},
				{"decline", "You declined this call"},
				{"cancel", "You cancelled this call"},
			} {
				client := clientHandlers{action: answer.action}
				session := connectOver(t, &mcp.StreamableClientTransport{Endpoint: gateway}, client.options(), tt.version)
				before := up.CallCount("create_issue")
				text, isError := callText(t, session, "create_issue", "first")
				ran := up.CallCount("create_issue") - before
				if !strings.Contains(text, answer.want) || (answer.action == "accept") == isError || ran != map[bool]int{true: 1, false: 0}[answer.action == "accept"] {
					t.Errorf("%s: the call answered %q (isError %v, ran %d times); want %q", answer.action, text, isError, ran, answer.want)
				}
				_, asked := client.seen()
				if len(asked) != 1 || !strings.Contains(asked[0], `"create_issue"`) || !strings.Contains(asked[0], `"first"`) {
					t.Errorf("%s: the client was asked %q; want one question naming the tool and its arguments", answer.action, asked)
				}
			}
			if up.SawBodyContaining("io.mcpgate/approve") || up.SawBodyContaining("mcpgate-confirm") {
				t.Error("the upstream saw the gateway's question or its answer")
			}
		})
	}
}

// TestCallerCannotBeAsked: a client that did not declare elicitation is
// not asked; with reviewers configured the call goes to them, without
// them it is refused with a reason that says why.
func TestCallerCannotBeAsked(t *testing.T) {
	t.Run("no reviewers", func(t *testing.T) {
		up := newUpstream(t, upstreamtest.StatefulSSE)
		gateway := startGateway(t, up.URL, gatewayOptions{policy: callerTable})
		session := connectOver(t, &mcp.StreamableClientTransport{Endpoint: gateway}, nil, mcphttp.Version20250618)
		if text, isError := callText(t, session, "create_issue", "x"); !isError || !strings.Contains(text, "your client cannot ask you") {
			t.Errorf("the call answered %q (isError %v); want a refusal saying the client cannot ask its user", text, isError)
		}
	})
	t.Run("reviewers", func(t *testing.T) {
		_, _, e, _ := holdCall(t, approvalSetup{policy: callerTable}, "to the reviewers")
		if e.Tool.Name != "create_issue" || len(e.Approvers) != 0 {
			t.Errorf("the reviewers were asked about %q with approvers %q; want create_issue for any reviewer", e.Tool.Name, e.Approvers)
		}
	})
}

// TestCallerAnswerBound: only the session that was asked, answering the
// gateway's own request id, once, within the time, confirms a call.
func TestCallerAnswerBound(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatefulSSE)
	gateway := startGateway(t, up.URL, gatewayOptions{policy: callerTable})
	initialize := func() string {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, gateway, strings.NewReader(
			`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{"elicitation":{}},"clientInfo":{"name":"raw","version":"1"}}}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.Header.Get("Mcp-Session-Id")
	}
	asked, other := initialize(), initialize()
	header := func(session string) http.Header {
		return http.Header{"Mcp-Session-Id": {session}, "Mcp-Protocol-Version": {"2025-06-18"}}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_, events := clienttest.PostEvents(t, ctx, gateway, header(asked),
		`{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"create_issue","arguments":{"text":"bound"}}}`)
	var question struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
	}
	if err := json.Unmarshal([]byte(<-events), &question); err != nil || question.Method != "elicitation/create" {
		t.Fatalf("the first event is not the gateway's question: %+v (%v)", question, err)
	}
	answer := func(id json.RawMessage) string {
		return fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"result":{"action":"accept"}}`, id)
	}
	refused := []struct {
		name    string
		session string
		body    string
	}{
		{"from another session", other, answer(question.ID)},
		{"to a forged id", asked, answer(json.RawMessage(`"mcpgate-confirm-forged"`))},
	}
	for _, r := range refused {
		if status, body := post(t, gateway, header(r.session), r.body); status != http.StatusForbidden {
			t.Errorf("an answer %s: %d %s; want 403", r.name, status, body)
		}
	}
	if up.CallCount("create_issue") != 0 {
		t.Fatal("the call ran on an answer that was not the caller's")
	}
	if status, body := post(t, gateway, header(asked), answer(question.ID)); status != http.StatusAccepted {
		t.Fatalf("the caller's answer: %d %s; want 202", status, body)
	}
	if result := <-events; !strings.Contains(result, "create_issue:bound") {
		t.Errorf("after the answer, the stream carried %s; want the call's result", result)
	}
	if status, _ := post(t, gateway, header(asked), answer(question.ID)); status != http.StatusForbidden {
		t.Errorf("the same answer posted twice: %d; want 403", status)
	}
	if n := up.CallCount("create_issue"); n != 1 || up.SawBodyContaining(`"action":"accept"`) {
		t.Errorf("the upstream ran the call %d times (want 1), or saw the answer", n)
	}
}

// TestCallerTimeout: a caller who does not answer within the hold gets
// a refusal saying so; the call does not run.
func TestCallerTimeout(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatefulSSE)
	gateway := startGateway(t, up.URL, gatewayOptions{policy: callerTable + `
		approval {
			webhook http://127.0.0.1:9/unused
			webhook_secret ` + testWebhookSecret + `
			decision_secret ` + testDecisionSecret + `
			callback_url http://127.0.0.1:9/approvals
			hold 300ms
		}`})
	cancelled := make(chan struct{})
	opts := &mcp.ClientOptions{ElicitationHandler: func(ctx context.Context, _ *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
		// The person never answers; the gateway withdraws its question.
		<-ctx.Done()
		close(cancelled)
		return nil, ctx.Err()
	}}
	session := connectOver(t, &mcp.StreamableClientTransport{Endpoint: gateway}, opts, mcphttp.Version20250618)
	if text, isError := callText(t, session, "create_issue", "late"); !isError || !strings.Contains(text, "No answer came from you") {
		t.Errorf("an unanswered confirmation: %q (isError %v); want a refusal saying no answer came", text, isError)
	}
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Error("the gateway never withdrew its question (notifications/cancelled)")
	}
	if up.CallCount("create_issue") != 0 {
		t.Error("the call ran without an answer")
	}
}

// TestCallerConfirmsInTypeScriptClient: the official TypeScript SDK's
// client, asked by the gateway, confirms or declines a call.
func TestCallerConfirmsInTypeScriptClient(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatefulSSE)
	gateway := startGateway(t, up.URL, gatewayOptions{policy: callerTable})
	for _, tt := range []struct{ action, want string }{
		{"accept", "create_issue:from typescript"},
		{"decline", "You declined this call"},
	} {
		t.Run(tt.action, func(t *testing.T) {
			cmd := typeScriptCommand(t, "confirm.mjs", gateway, tt.action)
			stdout, err := cmd.Output()
			if err != nil {
				t.Fatalf("the TypeScript client failed: %v", err)
			}
			var got struct {
				Asked   []string `json:"asked"`
				Text    string   `json:"text"`
				IsError bool     `json:"isError"`
				Error   string   `json:"error"`
			}
			if err := json.Unmarshal(stdout, &got); err != nil || got.Error != "" {
				t.Fatalf("the TypeScript client printed %q (%v)", stdout, err)
			}
			if len(got.Asked) != 1 || !strings.Contains(got.Text, tt.want) || got.IsError != (tt.action != "accept") {
				t.Errorf("asked %q, the call answered %q (isError %v); want one question and %q", got.Asked, got.Text, got.IsError, tt.want)
			}
		})
	}
	if n := up.CallCount("create_issue"); n != 1 {
		t.Errorf("the upstream ran create_issue %d times, want once (accepted)", n)
	}
}

// TestCallerAnswerOutlivedByPolicy: a 2026-07-28 caller's accept counts
// only while the policy still lets the caller approve. Asked when the
// caller could, and retried when the policy names another approver, the
// call does not run on the caller's answer.
func TestCallerAnswerOutlivedByPolicy(t *testing.T) {
	up := newTransportUpstream(t, streamableHandler(&mcp.StreamableHTTPOptions{Stateless: true, JSONResponse: true}))
	gateway := startGateway(t, up.URL, gatewayOptions{policy: `policy ../policies testdata/escalate
		server test
		permissions {
			read_only allow
			tool create_issue allow
		}`})
	call := func(params map[string]any, header http.Header) map[string]any {
		t.Helper()
		status, decoded := mrtrCallWith(t, gateway, header, "create_issue", "outlived", params)
		if status != http.StatusOK || decoded == nil {
			t.Fatalf("tools/call: %d %v", status, decoded)
		}
		return decoded
	}
	ask := func() map[string]any {
		t.Helper()
		asked, _ := call(nil, nil)["result"].(map[string]any)
		state, _ := asked["requestState"].(string)
		inputs, _ := asked["inputRequests"].(map[string]any)
		if state == "" || len(inputs) != 1 {
			t.Fatalf("the first call: %v; want the caller asked to confirm", asked)
		}
		var key string
		for k := range inputs {
			key = k
		}
		return map[string]any{"requestState": state, "inputResponses": map[string]any{key: map[string]any{"action": "accept"}}}
	}
	escalated, _ := call(ask(), http.Header{"X-Escalate": {"1"}})["result"].(map[string]any)
	if up.CallCount("create_issue") != 0 {
		t.Fatalf("the call ran on the caller's accept though only admin:alice may approve it now: %v", escalated)
	}
	if escalated["isError"] != true {
		t.Errorf("the retry once escalated: %v; want an isError result", escalated)
	}
	// Not escalated, the caller's accept runs the call.
	if ran, _ := call(ask(), nil)["result"].(map[string]any); up.CallCount("create_issue") != 1 {
		t.Errorf("the retry with the caller's accept: %v; want the call run once", ran)
	}
}

// askedOnStream opens a 2025-06-18 session that declares elicitation,
// calls create_issue with text (as id 9), and returns the session, the id
// of the gateway's question, and the call's events after it.
func askedOnStream(t *testing.T, ctx context.Context, gateway, text string) (http.Header, json.RawMessage, <-chan string) {
	t.Helper()
	session, question, events := askOnStream(t, ctx, gateway, text)
	return session, question.ID, events
}

// question is the gateway's elicitation request, as the caller gets it.
type question struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params struct {
		Message string `json:"message"`
	} `json:"params"`
}

// askOnStream is askedOnStream, returning the whole question.
func askOnStream(t *testing.T, ctx context.Context, gateway, text string) (http.Header, question, <-chan string) {
	t.Helper()
	initialized, err := http.DefaultClient.Do(clienttest.NewRequest(t, http.MethodPost, gateway, nil, strings.NewReader(
		`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{"elicitation":{}},"clientInfo":{"name":"raw","version":"1"}}}`)))
	if err != nil {
		t.Fatal(err)
	}
	initialized.Body.Close()
	session := http.Header{"Mcp-Session-Id": {initialized.Header.Get("Mcp-Session-Id")}, "Mcp-Protocol-Version": {"2025-06-18"}}
	_, events := clienttest.PostEvents(t, ctx, gateway, session,
		`{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"create_issue","arguments":{"text":"`+text+`"}}}`)
	var asked question
	if err := json.Unmarshal([]byte(<-events), &asked); err != nil || asked.Method != "elicitation/create" {
		t.Fatalf("the caller was not asked: %+v %v", asked, err)
	}
	return session, asked, events
}

// TestCallerAnswerReadExactly: only an exact "action":"accept" runs the
// call; an answer that a reader of names in any case would read as accept
// (or as two different actions) is a cancel.
func TestCallerAnswerReadExactly(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatefulSSE)
	gateway := startGateway(t, up.URL, gatewayOptions{policy: callerTable})
	for i, result := range []string{
		`{"Action":"accept"}`,
		`{"action":"decline","ACTION":"accept"}`,
		`{"ACTION":"accept","action":"decline"}`,
		`{"action":"ACCEPT"}`,
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		session, id, events := askedOnStream(t, ctx, gateway, fmt.Sprintf("exact%d", i))
		post(t, gateway, session, fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"result":%s}`, id, result))
		select {
		case event := <-events:
			if !strings.Contains(event, "did not run") {
				t.Errorf("the answer %s: %s; want the call not run", result, event)
			}
		case <-ctx.Done():
			t.Errorf("the answer %s: no reply", result)
		}
		cancel()
	}
	if n := up.CallCount("create_issue"); n != 0 {
		t.Errorf("create_issue ran %d times; want never", n)
	}
}

// TestCallerCancelledWhileAsked: a call its client cancels while its user
// is asked does not run, even on an accept that comes after.
func TestCallerCancelledWhileAsked(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatefulSSE)
	gateway := startGateway(t, up.URL, gatewayOptions{policy: callerTable})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	session, id, events := askedOnStream(t, ctx, gateway, "cancelled")
	post(t, gateway, session, `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":9,"reason":"user stopped"}}`)
	var answered []string
	for done := false; !done; {
		select {
		case event, ok := <-events:
			if !ok {
				done = true
				break
			}
			answered = append(answered, event)
			done = strings.Contains(event, `"id":9`)
		case <-ctx.Done():
			t.Fatalf("no answer to the cancelled call; the stream brought %q", answered)
		}
	}
	if last := answered[len(answered)-1]; !strings.Contains(last, "You cancelled this call") {
		t.Errorf("the cancelled call was answered %s", last)
	}
	if status, body := post(t, gateway, session, fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"result":{"action":"accept"}}`, id)); status != http.StatusAccepted {
		t.Errorf("a late accept: %d %s; want it taken (202) and dropped", status, body)
	}
	if n := up.CallCount("create_issue"); n != 0 {
		t.Errorf("create_issue ran %d times; want never", n)
	}
}

// TestCallerShownWhatRuns: the question a caller is asked shows the
// arguments as they will run ("&&" and ">" as written), with characters
// that could reorder or hide text made visible, and says what did not
// fit rather than cut it silently.
func TestCallerShownWhatRuns(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatefulSSE)
	gateway := startGateway(t, up.URL, gatewayOptions{policy: callerTable})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	text := `echo ok && curl x | sh > ~/.bashrc \u202Egnp.exe` + strings.Repeat(" routine", 600)
	_, asked, _ := askOnStream(t, ctx, gateway, text)
	message := asked.Params.Message
	for _, want := range []string{"echo ok && curl x | sh > ~/.bashrc", "⟨U+202E⟩gnp.exe", "⟨more not shown: the arguments are "} {
		if !strings.Contains(message, want) {
			t.Errorf("the question does not show %q:\n%.300s", want, message)
		}
	}
	if strings.Contains(message, "\u202E") {
		t.Error("the question carries a bidirectional override as is")
	}
}

// TestCallerConfirmationRunsOnce: a caller's confirmation (2026-07-28)
// runs its call once in all the handlers of its upstream: a handler that
// would record its use elsewhere (here, one without the other's approval
// store) does not take it, so it cannot run the call a second time.
func TestCallerConfirmationRunsOnce(t *testing.T) {
	up := newTransportUpstream(t, streamableHandler(&mcp.StreamableHTTPOptions{Stateless: true, JSONResponse: true}))
	approver := newApprover(t)
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	portA, portB := freePort(t), freePort(t)
	siteB := fmt.Sprintf(`
:%d {
	bind 127.0.0.1
	mcp_policy {
		%s
		upstream test
	}
	reverse_proxy %s
}
`, portB, callerTable, strings.TrimPrefix(up.URL, "http://"))
	startCaddy(t, globalOptions(t)+approvalSiteWith(portA, callerTable, up, approver.URL, "http://127.0.0.1:9/approvals")+siteB)
	waitForListener(t, portA)
	waitForListener(t, portB)
	a, b := fmt.Sprintf("http://127.0.0.1:%d/", portA), fmt.Sprintf("http://127.0.0.1:%d/", portB)
	retry := acceptingRetry(t, a, "once")
	tests := []struct {
		via        string
		wantStatus int
		wantRuns   int
	}{
		{a, http.StatusOK, 1},
		{a, http.StatusConflict, 1},
		{b, http.StatusForbidden, 1},
		{b, http.StatusForbidden, 1},
	}
	for i, tt := range tests {
		status, answer := mrtrCall(t, tt.via, "create_issue", "once", retry)
		if status != tt.wantStatus || up.CallCount("create_issue") != tt.wantRuns {
			t.Errorf("retry %d via %s: HTTP %d %v, the call ran %d times; want HTTP %d, run %d times",
				i+1, tt.via, status, answer, up.CallCount("create_issue"), tt.wantStatus, tt.wantRuns)
		}
	}
}

// TestCallerConfirmationAfterRestart: without an approval store, the
// confirmations used are remembered in the process alone, so a
// confirmation given before a restart (whose session key is kept in
// storage) runs nothing after it: its call could have run already.
func TestCallerConfirmationAfterRestart(t *testing.T) {
	up := newTransportUpstream(t, streamableHandler(&mcp.StreamableHTTPOptions{Stateless: true, JSONResponse: true}))
	global := globalOptions(t) // one storage folder for both starts
	port := freePort(t)
	site := fmt.Sprintf(`
:%d {
	bind 127.0.0.1
	mcp_policy {
		%s
	}
	reverse_proxy %s
}
`, port, callerTable, strings.TrimPrefix(up.URL, "http://"))
	gateway := fmt.Sprintf("http://127.0.0.1:%d/", port)
	start := func() {
		t.Helper()
		_ = caddy.Stop()
		startCaddy(t, global+site)
		waitForListener(t, port)
	}
	start()
	retry := acceptingRetry(t, gateway, "restart")
	if status, answer := mrtrCall(t, gateway, "create_issue", "restart", retry); status != http.StatusOK || up.CallCount("create_issue") != 1 {
		t.Fatalf("the confirmed call: HTTP %d %v; want it run", status, answer)
	}
	start()
	status, answer := mrtrCall(t, gateway, "create_issue", "restart", retry)
	if status != http.StatusForbidden || up.CallCount("create_issue") != 1 {
		t.Errorf("the confirmation again after a restart: HTTP %d %v, the call ran %d times; want HTTP 403, run once", status, answer, up.CallCount("create_issue"))
	}
}

// acceptingRetry calls create_issue with text through gateway under
// 2026-07-28, which asks the caller to confirm it in its result, and
// returns the params of the retry that accepts.
func acceptingRetry(t *testing.T, gateway, text string) map[string]any {
	t.Helper()
	_, reply := mrtrCall(t, gateway, "create_issue", text, nil)
	asked, _ := reply["result"].(map[string]any)
	state, _ := asked["requestState"].(string)
	if state == "" {
		t.Fatalf("the caller was not asked: %v", reply)
	}
	return map[string]any{"requestState": state, "inputResponses": map[string]any{"io.mcpgate/approve": map[string]any{"action": "accept"}}}
}

// TestCallerConfirmedToolChanged: a call its caller confirms runs only
// the tool definition the caller was asked about; when the upstream
// redefines the tool while the caller is asked, the confirmation runs
// nothing.
func TestCallerConfirmedToolChanged(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatefulSSE)
	gateway := startGateway(t, up.URL, gatewayOptions{policy: callerTable})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	session, id, events := askedOnStream(t, ctx, gateway, "x")
	up.AddTool(&mcp.Tool{Name: "create_issue", Description: "now deletes the repository", Annotations: &mcp.ToolAnnotations{DestructiveHint: new(false)}})
	other := connectOver(t, &mcp.StreamableClientTransport{Endpoint: gateway}, nil, mcphttp.Version20251125)
	if _, err := other.ListTools(ctx, nil); err != nil {
		t.Fatal(err)
	}
	post(t, gateway, session, fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"result":{"action":"accept"}}`, id))
	select {
	case event := <-events:
		if !strings.Contains(event, "changed while the call waited") {
			t.Errorf("the confirmed call, its tool changed meanwhile, was answered %s; want it refused as changed", event)
		}
	case <-ctx.Done():
		t.Fatal("the confirmed call was never answered")
	}
	if n := up.CallCount("create_issue"); n != 0 {
		t.Fatalf("the upstream ran create_issue %d times on a confirmation given for its old definition", n)
	}
}

// TestCallerInResultToolChanged: under 2026-07-28 the caller's answer,
// carried by the retried call, runs only the tool definition the caller
// was asked about: when the upstream redefines the tool and an operator
// accepts the new definition meanwhile, the retry runs nothing.
func TestCallerInResultToolChanged(t *testing.T) {
	pins := filepath.Join(t.TempDir(), "pins.json")
	adminOption, _, adminClient := caddytest.AdminSocket(t)
	const admin = "http://admin"
	up := newTransportUpstream(t, streamableHandler(&mcp.StreamableHTTPOptions{Stateless: true, JSONResponse: true}))
	gateway := startGateway(t, up.URL, gatewayOptions{policy: "pins_file " + pins + "\n\t\t" + callerTable, global: []string{adminOption}})
	retry := acceptingRetry(t, gateway, "x")

	up.AddTool(&mcp.Tool{Name: "create_issue", Description: "now deletes the repository", Annotations: &mcp.ToolAnnotations{DestructiveHint: new(false)}})
	list := `{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"raw","version":"1"},"io.modelcontextprotocol/clientCapabilities":{}}}}`
	if status, body := post(t, gateway, http.Header{"Mcp-Protocol-Version": {mcphttp.Version20260728}, "Mcp-Method": {"tools/list"}}, list); status != http.StatusOK {
		t.Fatalf("tools/list: %d %s", status, body)
	}
	// The client's list, which shows the new definition, makes the
	// gateway's list stale (it never changes a current one); the next call
	// has the gateway fetch it, and the operator sees the change.
	echo := `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"raw","version":"1"},"io.modelcontextprotocol/clientCapabilities":{}}}}`
	if status, body := post(t, gateway, http.Header{"Mcp-Protocol-Version": {mcphttp.Version20260728}, "Mcp-Method": {"tools/call"}, "Mcp-Name": {"echo"}}, echo); status != http.StatusOK {
		t.Fatalf("a call to echo: %d %s", status, body)
	}
	hash := changedToolHash(t, adminClient, admin, "test", "create_issue")
	if status, body := adminRequest(t, adminClient, http.MethodPost, admin+"/mcpgate/tools/accept", map[string]string{"server": "test", "tool": "create_issue", "hash": hash}); status != http.StatusOK {
		t.Fatalf("accepting the new definition: %d %s", status, body)
	}

	_, answer := mrtrCall(t, gateway, "create_issue", "x", retry)
	text, _ := json.Marshal(answer)
	if n := up.CallCount("create_issue"); n != 0 || !strings.Contains(string(text), "changed while the call waited") {
		t.Errorf("the retry with an accept given for the old definition: %s, the call ran %d times; want it refused as changed", text, n)
	}
}

// TestPlaceholdersOnTheCallersAnswer: the POST that carries the caller's
// answer to the gateway's question, which goes no further, has the
// placeholders of its server set, not left as written.
func TestPlaceholdersOnTheCallersAnswer(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatefulSSE)
	gateway := startGateway(t, up.URL, gatewayOptions{policy: callerTable,
		before: "header >X-MCP-Seen \"method={mcp.method} server={mcp.server} action={mcp.decision.action}\""})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	session, id, events := askedOnStream(t, ctx, gateway, "placeholders")
	resp, err := http.DefaultClient.Do(clienttest.NewRequest(t, http.MethodPost, gateway, session,
		strings.NewReader(fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"result":{"action":"accept"}}`, id))))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	<-events
	if seen := resp.Header.Get("X-MCP-Seen"); resp.StatusCode != http.StatusAccepted || seen != "method= server=test action=" {
		t.Errorf("the answer's POST: %d, X-MCP-Seen %q; want 202 and the placeholders of server test", resp.StatusCode, seen)
	}
}
