package permissions

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/caddymodule/policy"
)

// TestValidate: every entry needs a known action, approvers go with
// needs_approval only, and each approver is a principal the gateway knows.
func TestValidate(t *testing.T) {
	tests := []struct {
		name  string
		table Table
		want  string // "" when valid
	}{
		{"categories and tools", Table{ReadOnly: Entry{Action: policy.ActionAllow}, Tools: map[string]Entry{"send": {Action: policy.ActionNeedsApproval, Approvers: []string{"caller", "group:leads"}}}}, ""},
		{"empty", Table{}, ""},
		{"unknown action", Table{Write: Entry{Action: "maybe"}}, `action "maybe" is not one of`},
		{"tool without action", Table{Tools: map[string]Entry{"send": {}}}, "an action is required"},
		{"approvers on allow", Table{Tools: map[string]Entry{"send": {Action: policy.ActionAllow, Approvers: []string{"caller"}}}}, "approvers go with needs_approval only"},
		{"approvers without action", Table{Destructive: Entry{Approvers: []string{"caller"}}}, "is not one of"},
		{"unknown approver", Table{Write: Entry{Action: policy.ActionNeedsApproval, Approvers: []string{"root"}}}, `unknown approver "root"`},
		{"resources and prompts", Table{Resources: Entry{Action: policy.ActionBlock}, Prompts: Entry{Action: policy.ActionAllow}}, ""},
		{"resources needing approval", Table{Resources: Entry{Action: policy.ActionNeedsApproval}}, "resources: want allow or block (only tool calls are held for approval), got needs_approval"},
		{"prompts with approvers", Table{Prompts: Entry{Action: policy.ActionAllow, Approvers: []string{"caller"}}}, "prompts: want allow or block"},
		{"prompts with an unknown action", Table{Prompts: Entry{Action: "maybe"}}, "prompts: want allow or block (only tool calls are held for approval), got maybe"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.table.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate: %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate: %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestEntriesGivenEmpty: in JSON, an entry given without an action is
// refused, not taken for one left out (resources and prompts left out
// follow read_only).
func TestEntriesGivenEmpty(t *testing.T) {
	for _, tc := range []struct {
		table, wantErr string
	}{
		{`{"resources": ""}`, "permissions: resources: an action is required"},
		{`{"prompts": {"action": ""}}`, "permissions: prompts: an action is required"},
		{`{"read_only": ""}`, "permissions: read_only: an action is required"},
		{`{"resources": "allow", "read_only": "block"}`, ""},
		{`{"write": {"action": "needs_approval", "approvers": ["caller"]}}`, ""},
	} {
		var table Table
		err := json.Unmarshal([]byte(tc.table), &table)
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("%s: %v, want %q", tc.table, err, tc.wantErr)
		}
	}
}

// TestData: the table reaches the policy as data.mcp.permissions, an
// entry without approvers as its action alone, and round-trips through
// JSON config.
func TestData(t *testing.T) {
	table := Table{
		ReadOnly: Entry{Action: policy.ActionAllow},
		Write:    Entry{Action: policy.ActionNeedsApproval, Approvers: []string{"caller"}},
		Tools:    map[string]Entry{"delete_issue": {Action: policy.ActionBlock}},
		Prompts:  Entry{Action: policy.ActionBlock},
	}
	want := map[string]any{"mcp": map[string]any{"permissions": map[string]any{
		"read_only": "allow",
		"write":     map[string]any{"action": "needs_approval", "approvers": []string{"caller"}},
		"tools":     map[string]any{"delete_issue": "block"},
		"prompts":   "block",
	}}}
	if got := table.Data(); !reflect.DeepEqual(got, want) {
		t.Errorf("Data() = %#v\nwant %#v", got, want)
	}
	raw, err := json.Marshal(table)
	if err != nil {
		t.Fatal(err)
	}
	var back Table
	if err := json.Unmarshal(raw, &back); err != nil || !reflect.DeepEqual(back, table) {
		t.Errorf("JSON round trip of %s: %+v, %v", raw, back, err)
	}
}
