package mcpmsg

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

// FuzzParse checks that Parse never panics, never modifies its input (the
// gateway forwards those bytes), returns only *Error failures, and that
// whatever it accepts reads the same alone and to encoding/json, which
// is what a typical Go upstream server decodes with (case-insensitive member
// names, last duplicate wins), and carries only ids that every reader reads
// alike.
func FuzzParse(f *testing.F) {
	for _, tc := range parseCases {
		f.Add([]byte(tc.body))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		original := bytes.Clone(data)
		body, err := Parse(data, Limits{})
		if !bytes.Equal(data, original) {
			t.Fatalf("Parse modified its input %q to %q", original, data)
		}
		if err != nil {
			var perr *Error
			if !errors.As(err, &perr) {
				t.Fatalf("Parse error %v is a %T, want *Error", err, err)
			}
			return
		}
		for _, m := range body.Messages {
			checkReparse(t, m)
			checkUpstreamView(t, m)
			checkIDsReadAlike(t, m)
		}
	})
}

// checkReparse fails t unless m.Raw parses alone to the same message.
func checkReparse(t *testing.T, m Message) {
	t.Helper()
	alone, err := Parse(m.Raw, Limits{})
	if err != nil {
		t.Fatalf("Raw %q of an accepted message fails alone: %v", m.Raw, err)
	}
	if alone.Batch || len(alone.Messages) != 1 {
		t.Fatalf("Raw %q parses alone to %d messages (batch %v), want one", m.Raw, len(alone.Messages), alone.Batch)
	}
	got := alone.Messages[0]
	if got.Kind != m.Kind || got.Method != m.Method || toolName(got) != toolName(m) || !bytes.Equal(got.ID, m.ID) {
		t.Errorf("Raw %q parses alone to {%v %s %q %q}, want {%v %s %q %q}",
			m.Raw, got.Kind, got.ID, got.Method, toolName(got), m.Kind, m.ID, m.Method, toolName(m))
	}
}

// checkUpstreamView fails t unless encoding/json reads m.Raw as Parse did.
func checkUpstreamView(t *testing.T, m Message) {
	t.Helper()
	var upstream struct {
		Method string `json:"method"`
		Params struct {
			Name string `json:"name"`
		} `json:"params"`
	}
	// A type mismatch (say, a numeric params.name in a method other than
	// tools/call) still fills the other fields; only syntax errors matter.
	var serr *json.SyntaxError
	if err := json.Unmarshal(m.Raw, &upstream); errors.As(err, &serr) {
		t.Fatalf("encoding/json rejects accepted message %q: %v", m.Raw, err)
	}
	if upstream.Method != m.Method {
		t.Errorf("encoding/json reads method %q from %q, Parse read %q", upstream.Method, m.Raw, m.Method)
	}
	if m.Tool != nil && upstream.Params.Name != m.Tool.Name {
		t.Errorf("encoding/json reads tool %q from %q, Parse read %q", upstream.Params.Name, m.Raw, m.Tool.Name)
	}

	var generic map[string]any
	dec := json.NewDecoder(bytes.NewReader(m.Raw))
	dec.UseNumber()
	if err := dec.Decode(&generic); err != nil {
		t.Fatalf("encoding/json rejects accepted message %q: %v", m.Raw, err)
	}
	params, ok := generic["params"]
	if ok != (m.Params != nil) || (ok && !reflect.DeepEqual(params, m.Params)) {
		t.Errorf("encoding/json reads params %#v from %q, Parse read %#v", params, m.Raw, m.Params)
	}
}

// checkIDsReadAlike fails t unless every numeric id that m carries (its id,
// progress token, or the request id of a cancellation) is read as the same
// integer by every reader.
func checkIDsReadAlike(t *testing.T, m Message) {
	t.Helper()
	ids := []any{m.ProgressToken}
	if len(m.ID) > 0 && m.ID[0] != '"' && string(m.ID) != "null" {
		ids = append(ids, json.Number(m.ID))
	}
	if m.Method == "notifications/cancelled" {
		ids = append(ids, m.Params["requestId"])
	}
	for _, id := range ids {
		if n, ok := id.(json.Number); ok {
			checkReadAlike(t, string(n))
		}
	}
}
