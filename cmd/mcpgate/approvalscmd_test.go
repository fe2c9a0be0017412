package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/caddymodule/adminapi"
	"github.com/mcpgate/mcpgate/internal/caddytest"
	"github.com/mcpgate/mcpgate/internal/testport"
)

// TestApprovalsCommand holds a call that needs approval in front of the
// demo tracker, finds it with `mcpgate approvals list` and approves it
// with `mcpgate approvals approve`.
func TestApprovalsCommand(t *testing.T) {
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(hook.Close)
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	adminOption, adminAddr, _ := caddytest.AdminSocket(t)
	gatewayPort, demoPort := testport.Free(t), testport.Free(t)
	caddytest.Start(t, caddytest.GlobalOptions(t, adminOption)+fmt.Sprintf(`
:%d {
	bind 127.0.0.1
	mcp_policy {
		server tracker
		permissions {
			read_only allow
			write needs_approval
			destructive block
		}
		approval {
			webhook %s
			webhook_secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
			decision_secret whsec_ZGVjaXNpb25zIGFyZSBzaWduZWQgd2l0aCB0aGlzIGtleQ==
			callback_url http://127.0.0.1:%d/approvals
		}
	}
	reverse_proxy 127.0.0.1:%d
}
:%d {
	bind 127.0.0.1
	mcp_demo
}
`, gatewayPort, hook.URL, gatewayPort, demoPort, demoPort))
	caddytest.WaitForListener(t, gatewayPort)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	client := mcp.NewClient(&mcp.Implementation{Name: "approvals-test", Version: "1"}, nil)
	session, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: fmt.Sprintf("http://127.0.0.1:%d/", gatewayPort)}, nil)
	if err != nil {
		t.Fatalf("connecting through the gateway: %v", err)
	}
	t.Cleanup(func() { session.Close() })
	done := make(chan *mcp.CallToolResult, 1)
	go func() {
		res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "create_issue", Arguments: map[string]any{"title": "Approve me"}})
		if err != nil {
			t.Errorf("held call: %v", err)
		}
		done <- res
	}()

	id := ""
	idPattern := regexp.MustCompile(`apr_[a-z2-7]{26}`)
	for deadline := time.Now().Add(10 * time.Second); id == ""; time.Sleep(50 * time.Millisecond) {
		var out bytes.Buffer
		if _, err := listApprovalsCommand(&out, adminAddr, false); err != nil {
			t.Fatalf("approvals list: %v", err)
		}
		if strings.Contains(out.String(), "create_issue") && strings.Contains(out.String(), `"Approve me"`) {
			id = idPattern.FindString(out.String())
			if !strings.Contains(out.String(), "APPROVERS") {
				t.Errorf("approvals list shows no approvers:\n%s", out.String())
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("approvals list never showed the held call:\n%s", out.String())
		}
	}

	var out bytes.Buffer
	if _, err := decideApprovalCommand(&out, adminAddr, id, "approve", adminapi.Decision{Approver: "ops"}); err != nil {
		t.Fatalf("approvals approve: %v", err)
	}
	if !strings.Contains(out.String(), id+" is approved") {
		t.Errorf("approvals approve printed %q", out.String())
	}
	if _, err := decideApprovalCommand(&out, adminAddr, id, "deny", adminapi.Decision{}); err == nil || !strings.Contains(err.Error(), "409") {
		t.Errorf("a second decision: got %v, want a 409 error", err)
	}
	select {
	case res := <-done:
		if res == nil || res.IsError {
			t.Errorf("approved call answered %+v, want the tracker's result", res)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the approved call never returned")
	}
}
