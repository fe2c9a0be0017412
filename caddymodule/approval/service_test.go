package approval

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mcpgate/mcpgate/internal/redistest"
)

// receiver is a webhook receiver that verifies signatures, fails the
// first failFirst deliveries, and records the events it accepted.
type receiver struct {
	secret    Secret
	failFirst int

	mu       sync.Mutex
	attempts int
	events   []Event
	ids      []string
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	id, err := rc.secret.Verify(r.Header, body, time.Now())
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.attempts++
	if err != nil {
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	if rc.attempts <= rc.failFirst {
		http.Error(w, "try later", http.StatusServiceUnavailable)
		return
	}
	var e Event
	if err := json.Unmarshal(body, &e); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.events = append(rc.events, e)
	rc.ids = append(rc.ids, id)
}

func (rc *receiver) received() ([]Event, []string, int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]Event(nil), rc.events...), append([]string(nil), rc.ids...), rc.attempts
}

func newTestService(t *testing.T, rc *receiver, timeout time.Duration) *Service {
	t.Helper()
	return newTestServiceOn(t, rc, timeout, func(onChange ChangeFunc) (Store, error) { return NewMemoryStore(onChange), nil })
}

// newTestServiceOn is newTestService with the store open opens.
func newTestServiceOn(t *testing.T, rc *receiver, timeout time.Duration, open func(ChangeFunc) (Store, error)) *Service {
	t.Helper()
	rc.secret = mustSecret(t, testSecret)
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	s, err := NewService(open, &Settings{
		Webhooks:        []Webhook{{URL: srv.URL}},
		WebhookSecrets:  []Secret{rc.secret},
		DecisionSecrets: []Secret{mustSecret(t, testDecisionSecret)},
		CallbackURL:     "https://gw.example/approvals",
		Timeout:         timeout,
		FirstRetry:      20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// lostReplyStore saves what Create saves, then fails it once, as a Redis
// that went away after it committed and before it answered.
type lostReplyStore struct {
	Store
	lost atomic.Bool
}

func (s *lostReplyStore) Create(ctx context.Context, a *Approval, now time.Time, olderKeys ...string) (*Approval, bool, error) {
	got, created, err := s.Store.Create(ctx, a, now, olderKeys...)
	if err == nil && s.lost.CompareAndSwap(false, true) {
		return nil, false, errors.New("creating approval in redis: EOF")
	}
	return got, created, err
}

// TestAnnouncedWhenCreationAnswerLost: an approval saved by a Create
// whose answer was lost (the call refused) is announced to the approvers
// when the call is made again and finds it, once: a later call finds it
// announced.
func TestAnnouncedWhenCreationAnswerLost(t *testing.T) {
	rc := &receiver{}
	s := newTestServiceOn(t, rc, time.Minute, func(onChange ChangeFunc) (Store, error) {
		return &lostReplyStore{Store: NewMemoryStore(onChange)}, nil
	})
	call := func() (*Approval, error) {
		return s.Request(context.Background(), &Call{User: "alice", Server: "tracker", Tool: "create_issue", Arguments: map[string]any{"title": "x"}})
	}
	if _, err := call(); err == nil {
		t.Fatal("the call whose approval's creation was not answered went on")
	}
	a, err := call()
	if err != nil || a.State != Pending {
		t.Fatalf("the call made again: %v, %v; want the approval saved before, pending", a, err)
	}
	waitFor(t, func() bool { events, _, _ := rc.received(); return len(events) == 1 }, "the approval found pending was never announced")
	if _, err := call(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // a second announcement would have come by now
	if events, ids, _ := rc.received(); len(events) != 1 || events[0].ID != a.ID || ids[0] != "msg_"+a.ID+"_requested" {
		t.Errorf("announced %d times (%v); want once, for %s", len(events), ids, a.ID)
	}
}

// TestAnnouncedOnceByReplicas: a call reaching two gateways that share a
// Redis at once has its approval announced once, by the gateway that
// clears its mark.
func TestAnnouncedOnceByReplicas(t *testing.T) {
	address := redistest.Start(t)
	rc := &receiver{}
	replica := func() *Service {
		return newTestServiceOn(t, rc, time.Minute, func(onChange ChangeFunc) (Store, error) { return NewRedisStore(address, "", onChange) })
	}
	replicas := []*Service{replica(), replica()}
	const rounds = 30
	for i := range rounds {
		call := &Call{User: fmt.Sprint("u", i), Server: "tracker", Tool: "create_issue", Arguments: map[string]any{"n": i}}
		var wg sync.WaitGroup
		for _, s := range replicas {
			wg.Go(func() {
				if _, err := s.Request(context.Background(), call); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	waitFor(t, func() bool { events, _, _ := rc.received(); return len(events) >= rounds }, "the approvals were never announced")
	time.Sleep(200 * time.Millisecond) // a second announcement would have come by now
	if events, _, _ := rc.received(); len(events) != rounds {
		t.Errorf("%d approvals, each asked for on two replicas at once, announced %d times; want %d", rounds, len(events), rounds)
	}
}

// TestWebhookRetriedUntilDelivered: a receiver that fails gets the same
// message (same webhook-id) again, each signed anew, until it accepts.
func TestWebhookRetriedUntilDelivered(t *testing.T) {
	rc := &receiver{failFirst: 2}
	s := newTestService(t, rc, time.Minute)
	a, err := s.Request(context.Background(), &Call{User: "alice", Server: "tracker", Tool: "create_issue", Arguments: map[string]any{"title": "x"}, Reason: "writes"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { events, _, _ := rc.received(); return len(events) == 1 }, "the webhook was never delivered")
	events, ids, attempts := rc.received()
	if attempts != 3 {
		t.Errorf("delivered on attempt %d, want 3 (two refused first)", attempts)
	}
	e := events[0]
	if e.Type != EventRequested || e.ID != a.ID || e.CallbackURL != "https://gw.example/approvals/"+a.ID ||
		e.Tool.Name != "create_issue" || string(e.Tool.Arguments) != `{"title":"x"}` ||
		e.User == nil || e.User.ID != "alice" || e.Reason != "writes" || e.ExpiresAt.IsZero() {
		t.Errorf("webhook event = %+v, missing what an approver needs", e)
	}
	if ids[0] != "msg_"+a.ID+"_requested" {
		t.Errorf("webhook-id = %q, want msg_%s_requested", ids[0], a.ID)
	}

	again, err := s.Request(context.Background(), &Call{User: "alice", Server: "tracker", Tool: "create_issue", Arguments: map[string]any{"title": "x"}})
	if err != nil || again.ID != a.ID {
		t.Fatalf("the same call while pending: got %v (%v), want approval %s", again, err, a.ID)
	}
	time.Sleep(50 * time.Millisecond)
	if events, _, _ := rc.received(); len(events) != 1 {
		t.Errorf("the same call sent %d webhooks, want no new one", len(events)-1)
	}
}

// TestExpiredAnnounced: with nobody answering, the sweeper expires the
// approval and says so by webhook; a late decision is a conflict.
func TestExpiredAnnounced(t *testing.T) {
	rc := &receiver{}
	s := newTestService(t, rc, 200*time.Millisecond)
	ctx := context.Background()
	a, err := s.Request(ctx, &Call{Server: "s", Tool: "t"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		events, _, _ := rc.received()
		return len(events) == 2 && events[1].Type == EventExpired
	}, "no approval.expired webhook")
	if _, err := s.Decide(ctx, a.ID, true, webhookDecider, ""); !errors.Is(err, ErrConflict) {
		t.Errorf("approving an expired approval: got %v, want ErrConflict", err)
	}
}

// TestOnlyItsSecretDecides: gateways sharing a Redis but not a decision
// secret see each other's approvals, but none owns the other's, so none
// can decide them (the callback API and the inbox look for the owner).
func TestOnlyItsSecretDecides(t *testing.T) {
	address := redistest.Start(t)
	open := func(decision string) *Service {
		s, err := NewService(func(onChange ChangeFunc) (Store, error) { return NewRedisStore(address, "", onChange) },
			&Settings{
				WebhookSecrets:  []Secret{mustSecret(t, testSecret)},
				DecisionSecrets: []Secret{mustSecret(t, decision)},
				CallbackURL:     "https://gw.example/approvals",
				Timeout:         time.Minute,
			})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	mine, theirs := open(testDecisionSecret), open("whsec_"+strings.Repeat("B", 43)+"=")
	a, err := mine.Request(context.Background(), &Call{Server: "s", Tool: "t"})
	if err != nil {
		t.Fatal(err)
	}
	seen, err := theirs.Get(context.Background(), a.ID)
	if err != nil {
		t.Fatalf("the other gateway does not see the shared approval: %v", err)
	}
	if !mine.Owns(a) || theirs.Owns(seen) {
		t.Errorf("Owns: mine %v, theirs %v; want only the announcing secret to own it", mine.Owns(a), theirs.Owns(seen))
	}
	// Approved by my reviewers, the approval stands for my calls alone:
	// the same call through the other gateway is asked of its own
	// reviewers, and it cannot use up mine.
	if _, err := mine.Decide(context.Background(), a.ID, true, webhookDecider, ""); err != nil {
		t.Fatal(err)
	}
	asked, err := theirs.Request(context.Background(), &Call{Server: "s", Tool: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if asked.ID == a.ID || asked.State != Pending || !theirs.Owns(asked) {
		t.Errorf("the other gateway's request: %s %s; want an approval of its own, pending (mine is %s)", asked.ID, asked.State, a.ID)
	}
	if _, err := theirs.Use(context.Background(), a.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("the other gateway using my approval: %v, want ErrNotFound", err)
	}
	if again, err := mine.Request(context.Background(), &Call{Server: "s", Tool: "t"}); err != nil || again.ID != a.ID {
		t.Errorf("my gateway's request again: %v (%v), want my approved %s", again, err, a.ID)
	}
	if used, err := mine.Use(context.Background(), a.ID); err != nil || used.State != Approved {
		t.Errorf("my gateway using its approval: %v (%v), want it used, approved", used, err)
	}
}

// webhookDecider decides as a signed callback does.
var webhookDecider = Decider{ID: "webhook", Principals: []string{"webhook"}}

// testCallbackURL is where the test services' decisions come in.
const testCallbackURL = "https://gw.example/approvals"

// newStoreService starts a service over a store that open makes, with the
// decision secrets given and testSecret for webhooks (none are sent).
func newStoreService(t *testing.T, open func(*testing.T, ChangeFunc) Store, decision ...Secret) *Service {
	t.Helper()
	s, err := NewService(func(onChange ChangeFunc) (Store, error) { return open(t, onChange), nil }, &Settings{
		WebhookSecrets:  []Secret{mustSecret(t, testSecret)},
		DecisionSecrets: decision,
		CallbackURL:     testCallbackURL,
		Timeout:         time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestDecideEntitled: only a decider holding one of an approval's
// approvers decides it (with none, anyone but the caller alone), in every
// store; a refusal changes nothing, and the decider's claim is recorded
// beside the verified identity.
func TestDecideEntitled(t *testing.T) {
	inbox := func(user string, more ...string) Decider {
		return Decider{ID: "inbox:" + user, Principals: append([]string{"inbox", "inbox:" + user}, more...)}
	}
	tests := []struct {
		name      string
		approvers []string
		refused   []Decider
		by        Decider
		want      Approval // Approver and ApproverClaim
	}{
		{
			name:      "named approvers",
			approvers: []string{"inbox:alice", "group:leads"},
			refused: []Decider{webhookDecider, {ID: "admin", Principals: []string{"admin"}}, inbox("carol"),
				{ID: "caller", Principals: []string{"caller"}}, {ID: "nobody"}},
			by:   Decider{ID: "inbox:alice", Principals: []string{"inbox", "inbox:alice"}, Claim: "Alice A."},
			want: Approval{Approver: "inbox:alice", ApproverClaim: "Alice A."},
		},
		{
			name:      "a group",
			approvers: []string{"group:leads"},
			refused:   []Decider{inbox("alice")},
			by:        inbox("dave", "group:leads"),
			want:      Approval{Approver: "inbox:dave"},
		},
		{
			name:    "any reviewer",
			refused: []Decider{{ID: "caller", Principals: []string{"caller"}}, {ID: "nobody"}},
			by:      Decider{ID: "webhook", Principals: []string{"webhook"}, Claim: "alice"},
			want:    Approval{Approver: "webhook", ApproverClaim: "alice"},
		},
		{
			name:      "the caller",
			approvers: []string{"caller"},
			refused:   []Decider{webhookDecider, inbox("alice")},
			by:        Decider{ID: "caller", Principals: []string{"caller"}, Claim: "caller"},
			want:      Approval{Approver: "caller"},
		},
	}
	for _, kind := range storeKinds {
		t.Run(kind.name, func(t *testing.T) {
			s := newStoreService(t, kind.open, mustSecret(t, testDecisionSecret))
			ctx := context.Background()
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					a, err := s.Request(ctx, &Call{User: "bob", Server: "s", Tool: tt.name, Approvers: tt.approvers})
					if err != nil {
						t.Fatal(err)
					}
					for _, by := range tt.refused {
						_, err := s.Decide(ctx, a.ID, true, by, "")
						if !errors.Is(err, ErrNotEntitled) {
							t.Errorf("%s deciding: got %v, want ErrNotEntitled", by.ID, err)
						} else if len(tt.approvers) > 0 && !strings.Contains(err.Error(), tt.approvers[0]) {
							t.Errorf("%s deciding: error %q does not say who may decide (%s)", by.ID, err, tt.approvers[0])
						}
					}
					if got, err := s.Get(ctx, a.ID); err != nil || got.State != Pending {
						t.Fatalf("after refused decisions the approval is %v (%v), want pending", got, err)
					}
					decided, err := s.Decide(ctx, a.ID, false, tt.by, "no")
					if err != nil {
						t.Fatalf("%s deciding: %v, want it entitled", tt.by.ID, err)
					}
					if decided.State != Denied || decided.Approver != tt.want.Approver || decided.ApproverClaim != tt.want.ApproverClaim {
						t.Errorf("decided: state %s, approver %q, claim %q; want denied, %q, %q",
							decided.State, decided.Approver, decided.ApproverClaim, tt.want.Approver, tt.want.ApproverClaim)
					}
					stored, err := s.Get(ctx, a.ID)
					if err != nil || stored.Approver != tt.want.Approver || stored.ApproverClaim != tt.want.ApproverClaim ||
						strings.Join(stored.Approvers, ",") != strings.Join(a.Approvers, ",") {
						t.Errorf("stored: %+v (%v); want approver %q, claim %q, approvers %q",
							stored, err, tt.want.Approver, tt.want.ApproverClaim, a.Approvers)
					}
					if _, err := s.Decide(ctx, a.ID, true, tt.by, ""); !errors.Is(err, ErrConflict) {
						t.Errorf("a second decision: got %v, want ErrConflict", err)
					}
				})
			}
		})
	}
}

// TestRequestRecordsCall: an approval records its call's arguments with
// every number as written, and its approvers sorted, without repeats, in
// every store; a call naming something that is not a principal is refused.
func TestRequestRecordsCall(t *testing.T) {
	const args = `{"big":9007199254740993,"float":1.0,"huge":1e400,"zero":-0,"s":"\u0061"}`
	const want = `{"big":9007199254740993,"float":1.0,"huge":1e400,"s":"a","zero":-0}`
	for _, kind := range storeKinds {
		t.Run(kind.name, func(t *testing.T) {
			s := newStoreService(t, kind.open, mustSecret(t, testDecisionSecret))
			call := callWith(t, args)
			call.Approvers = []string{"webhook", "inbox:alice", "webhook"}
			a, err := s.Request(context.Background(), &call)
			if err != nil {
				t.Fatal(err)
			}
			stored, err := s.Get(context.Background(), a.ID)
			if err != nil {
				t.Fatal(err)
			}
			if string(stored.Arguments) != want {
				t.Errorf("stored arguments = %s, want %s", stored.Arguments, want)
			}
			if got := strings.Join(stored.Approvers, ","); got != "inbox:alice,webhook" {
				t.Errorf("stored approvers = %q, want inbox:alice,webhook", got)
			}
			if a, err := s.Request(context.Background(), &Call{Server: "s", Tool: "t", Approvers: []string{"alice"}}); err == nil {
				t.Errorf("a call with approver alice made approval %+v, want an error", a)
			}
		})
	}
}

// TestRotation rotates the decision secret from [old] to [new, old] to
// [new], in every store: while old is listed, approvals announced under it
// stay decidable, by callbacks signed with either secret and inbox forms
// made under either; new approvals are bound to new.
func TestRotation(t *testing.T) {
	old, fresh, other := mustSecret(t, testDecisionSecret), mustSecret(t, "whsec_"+strings.Repeat("C", 43)+"="), mustSecret(t, "whsec_"+strings.Repeat("D", 43)+"=")
	signed := func(s Secret) http.Header {
		h := make(http.Header)
		s.SetHeaders(h, "msg_1", time.Now(), []byte(`{}`))
		return h
	}
	for _, kind := range storeKinds {
		t.Run(kind.name, func(t *testing.T) {
			ctx := context.Background()
			s := newStoreService(t, kind.open, old)
			underOld, err := s.Request(ctx, &Call{Server: "s", Tool: "first"})
			if err != nil {
				t.Fatal(err)
			}
			kept, err := s.Request(ctx, &Call{Server: "s", Tool: "second"})
			if err != nil {
				t.Fatal(err)
			}
			oldToken := s.FormToken("alice", underOld.ID)
			if underOld.KeyID != old.ID() {
				t.Fatalf("KeyID = %s, want the decision secret's %s", underOld.KeyID, old.ID())
			}

			reconfigure := func(decision ...Secret) {
				t.Helper()
				if err := s.Configure(&Settings{WebhookSecrets: []Secret{mustSecret(t, testSecret)}, DecisionSecrets: decision,
					CallbackURL: testCallbackURL, Timeout: time.Minute}); err != nil {
					t.Fatal(err)
				}
			}
			reconfigure(fresh, old)
			if again, err := s.Request(ctx, &Call{Server: "s", Tool: "second"}); err != nil || again.ID != kept.ID {
				t.Errorf("with [new, old], the call of an approval announced under old: %v (%v), want that approval, %s", again, err, kept.ID)
			}
			underNew, err := s.Request(ctx, &Call{Server: "s", Tool: "third"})
			if err != nil {
				t.Fatal(err)
			}
			if underNew.KeyID != fresh.ID() {
				t.Errorf("after the rotation KeyID = %s, want the first decision secret's %s", underNew.KeyID, fresh.ID())
			}
			if !s.Owns(underOld) || !s.Owns(underNew) {
				t.Errorf("with [new, old]: owns the old approval %v, the new %v; want both", s.Owns(underOld), s.Owns(underNew))
			}
			for name, secret := range map[string]Secret{"old": old, "new": fresh} {
				if _, err := s.VerifyDecision(signed(secret), []byte(`{}`), time.Now()); err != nil {
					t.Errorf("with [new, old], a decision signed with the %s secret: %v, want it verified", name, err)
				}
			}
			if _, err := s.VerifyDecision(signed(other), []byte(`{}`), time.Now()); !errors.Is(err, ErrBadSignature) {
				t.Errorf("a decision signed with another secret: got %v, want ErrBadSignature", err)
			}
			newToken := s.FormToken("alice", underOld.ID)
			if newToken == oldToken || !s.CheckFormToken(oldToken, "alice", underOld.ID) || !s.CheckFormToken(newToken, "alice", underOld.ID) {
				t.Errorf("with [new, old]: tokens made under old and new should both check, and differ")
			}
			if _, err := s.Decide(ctx, underOld.ID, true, webhookDecider, ""); err != nil {
				t.Errorf("deciding the approval announced under old, after the rotation: %v", err)
			}

			reconfigure(fresh)
			if s.Owns(kept) || !s.Owns(underNew) {
				t.Errorf("with [new]: owns the old approval %v, the new %v; want only the new", s.Owns(kept), s.Owns(underNew))
			}
			if again, err := s.Request(ctx, &Call{Server: "s", Tool: "second"}); err != nil || again.ID == kept.ID || again.KeyID != fresh.ID() {
				t.Errorf("with [new], the call of an approval announced under old: %v (%v), want a new approval under new", again, err)
			}
			if _, err := s.VerifyDecision(signed(old), []byte(`{}`), time.Now()); !errors.Is(err, ErrBadSignature) {
				t.Errorf("with [new], a decision signed with the old secret: got %v, want ErrBadSignature", err)
			}
			if s.CheckFormToken(oldToken, "alice", underOld.ID) {
				t.Error("with [new], a token made under the old secret still checks")
			}
		})
	}
}

// TestRotationAcrossGateways: a gateway that shares the Redis and lists
// the old decision secret after the new one decides the approvals another
// gateway announced under the old one.
func TestRotationAcrossGateways(t *testing.T) {
	address := redistest.Start(t)
	open := func(t *testing.T, onChange ChangeFunc) Store {
		s, err := NewRedisStore(address, "", onChange)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	old, fresh := mustSecret(t, testDecisionSecret), mustSecret(t, "whsec_"+strings.Repeat("C", 43)+"=")
	announcing := newStoreService(t, open, old)
	rotated := newStoreService(t, open, fresh, old)
	a, err := announcing.Request(context.Background(), &Call{Server: "s", Tool: "t"})
	if err != nil {
		t.Fatal(err)
	}
	seen, err := rotated.Get(context.Background(), a.ID)
	if err != nil || !rotated.Owns(seen) {
		t.Fatalf("the rotated gateway sees %+v (%v), owns it: %v; want it to own the approval", seen, err, err == nil && rotated.Owns(seen))
	}
	if _, err := rotated.Decide(context.Background(), a.ID, true, webhookDecider, ""); err != nil {
		t.Errorf("the rotated gateway deciding: %v", err)
	}
}

// TestInstancesApartInOneRedis: approval services of different instances
// sharing one Redis share nothing: an approval one instance's reviewers
// gave runs nothing on the other, which asks its own reviewers, and
// neither sees the other's approvals.
func TestInstancesApartInOneRedis(t *testing.T) {
	address := redistest.Start(t)
	openAs := func(instance string) func(*testing.T, ChangeFunc) Store {
		return func(t *testing.T, onChange ChangeFunc) Store {
			s, err := NewRedisStore(address, instance, onChange)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
	}
	secret := mustSecret(t, testDecisionSecret)
	other := mustSecret(t, "whsec_"+strings.Repeat("C", 43)+"=")
	a := newStoreService(t, openAs(""), secret)
	b := newStoreService(t, openAs("team-b"), other)
	call := func() *Call {
		return &Call{User: "alice", Server: "s", Tool: "t", Arguments: map[string]any{"x": 1}}
	}
	approved, err := a.Request(context.Background(), call())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Decide(context.Background(), approved.ID, true, webhookDecider, ""); err != nil {
		t.Fatal(err)
	}
	asked, err := b.Request(context.Background(), call())
	if err != nil {
		t.Fatal(err)
	}
	if asked.ID == approved.ID || asked.State != Pending {
		t.Errorf("instance b's request: %s %s; want an approval of its own, pending (a's is %s)", asked.ID, asked.State, approved.ID)
	}
	if _, err := b.Get(context.Background(), approved.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("instance b sees instance a's approval: %v", err)
	}
	if _, err := b.Use(context.Background(), approved.ID); err == nil {
		t.Error("instance b used instance a's approval")
	}
}

// TestSettingsRefused: a service never runs with a webhook secret that is
// also a decision secret, or without either; a refused reconfiguration
// keeps the settings it had.
func TestSettingsRefused(t *testing.T) {
	webhook, decision := mustSecret(t, testSecret), mustSecret(t, testDecisionSecret)
	tests := []struct {
		name              string
		webhook, decision []Secret
	}{
		{"shared secret", []Secret{webhook}, []Secret{decision, webhook}},
		{"no webhook secret", nil, []Secret{decision}},
		{"no decision secret", []Secret{webhook}, nil},
		{"unset decision secret", []Secret{webhook}, []Secret{{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opened := false
			_, err := NewService(func(onChange ChangeFunc) (Store, error) {
				opened = true
				return NewMemoryStore(onChange), nil
			}, &Settings{WebhookSecrets: tt.webhook, DecisionSecrets: tt.decision, Timeout: time.Minute})
			if err == nil || opened {
				t.Errorf("NewService: error %v, store opened %v; want an error before the store", err, opened)
			}

			s := newStoreService(t, storeKinds[0].open, decision)
			if err := s.Configure(&Settings{WebhookSecrets: tt.webhook, DecisionSecrets: tt.decision, Timeout: time.Minute}); err == nil {
				t.Error("Configure accepted the settings, want an error")
			}
			h := make(http.Header)
			decision.SetHeaders(h, "msg_1", time.Now(), nil)
			if _, err := s.VerifyDecision(h, nil, time.Now()); err != nil {
				t.Errorf("after a refused Configure, the old decision secret: %v, want it still verified", err)
			}
		})
	}
}

// TestWebhookSignedWithEverySecret: each webhook carries one signature per
// webhook secret, so a receiver knowing any one of them verifies it, and
// none made with a decision secret.
func TestWebhookSignedWithEverySecret(t *testing.T) {
	first, second, decision := mustSecret(t, testSecret), mustSecret(t, "whsec_"+strings.Repeat("E", 43)+"="), mustSecret(t, testDecisionSecret)
	type message struct {
		header http.Header
		body   []byte
	}
	got := make(chan message, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		select {
		case got <- message{r.Header.Clone(), body}:
		default:
		}
	}))
	t.Cleanup(srv.Close)
	s, err := NewService(func(onChange ChangeFunc) (Store, error) { return NewMemoryStore(onChange), nil }, &Settings{
		Webhooks: []Webhook{{URL: srv.URL}}, WebhookSecrets: []Secret{first, second}, DecisionSecrets: []Secret{decision},
		CallbackURL: testCallbackURL, Timeout: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.Request(context.Background(), &Call{Server: "s", Tool: "t", Approvers: []string{"webhook"}}); err != nil {
		t.Fatal(err)
	}
	var m message
	select {
	case m = <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("no webhook arrived")
	}
	if n := len(strings.Fields(m.header.Get(HeaderSignature))); n != 2 {
		t.Errorf("%s holds %d signatures, want 2: %q", HeaderSignature, n, m.header.Get(HeaderSignature))
	}
	for name, secret := range map[string]Secret{"first": first, "second": second} {
		if _, err := secret.Verify(m.header, m.body, time.Now()); err != nil {
			t.Errorf("a receiver with the %s webhook secret: %v, want the webhook verified", name, err)
		}
	}
	if _, err := decision.Verify(m.header, m.body, time.Now()); !errors.Is(err, ErrBadSignature) {
		t.Errorf("the decision secret verifies the webhook (%v); want ErrBadSignature", err)
	}
	if _, err := s.VerifyDecision(m.header, m.body, time.Now()); !errors.Is(err, ErrBadSignature) {
		t.Errorf("the webhook, sent back as a decision: got %v, want ErrBadSignature", err)
	}
	var e Event
	if err := json.Unmarshal(m.body, &e); err != nil || strings.Join(e.Approvers, ",") != "webhook" {
		t.Errorf("webhook event approvers = %q (%v), want [webhook]", e.Approvers, err)
	}
}

func TestFormToken(t *testing.T) {
	s := newStoreService(t, storeKinds[0].open, mustSecret(t, testDecisionSecret))
	token := s.FormToken("alice", "apr_x")
	tests := []struct {
		name, token, user, id string
		want                  bool
	}{
		{"its user and approval", token, "alice", "apr_x", true},
		{"another user", token, "mallory", "apr_x", false},
		{"another approval", token, "alice", "apr_y", false},
		{"no token", "", "alice", "apr_x", false},
		{"not base64", "!!", "alice", "apr_x", false},
		{"made with the webhook secret", mustSecret(t, testSecret).formToken("alice", "apr_x"), "alice", "apr_x", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := s.CheckFormToken(tt.token, tt.user, tt.id); got != tt.want {
				t.Errorf("CheckFormToken(%q, %q, %q) = %v, want %v", tt.token, tt.user, tt.id, got, tt.want)
			}
		})
	}
}

// expiredOnUpdate is a memory store whose approvals have run out of time
// whenever they are updated, as one whose time ran out a moment ago and
// that the sweep has not expired yet.
type expiredOnUpdate struct{ Store }

// Update runs change on the approval with its time run out.
func (s expiredOnUpdate) Update(ctx context.Context, id string, change func(*Approval) error) (*Approval, error) {
	return s.Store.Update(ctx, id, func(a *Approval) error {
		a.ExpiresAt = time.Now().Add(-time.Millisecond)
		return change(a)
	})
}

// TestNoDecisionAfterExpiry: a decision that comes once the approval's
// time ran out is refused as a conflict, even before the sweep marks it
// expired; the call it was for was told it expired, and may not run.
func TestNoDecisionAfterExpiry(t *testing.T) {
	s, err := NewService(func(onChange ChangeFunc) (Store, error) {
		return expiredOnUpdate{NewMemoryStore(onChange)}, nil
	}, &Settings{
		WebhookSecrets:  []Secret{mustSecret(t, testSecret)},
		DecisionSecrets: []Secret{mustSecret(t, testDecisionSecret)},
		CallbackURL:     "https://gw.example/approvals",
		Timeout:         time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a, err := s.Request(context.Background(), &Call{Server: "files", Tool: "delete_file", Arguments: map[string]any{"path": "/x"}})
	if err != nil {
		t.Fatal(err)
	}
	admin := Decider{ID: PrincipalAdmin, Principals: []string{PrincipalAdmin}}
	if got, err := s.Decide(context.Background(), a.ID, true, admin, "late"); !errors.Is(err, ErrConflict) {
		t.Errorf("a decision after the approval's time ran out: %v, %v; want ErrConflict", got, err)
	}
	if got, err := s.Get(context.Background(), a.ID); err != nil || got.State != Pending {
		t.Errorf("the approval after the late decision: %v, %v; want it still pending (for the sweep to expire)", got, err)
	}
}

// TestRequestArgumentsBounded: a call whose arguments are larger than a
// person reviews (MaxArguments of canonical JSON) gets no approval, and
// nothing is kept or announced; one just under gets its approval.
func TestRequestArgumentsBounded(t *testing.T) {
	rc := &receiver{}
	s := newTestService(t, rc, time.Minute)
	call := func(size int) *Call {
		// {"text":"…"} is 11 bytes around the text.
		return &Call{Server: "s", Tool: "t", Arguments: map[string]any{"text": strings.Repeat("x", size-11)}}
	}
	if _, err := s.Request(context.Background(), call(MaxArguments+1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("arguments of %d bytes: %v; want ErrTooLarge", MaxArguments+1, err)
	}
	if list, err := s.List(context.Background()); err != nil || len(list) != 0 {
		t.Errorf("after the refusal the store holds %d approvals (%v); want none", len(list), err)
	}
	if _, err := s.Request(context.Background(), call(MaxArguments)); err != nil {
		t.Errorf("arguments of %d bytes: %v; want an approval", MaxArguments, err)
	}
}

// TestPendingGaugeShared: services of one instance (of different stores)
// report to one pending gauge, each its own share, so that one's count
// never overwrites another's; a stopped service takes its share out.
func TestPendingGaugeShared(t *testing.T) {
	gauge := prometheus.NewGauge(prometheus.GaugeOpts{Name: "pending"})
	start := func() *Service {
		s, err := NewService(func(onChange ChangeFunc) (Store, error) { return NewMemoryStore(onChange), nil }, &Settings{
			WebhookSecrets:  []Secret{mustSecret(t, testSecret)},
			DecisionSecrets: []Secret{mustSecret(t, testDecisionSecret)},
			CallbackURL:     testCallbackURL,
			Timeout:         time.Minute,
			Metrics:         &Metrics{Pending: gauge},
		})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	busy, idle := start(), start()
	defer idle.Close()
	if _, err := busy.Request(context.Background(), &Call{Server: "s", Tool: "t"}); err != nil {
		t.Fatal(err)
	}
	idle.refreshPending(context.Background())
	if got := testutil.ToFloat64(gauge); got != 1 {
		t.Errorf("pending with one service holding one approval and another none: %v; want 1", got)
	}
	busy.Close()
	if got := testutil.ToFloat64(gauge); got != 0 {
		t.Errorf("pending after the busy service stopped: %v; want 0", got)
	}
}

// TestPendingBounded: a caller has at most MaxPendingPerCaller approvals
// pending, and a store MaxPending: past either, a new call's approval is
// refused (ErrTooManyPending) and nothing is kept, while a call made
// again still finds the approval standing for it, and a place freed (an
// approval settled) takes a new one.
func TestPendingBounded(t *testing.T) {
	for _, kind := range storeKinds {
		t.Run(kind.name, func(t *testing.T) {
			ctx := context.Background()
			s := newStoreService(t, kind.open, mustSecret(t, testDecisionSecret))
			call := func(user string, n int) *Call {
				return &Call{Server: "s", Tool: "t", User: user, Arguments: map[string]any{"n": n}}
			}
			var first *Approval
			for n := range MaxPendingPerCaller {
				a, err := s.Request(ctx, call("mallory", n))
				if err != nil {
					t.Fatalf("mallory's approval %d: %v", n, err)
				}
				if n == 0 {
					first = a
				}
			}
			if _, err := s.Request(ctx, call("mallory", MaxPendingPerCaller)); !errors.Is(err, ErrTooManyPending) {
				t.Errorf("mallory's approval past the bound: %v; want ErrTooManyPending", err)
			}
			if again, err := s.Request(ctx, call("mallory", 0)); err != nil || again.ID != first.ID {
				t.Errorf("mallory's first call made again: %v, %v; want its approval %s", again, err, first.ID)
			}
			if _, err := s.Request(ctx, call("alice", 0)); err != nil {
				t.Errorf("alice's approval beside mallory's: %v", err)
			}
			if _, err := s.Cancel(ctx, first.ID, "the caller went away"); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Request(ctx, call("mallory", MaxPendingPerCaller)); err != nil {
				t.Errorf("mallory's approval once one settled: %v", err)
			}

			for n := range MaxPending {
				if _, err := s.Request(ctx, call(fmt.Sprintf("user%d", n), 0)); errors.Is(err, ErrTooManyPending) {
					break
				} else if err != nil {
					t.Fatal(err)
				}
			}
			if pending, err := s.store.CountPending(ctx); err != nil || pending != MaxPending {
				t.Errorf("%d approvals pending (%v); want MaxPending, %d", pending, err, MaxPending)
			}
			if _, err := s.Request(ctx, call("bob", 0)); !errors.Is(err, ErrTooManyPending) {
				t.Errorf("bob's approval past MaxPending: %v; want ErrTooManyPending", err)
			}
		})
	}
}

// TestMemoryStoreForgetsOldest: a memory store remembers at most
// maxRemembered approvals that are no longer live, those that would be
// forgotten first going first, and never a live one.
func TestMemoryStoreForgetsOldest(t *testing.T) {
	ctx := context.Background()
	store := NewMemoryStore(func(string) {})
	now := time.Now()
	live := pendingApproval("live", now, time.Hour)
	if _, _, err := store.Create(ctx, live, now); err != nil {
		t.Fatal(err)
	}
	for n := range maxRemembered + 500 {
		a := pendingApproval(fmt.Sprintf("b%d", n), now, time.Hour)
		if _, _, err := store.Create(ctx, a, now); err != nil {
			t.Fatal(err)
		}
		if _, err := store.Update(ctx, a.ID, func(a *Approval) error { return a.decide(Cancelled, Decider{ID: "client"}, "gone", now, 0) }); err != nil {
			t.Fatal(err)
		}
	}
	list, err := store.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) > maxRemembered+1 {
		t.Errorf("the store remembers %d approvals; want at most %d", len(list), maxRemembered+1)
	}
	if _, err := store.Get(ctx, live.ID); err != nil {
		t.Errorf("the live approval was forgotten: %v", err)
	}
}

// TestDeliveriesBounded: a receiver that is down while held calls come
// and go (each leaving a cancellation to announce, retried for the
// approval timeout) has at most maxDeliveries deliveries under way, not
// one for each event: the events past it are not sent.
func TestDeliveriesBounded(t *testing.T) {
	ctx := context.Background()
	var mu sync.Mutex
	cancellations := map[string]bool{}
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id := r.Header.Get("webhook-id"); strings.HasSuffix(id, "_cancelled") {
			mu.Lock()
			cancellations[id] = true
			mu.Unlock()
		}
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	t.Cleanup(down.Close)
	s, err := NewService(func(onChange ChangeFunc) (Store, error) { return NewMemoryStore(onChange), nil }, &Settings{
		Webhooks:        []Webhook{{URL: down.URL}},
		WebhookSecrets:  []Secret{mustSecret(t, testSecret)},
		DecisionSecrets: []Secret{mustSecret(t, testDecisionSecret)},
		CallbackURL:     "https://gw.example/approvals",
		Timeout:         time.Hour,
		FirstRetry:      time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	const events = maxDeliveries + 500
	for n := range events {
		a, err := s.Request(ctx, &Call{Server: "s", Tool: "t", User: fmt.Sprintf("user%d", n), Arguments: map[string]any{}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Cancel(ctx, a.ID, "the caller went away"); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(500 * time.Millisecond) // each delivery under way makes its first attempt
	mu.Lock()
	sent := len(cancellations)
	mu.Unlock()
	if sent == 0 || sent > maxDeliveries {
		t.Errorf("%d of %d cancellations sent to a receiver that is down, each retried for an hour; want some, at most %d", sent, events, maxDeliveries)
	}
}

// TestPendingBoundedUnderConcurrency: calls of one caller asking at the
// same moment get at most MaxPendingPerCaller approvals between them.
func TestPendingBoundedUnderConcurrency(t *testing.T) {
	for _, kind := range storeKinds {
		t.Run(kind.name, func(t *testing.T) {
			ctx := context.Background()
			s := newStoreService(t, kind.open, mustSecret(t, testDecisionSecret))
			var created atomic.Int64
			var wg sync.WaitGroup
			for n := range 3 * MaxPendingPerCaller {
				wg.Go(func() {
					if _, err := s.Request(ctx, &Call{Server: "s", Tool: "t", User: "mallory", Arguments: map[string]any{"n": n}}); err == nil {
						created.Add(1)
					} else if !errors.Is(err, ErrTooManyPending) {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			if got := created.Load(); got != MaxPendingPerCaller {
				t.Errorf("%d approvals created for one caller asking %d times at once; want %d", got, 3*MaxPendingPerCaller, MaxPendingPerCaller)
			}
		})
	}
}

// TestPendingBoundPerExactCaller: the bound on a caller's pending
// approvals counts callers as their approvals' bindings tell them apart:
// one user id in two realms is two callers, as is one session id on two
// servers. A caller who fills the bound never refuses another's call.
func TestPendingBoundPerExactCaller(t *testing.T) {
	tests := []struct {
		name          string
		filler, other Call
	}{
		{"one user id, two realms",
			Call{Server: "a", Tool: "t", User: "alice", Realm: `jwt issuer "https://attacker.example"`},
			Call{Server: "b", Tool: "t", User: "alice", Realm: `jwt issuer "https://corp.example"`}},
		{"one user id, a realm and none",
			Call{Server: "a", Tool: "t", User: "alice", Realm: "basic"},
			Call{Server: "a", Tool: "t", User: "alice"}},
		{"one session id, two servers",
			Call{Server: "a", Tool: "t", Session: "s1"},
			Call{Server: "b", Tool: "t", Session: "s1"}},
		{"a session id that looks like a user",
			Call{Server: "a", Tool: "t", Session: "alice"},
			Call{Server: "a", Tool: "t", User: "alice"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			s := newStoreService(t, storeKinds[0].open, mustSecret(t, testDecisionSecret))
			for n := range MaxPendingPerCaller {
				call := tt.filler
				call.Arguments = map[string]any{"n": n}
				if _, err := s.Request(ctx, &call); err != nil {
					t.Fatalf("filler's approval %d: %v", n, err)
				}
			}
			call := tt.filler
			call.Arguments = map[string]any{"n": MaxPendingPerCaller}
			if _, err := s.Request(ctx, &call); !errors.Is(err, ErrTooManyPending) {
				t.Fatalf("filler's approval past the bound: %v; want ErrTooManyPending", err)
			}
			other := tt.other
			other.Arguments = map[string]any{"n": 0}
			if _, err := s.Request(ctx, &other); err != nil {
				t.Errorf("another caller's approval beside the filler's: %v", err)
			}
		})
	}
}

// TestRequestStopsWaitingWhenItsCallerGoes: a request waiting for its turn
// to ask for an approval (another's is being created, behind a slow
// store) stops waiting when its context ends.
func TestRequestStopsWaitingWhenItsCallerGoes(t *testing.T) {
	s := newStoreService(t, storeKinds[0].open, mustSecret(t, testDecisionSecret))
	turn := s.turnOf(callerKey(&Call{User: "alice"}))
	turn <- struct{}{} // another request's turn, of alice's stripe, that does not end
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := s.Request(ctx, &Call{Server: "s", Tool: "t", User: "alice", Arguments: map[string]any{}})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Request while another's turn lasts: %v; want it to stop when its context ends", err)
	}
	<-turn
	if _, err := s.Request(context.Background(), &Call{Server: "s", Tool: "t", User: "alice", Arguments: map[string]any{}}); err != nil {
		t.Errorf("Request once the turn is free: %v", err)
	}
}

// TestChangedForgotten: the service remembers an approval's next change
// only while someone waits on it: each waiter's stop (once, however often
// called) lets it go when the last stops, a change wakes every waiter,
// and a stop after a change leaves those waiting anew alone.
func TestChangedForgotten(t *testing.T) {
	s := newTestService(t, &receiver{}, time.Minute)
	remembered := func() int {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.changed)
	}
	_, stopFirst := s.Changed("a")
	_, stopSecond := s.Changed("a")
	stopFirst()
	stopFirst()
	if remembered() != 1 {
		t.Fatalf("%d approvals remembered while one still waits on a; want 1", remembered())
	}
	stopSecond()
	if remembered() != 0 {
		t.Fatalf("%d approvals remembered once nobody waits; want 0", remembered())
	}
	first, stopFirst := s.Changed("a")
	s.notify("a")
	select {
	case <-first:
	default:
		t.Fatal("a change did not wake its waiter")
	}
	again, stopAgain := s.Changed("a")
	stopFirst() // the change came: it waited on another round
	if remembered() != 1 {
		t.Fatalf("%d approvals remembered after a stale stop; want a's new waiter kept", remembered())
	}
	s.notify("a")
	<-again
	stopAgain()
	if remembered() != 0 {
		t.Fatalf("%d approvals remembered at the end; want 0", remembered())
	}
}
