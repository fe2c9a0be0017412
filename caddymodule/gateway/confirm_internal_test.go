package gateway

import (
	"encoding/json"
	"runtime"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
	"github.com/mcpgate/mcpgate/caddymodule/policy"
	"github.com/mcpgate/mcpgate/caddymodule/sessiontoken"
)

// TestOwnRequestAnswers: the client's answer to a question of the
// gateway's is taken once, in its session; an answer to a question
// withdrawn before it came (the two crossed) is taken once too, and
// dropped, rather than refused as an answer nobody asked for.
func TestOwnRequestAnswers(t *testing.T) {
	const id = `"mcpgate-confirm-x"`
	answer := &mcpmsg.Message{Kind: mcpmsg.KindResponse, ID: []byte(id), Raw: []byte(`{"jsonrpc":"2.0","id":` + id + `,"result":{"action":"accept"}}`)}
	session, other := sessionKey{upstream: "u", id: "s1"}, sessionKey{upstream: "u", id: "s2"}
	tests := []struct {
		name     string
		withdraw bool
		from     sessionKey
		want     []bool // whether each of two answers is taken
	}{
		{"awaited", false, session, []bool{true, false}},
		{"withdrawn", true, session, []bool{true, false}},
		{"from another session", false, other, []bool{false, false}},
		{"withdrawn, from another session", true, other, []bool{false, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			own := newOwnRequests()
			answers, forget := own.await(session, id)
			if tt.withdraw {
				forget()
			}
			for i, want := range tt.want {
				if got := own.deliver(tt.from, answer); got != want {
					t.Errorf("answer %d taken: %v, want %v", i+1, got, want)
				}
			}
			if !tt.withdraw && tt.want[0] {
				if action := <-answers; action != "accept" {
					t.Errorf("the awaited answer: %q, want accept", action)
				}
			}
			forget()
		})
	}
}

// TestConfirmationShowsNames: the caller is asked about the tool by a
// name whose hidden characters are shown: a server's "delete_repo" with a
// Hangul filler cannot pass for "delete_repo".
func TestConfirmationShowsNames(t *testing.T) {
	x := &exchange{}
	v := verdict{
		message: &mcpmsg.Message{Tool: &mcpmsg.ToolCall{Name: "delete_repo\u3164", Arguments: map[string]any{}}},
		input:   &policy.Input{Server: "tracker"},
	}
	params, err := x.confirmation(v)
	if err != nil {
		t.Fatal(err)
	}
	if message, _ := params["message"].(string); !strings.Contains(message, `"delete_repo⟨U+3164⟩"`) {
		t.Errorf("the question: %q; want the tool's name with its filler shown", message)
	}
}

// TestConfirmationCostBounded: the caller is shown the start of the
// arguments, and only the start is indented: indenting all of 1 MiB
// nested 60 levels deep wrote 60 MiB and took seconds for every call.
func TestConfirmationCostBounded(t *testing.T) {
	var nested any = json.Number("1")
	for range 60 {
		nested = []any{nested, json.Number("2")}
	}
	list := make([]any, 1<<12)
	for i := range list {
		list[i] = nested
	}
	x := &exchange{}
	v := verdict{
		message: &mcpmsg.Message{Tool: &mcpmsg.ToolCall{Name: "run", Arguments: map[string]any{"a": list}}},
		input:   &policy.Input{Server: "tracker"},
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	params, err := x.confirmation(v)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	message, _ := params["message"].(string)
	if !strings.Contains(message, "⟨more not shown: the arguments are") || len(message) > 2*maxShownArguments {
		t.Errorf("the question is %d bytes, want the start of the arguments and a note of the rest", len(message))
	}
	// The compact encoding is what remains: a few times its 1 MB.
	if allocated := after.TotalAlloc - before.TotalAlloc; allocated > 16<<20 {
		t.Errorf("asking allocated %d MiB", allocated>>20)
	}
}

// TestRequestStateLifetime: a confirmation's requestState is accepted
// for requestStateTTL after it was issued, never when issued further
// ahead of this gateway's clock than maxClockSkew (a replica whose clock
// runs ahead sealed it: one a year ahead was accepted for a year), and
// its use is remembered for longer than any gateway within that skew
// accepts it: a state from 20 minutes ahead was accepted 20 minutes
// after its use was forgotten, and ran its call again.
func TestRequestStateLifetime(t *testing.T) {
	sealer, err := sessiontoken.New(sessiontoken.NewKey())
	if err != nil {
		t.Fatal(err)
	}
	g := &Gateway{cfg: Config{Sealer: sealer, Upstream: "u"}, sessions: NewSessions()}
	x := &exchange{g: g, session: sessionKey{upstream: "u", id: "s1"}}
	sealedAt := func(issued time.Time) string {
		payload, err := json.Marshal(requestState{Keys: []string{callerApproval}, Method: "tools/call", Name: "t", Binding: "b", Nonce: "n", Issued: issued.Unix()})
		if err != nil {
			t.Fatal(err)
		}
		return sealer.Seal(x.requestStateScope(true), sessiontoken.Session{Kind: sessiontoken.RequestState, Caller: x.session.sealedCaller(), ID: string(payload)})
	}
	now := time.Now()
	tests := []struct {
		name      string
		issued    time.Time
		wantError string
	}{
		{"just issued", now, ""},
		{"about to expire", now.Add(-requestStateTTL + time.Minute), ""},
		{"expired", now.Add(-requestStateTTL - time.Minute), "expired"},
		{"from a clock a little ahead", now.Add(maxClockSkew / 2), ""},
		{"from a clock 20 minutes ahead", now.Add(20 * time.Minute), "ahead of this gateway's clock"},
		{"from a clock a year ahead", now.Add(365 * 24 * time.Hour), "ahead of this gateway's clock"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := x.openRequestState(sealedAt(tt.issued))
			if (err == nil) != (tt.wantError == "") || err != nil && !strings.Contains(err.Error(), tt.wantError) {
				t.Errorf("openRequestState: %v, want an error containing %q", err, tt.wantError)
			}
		})
	}
}

