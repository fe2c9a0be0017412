package approval

import (
	"errors"
	"testing"
)

func TestParseCallback(t *testing.T) {
	const id = "apr_aaaaaaaaaaaaaaaaaaaaaaaaaa"
	tests := []struct {
		name string
		body string
		want CallbackDecision // zero: refused
	}{
		{"approve", `{"id":"` + id + `","decision":"approve"}`, CallbackDecision{ID: id, Decision: "approve"}},
		{"deny with approver and reason", `{"id":"` + id + `","decision":"deny","approver":"alice","reason":"not now"}`,
			CallbackDecision{ID: id, Decision: "deny", Approver: "alice", Reason: "not now"}},
		{"escaped names and values", `{"\u0069d":"` + id + `","decision":"\u0061pprove"}`, CallbackDecision{ID: id, Decision: "approve"}},
		{"whitespace around", " \n{\"id\":\"" + id + "\",\"decision\":\"deny\"}\n", CallbackDecision{ID: id, Decision: "deny"}},

		{"no id", `{"decision":"approve"}`, CallbackDecision{}},
		{"empty id", `{"id":"","decision":"approve"}`, CallbackDecision{}},
		{"another approval's id", `{"id":"apr_bbbbbbbbbbbbbbbbbbbbbbbbbb","decision":"approve"}`, CallbackDecision{}},
		{"id in another case", `{"id":"` + "APR_AAAAAAAAAAAAAAAAAAAAAAAAAA" + `","decision":"approve"}`, CallbackDecision{}},
		{"no decision", `{"id":"` + id + `"}`, CallbackDecision{}},
		{"decision in another case", `{"id":"` + id + `","decision":"Approve"}`, CallbackDecision{}},
		{"decision with a space", `{"id":"` + id + `","decision":"approve "}`, CallbackDecision{}},
		{"another decision", `{"id":"` + id + `","decision":"maybe"}`, CallbackDecision{}},
		{"decision not a string", `{"id":"` + id + `","decision":true}`, CallbackDecision{}},
		{"decision null", `{"id":"` + id + `","decision":null}`, CallbackDecision{}},
		{"member name Decision", `{"id":"` + id + `","Decision":"approve"}`, CallbackDecision{}},
		{"member name ID", `{"ID":"` + id + `","decision":"approve"}`, CallbackDecision{}},
		{"member name Decision beside decision", `{"id":"` + id + `","decision":"deny","Decision":"approve"}`, CallbackDecision{}},
		{"unknown member", `{"id":"` + id + `","decision":"approve","scope":"all"}`, CallbackDecision{}},
		{"duplicate decision", `{"id":"` + id + `","decision":"deny","decision":"approve"}`, CallbackDecision{}},
		{"duplicate after unescaping", `{"id":"` + id + `","decision":"deny","d\u0065cision":"approve"}`, CallbackDecision{}},
		{"duplicate id", `{"id":"apr_bbbbbbbbbbbbbbbbbbbbbbbbbb","id":"` + id + `","decision":"approve"}`, CallbackDecision{}},
		{"invalid UTF-8", `{"id":"` + id + `","decision":"approve","reason":"` + "\xff" + `"}`, CallbackDecision{}},
		{"lone surrogate", `{"id":"` + id + `","decision":"approve","approver":"\ud800"}`, CallbackDecision{}},
		{"trailing object", `{"id":"` + id + `","decision":"approve"}{}`, CallbackDecision{}},
		{"trailing garbage", `{"id":"` + id + `","decision":"approve"} x`, CallbackDecision{}},
		{"truncated", `{"id":"` + id + `","decision":"approve"`, CallbackDecision{}},
		{"empty", ``, CallbackDecision{}},
		{"null", `null`, CallbackDecision{}},
		{"array", `[{"id":"` + id + `","decision":"approve"}]`, CallbackDecision{}},
		{"approver not a string", `{"id":"` + id + `","decision":"approve","approver":{"name":"alice"}}`, CallbackDecision{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCallback([]byte(tt.body), id)
			if tt.want == (CallbackDecision{}) {
				if !errors.Is(err, ErrBadCallback) {
					t.Errorf("ParseCallback(%s) = %+v, %v; want an error wrapping ErrBadCallback", tt.body, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("ParseCallback(%s) = %+v, %v; want %+v", tt.body, got, err, tt.want)
			}
		})
	}
}
