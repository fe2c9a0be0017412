package caddymodule_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/upstreamtest"
)

// TestToolOverridesThroughCaddy: tool_override in a Caddyfile renames
// and describes a tool as clients see it, the call of its new name runs
// the server's tool (create_issue and delete_issue, destructive, are
// hidden); an override naming a tool the server does not list
// is warned of once the list is learned; overrides offering two tools
// under one name do not load.
func TestToolOverridesThroughCaddy(t *testing.T) {
	up := newUpstream(t, upstreamtest.StatefulJSON)
	logOption, logPath := warningsLog(t)
	url := startGateway(t, up.URL, gatewayOptions{
		global: []string{logOption},
		policy: `permissions {
			read_only allow
			write allow
			destructive block
		}
		tool_override echo say {
			description "Say the text back."
		}
		tool_override search_v2 search`,
	})
	session := connect(t, url, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	listed, err := session.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tool := range listed.Tools {
		names = append(names, tool.Name)
		if tool.Name == "say" && tool.Description != "Say the text back." {
			t.Errorf("say is described %q", tool.Description)
		}
	}
	slices.Sort(names)
	if want := []string{"say", "slow"}; !slices.Equal(names, want) {
		t.Errorf("tools/list: %v; want %v", names, want)
	}
	res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "say", Arguments: map[string]any{"text": "hi"}})
	if err != nil || res.IsError || resultText(res) != "echo:hi" {
		t.Errorf("calling say: %v %v; want echo's answer", res, err)
	}
	logLine(t, logPath, func(e map[string]any) bool {
		msg, _ := e["msg"].(string)
		return strings.HasPrefix(msg, "a tool override names a tool the upstream does not list") && e["tool"] == "search_v2"
	})

	err = loadCaddyfile(t, globalOptions(t)+policySite(freePort(t), "", "permissions {\n\t\t\tread_only allow\n\t\t}\n\t\ttool_override echo x\n\t\ttool_override slow x", up.URL))
	if err == nil || !strings.Contains(err.Error(), `tools "echo" and "slow" are both renamed to "x"`) {
		t.Errorf("two tools renamed alike: %v; want the configuration refused", err)
	}
}