// TestRequestStateReplayAcrossSkew: a confirmation used at a replica
// whose clock runs ahead is not accepted again at one whose clock lags,
// once the record of its use would have expired at 32 minutes (it was
// accepted for as long as the clocks disagreed, and ran again).
func TestRequestStateReplayAcrossSkew(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sealer, err := sessiontoken.New(sessiontoken.NewKey())
		if err != nil {
			t.Fatal(err)
		}
		g := &Gateway{cfg: Config{Sealer: sealer, Upstream: "u"}, sessions: NewSessions()}
		x := &exchange{g: g, session: sessionKey{upstream: "u", id: "s1"}}
		const skew = 30 * time.Minute // the sealing replica runs this far ahead
		payload, err := json.Marshal(requestState{Keys: []string{callerApproval}, Method: "tools/call", Name: "t", Binding: "b", Nonce: "n", Issued: time.Now().Add(skew).Unix()})
		if err != nil {
			t.Fatal(err)
		}
		sealed := sealer.Seal(x.requestStateScope(true), sessiontoken.Session{Kind: sessiontoken.RequestState, Caller: x.session.sealedCaller(), ID: string(payload)})
		if err := x.claimAnswer("n"); err != nil { // its use, at the sealing replica
			t.Fatal(err)
		}
		// At the lagging replica (this clock), the state is accepted until
		// requestStateTTL after it was issued: skew later than at the
		// sealing one.
		time.Sleep(requestStateTTL + skew - time.Minute)
		state, err := x.openRequestState(sealed)
		if err != nil {
			t.Fatalf("the lagging replica refused the state within its lifetime by its clock: %v", err)
		}
		if err := x.claimAnswer(state.Nonce); err == nil {
			t.Errorf("used %s ago, accepted and claimed again at a replica %s behind: it runs twice", requestStateTTL+skew-time.Minute, skew)
		}
	})
}

// TestRefusalShowsHiddenCharacters: a policy's reason, which may quote
// what a caller wrote, is shown in a refusal with what could act on the
// display made visible, as everywhere else a person reads it.
func TestRefusalShowsHiddenCharacters(t *testing.T) {
	d := policy.Decision{Action: policy.ActionBlock, Reason: "repository \u202eexe.kcatta\u202c is not acme's\x1b[2J"}
	text := refusalText(d, false)
	if strings.ContainsAny(text, "\u202e\u202c\x1b") || !strings.Contains(text, "⟨U+202E⟩exe.kcatta") {
		t.Errorf("refusal %q shows the reason's hidden characters raw", text)
	}
	long := refusalText(policy.Decision{Action: policy.ActionBlock, Reason: strings.Repeat("x", 1<<20)}, false)
	if len(long) > 2*maxShownReason {
		t.Errorf("a refusal of a 1 MiB reason is %d bytes", len(long))
	}
}
