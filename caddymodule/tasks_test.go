package caddymodule_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/mcpgate/mcpgate/internal/testwait"
)

// TestTasksBoundToTheirCaller runs a tool as a task (MCP 2025-11-25)
// through the gateway, in front of a stateless TypeScript SDK server whose
// tasks any request reaches by id: the caller whose call started a task
// follows it to its result; another caller, whom the policy blocks from
// the tool, reaches neither that task nor the list of tasks, and no
// request for a task the gateway did not see started reaches the
// upstream.
func TestTasksBoundToTheirCaller(t *testing.T) {
	upstream := typeScriptServerScript(t, "tasks.mjs")
	rules := blockRule(t, `"only alice reads reports" if {
	input.tool.name == "report"
	input.user.id != "alice"
}`)
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	gateway := startGateway(t, upstream, gatewayOptions{
		policy: "policy ../policies " + rules + "\n\t\tserver test\n\t\tidentity caddy\n\t\tpermissions {\n\t\t\tread_only allow\n\t\t}",
		before: fmt.Sprintf("basic_auth {\n\t\talice %s\n\t\tbob %s\n\t}", hash, hash),
	})
	as := func(user, body string) (int, string) {
		t.Helper()
		status, reply := post(t, gateway, http.Header{
			"Authorization":        {"Basic " + base64.StdEncoding.EncodeToString([]byte(user+":pw"))},
			"Mcp-Protocol-Version": {"2025-11-25"},
		}, body)
		return status, string(reply)
	}
	taskRequest := func(id int, method, taskID string) string {
		return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":%q,"params":{"taskId":%q}}`, id, method, taskID)
	}

	if _, reply := as("bob", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"report","arguments":{"who":"dave"},"task":{"ttl":60000}}}`); !strings.Contains(reply, "only alice reads reports") {
		t.Fatalf("bob's call: %s; want it blocked", reply)
	}
	_, reply := as("alice", `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"report","arguments":{"who":"dave"},"task":{"ttl":60000}}}`)
	taskID := createdTaskID(t, reply)

	for _, method := range []string{"tasks/get", "tasks/result", "tasks/cancel"} {
		// (Answering the request's id: a client fails that request
		// alone, and keeps its session.)
		if status, reply := as("bob", taskRequest(3, method, taskID)); status != http.StatusForbidden ||
			!strings.Contains(reply, "was not started by a call of this caller") || !strings.Contains(reply, `"id":3`) {
			t.Errorf("bob's %s of alice's task: %d %s; want it refused, answering id 3", method, status, reply)
		}
	}
	if _, reply := as("bob", `{"jsonrpc":"2.0","id":4,"method":"tasks/list"}`); !strings.Contains(reply, "not allowed") || strings.Contains(reply, taskID) {
		t.Errorf("bob's tasks/list: %s; want it refused", reply)
	}
	if status, reply := as("alice", taskRequest(5, "tasks/get", "no-such-task")); status != http.StatusForbidden {
		t.Errorf("alice's tasks/get of a task she did not start: %d %s; want it refused", status, reply)
	}
	testwait.Until(t, 10*time.Second, func() string {
		if _, reply := as("alice", taskRequest(6, "tasks/get", taskID)); !strings.Contains(reply, `"completed"`) {
			return "alice's task is not completed: " + reply
		}
		return ""
	})
	if _, reply := as("alice", taskRequest(7, "tasks/result", taskID)); !strings.Contains(reply, "report on dave") {
		t.Errorf("alice's tasks/result: %s; want her call's result", reply)
	}
}

// TestTasksBoundToTheirServer: two server names guarding one stateless
// upstream apart (each its own policy) keep a caller's tasks apart too,
// as they keep its sessions: a task one server name's policy let start is
// not followed under another's, whose policy would have blocked its call
// (a task request is decided by its tool, without the call's arguments).
func TestTasksBoundToTheirServer(t *testing.T) {
	upstream := typeScriptServerScript(t, "tasks.mjs")
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	rules := blockRule(t, `"s2 does not report on dave" if {
	input.tool.name == "report"
	input.tool.arguments.who == "dave"
}`)
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	site := func(port int, policy string) string {
		return fmt.Sprintf(`
