package approval

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

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
	secret, err := ParseSecret(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	rc.secret = secret
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	s, err := NewService(func(onChange ChangeFunc) (Store, error) { return NewMemoryStore(onChange), nil }, &Settings{
		Webhooks:    []string{srv.URL},
		Secret:      secret,
		CallbackURL: "https://gw.example/approvals",
		Timeout:     timeout,
		FirstRetry:  20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
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
	if _, err := s.Decide(ctx, a.ID, true, "late", ""); !errors.Is(err, ErrConflict) {
		t.Errorf("approving an expired approval: got %v, want ErrConflict", err)
	}
}

// TestOnlyItsSecretDecides: gateways sharing a Redis but not a secret see
// each other's approvals, but none owns the other's, so none can decide
// them (the callback API and the inbox look for the owner).
func TestOnlyItsSecretDecides(t *testing.T) {
	address := redistest.Start(t)
	open := func(secret string) *Service {
		key, err := ParseSecret(secret)
		if err != nil {
			t.Fatal(err)
		}
		s, err := NewService(func(onChange ChangeFunc) (Store, error) { return NewRedisStore(address, onChange) },
			&Settings{Secret: key, CallbackURL: "https://gw.example/approvals", Timeout: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	mine, theirs := open(testSecret), open("whsec_"+strings.Repeat("B", 43)+"=")
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
}