:%d {
	bind 127.0.0.1
	basic_auth {
		alice %s
	}
	mcp_policy {
		%s
		upstream u
		identity caddy {
			realm staff
		}
		permissions {
			read_only allow
		}
	}
	reverse_proxy %s
}
`, port, hash, policy, strings.TrimPrefix(upstream, "http://"))
	}
	s1, s2 := freePort(t), freePort(t)
	startCaddy(t, globalOptions(t)+site(s1, "policy ../policies\n\t\tserver s1")+site(s2, "policy ../policies "+rules+"\n\t\tserver s2"))
	waitForListener(t, s1)
	waitForListener(t, s2)
	at := func(port int, body string) (int, string) {
		t.Helper()
		status, reply := post(t, fmt.Sprintf("http://127.0.0.1:%d/mcp", port), http.Header{
			"Authorization":        {"Basic " + base64.StdEncoding.EncodeToString([]byte("alice:pw"))},
			"Mcp-Protocol-Version": {"2025-11-25"},
		}, body)
		return status, string(reply)
	}
	call := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"report","arguments":{"who":"dave"},"task":{"ttl":60000}}}`
	if _, reply := at(s2, call); !strings.Contains(reply, "s2 does not report on dave") {
		t.Fatalf("alice's call on s2: %s; want it blocked", reply)
	}
	_, reply := at(s1, call)
	taskID := createdTaskID(t, reply)
	testwait.Until(t, 10*time.Second, func() string {
		if _, reply := at(s1, fmt.Sprintf(`{"jsonrpc":"2.0","id":2,"method":"tasks/get","params":{"taskId":%q}}`, taskID)); !strings.Contains(reply, `"completed"`) {
			return "the task is not completed: " + reply
		}
		return ""
	})
	for _, method := range []string{"tasks/get", "tasks/result", "tasks/cancel"} {
		status, reply := at(s2, fmt.Sprintf(`{"jsonrpc":"2.0","id":3,"method":%q,"params":{"taskId":%q}}`, method, taskID))
		if status != http.StatusForbidden || !strings.Contains(reply, "was not started by a call of this caller") {
			t.Errorf("alice's %s on s2 of the task started on s1: %d %s; want it refused", method, status, reply)
		}
	}
	if _, reply := at(s1, fmt.Sprintf(`{"jsonrpc":"2.0","id":4,"method":"tasks/result","params":{"taskId":%q}}`, taskID)); !strings.Contains(reply, "report on dave") {
		t.Errorf("alice's tasks/result on s1: %s; want her call's result", reply)
	}
}

// TestTasksDecidedAsTheirTool: anonymous callers of a stateless upstream
// share one session, so the gateway cannot tell their tasks apart; a
// request following a task is decided with the tool whose call started
// it, so a caller the policy blocks from the tool (by a header) reaches
// neither its calls nor another's task.
func TestTasksDecidedAsTheirTool(t *testing.T) {
	upstream := typeScriptServerScript(t, "tasks.mjs")
	rules := blockRule(t, `"only the reports team reads reports" if {
	input.tool.name == "report"
	object.get(input.request.headers, "x-team", "") != "reports"
}`)
	gateway := startGateway(t, upstream, gatewayOptions{
		policy: "policy ../policies " + rules + "\n\t\tserver test\n\t\tpermissions {\n\t\t\tread_only allow\n\t\t}",
	})
	from := func(team, body string) string {
		t.Helper()
		_, reply := post(t, gateway, http.Header{"X-Team": {team}, "Mcp-Protocol-Version": {"2025-11-25"}}, body)
		return string(reply)
	}
	taskID := createdTaskID(t, from("reports", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"report","arguments":{"who":"dave"},"task":{"ttl":60000}}}`))
	for _, method := range []string{"tasks/get", "tasks/result", "tasks/cancel"} {
		body := fmt.Sprintf(`{"jsonrpc":"2.0","id":2,"method":%q,"params":{"taskId":%q}}`, method, taskID)
		if reply := from("sales", body); !strings.Contains(reply, "only the reports team reads reports") {
			t.Errorf("another team's %s of the task: %s; want it blocked as the tool is", method, reply)
		}
	}
	testwait.Until(t, 10*time.Second, func() string {
		if reply := from("reports", fmt.Sprintf(`{"jsonrpc":"2.0","id":3,"method":"tasks/result","params":{"taskId":%q}}`, taskID)); !strings.Contains(reply, "report on dave") {
			return "the reports team's tasks/result: " + reply
		}
		return ""
	})
}

// blockRule writes a policy file of package mcp holding one block rule,
// `block contains <rule>`, and returns its folder.
func blockRule(t *testing.T, rule string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rule.rego"), []byte("package mcp\n\nimport rego.v1\n\nblock contains "+rule+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// createdTaskID returns the id of the task a tools/call's reply created,
// failing the test when it created none.
func createdTaskID(t *testing.T, reply string) string {
	t.Helper()
	var created struct {
		Result struct {
			Task struct {
				TaskID string `json:"taskId"`
			} `json:"task"`
		} `json:"result"`
	}
	if err := json.Unmarshal([]byte(reply), &created); err != nil || created.Result.Task.TaskID == "" {
		t.Fatalf("the call as a task: %s; want a task created", reply)
	}
	return created.Result.Task.TaskID
}
