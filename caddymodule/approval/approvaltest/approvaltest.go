// Package approvaltest holds test helpers for code built on package
// approval: real approval services (over the in-memory store, or over a
// Redis store that cannot be reached) signed with real secrets, the
// approvals they hold, and a list of services to find approvals in, as a
// host's pool of services finds them.
package approvaltest

import (
	"context"
	"crypto/rand"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/caddymodule/approval"
)

// The secrets of the services Settings describes: webhooks are signed
// with WebhookSecret, decisions with DecisionSecret.
const (
	WebhookSecret  = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	DecisionSecret = "whsec_ZGVjaXNpb25zIGFyZSBzaWduZWQgd2l0aCB0aGlzIGtleQ=="
)

// unreachableRedis is a Redis address where nothing listens (port 1 of
// the loopback address), tried once per command rather than retried, so
// that a test waits less for the failure.
const unreachableRedis = "redis://127.0.0.1:1?max_retries=-1"

// MustSecret parses a secret, failing the test if it cannot.
func MustSecret(t testing.TB, s string) approval.Secret {
	t.Helper()
	secret, err := approval.ParseSecret(s)
	if err != nil {
		t.Fatalf("parsing secret %q: %v", s, err)
	}
	return secret
}

// Settings returns the settings of a test's approval service: webhooks
// signed with WebhookSecret (sent to no receiver), decisions signed with
// DecisionSecret and called back at https://gw.example/approvals, and a
// minute to decide.
func Settings(t testing.TB) *approval.Settings {
	t.Helper()
	return &approval.Settings{
		WebhookSecrets:  []approval.Secret{MustSecret(t, WebhookSecret)},
		DecisionSecrets: []approval.Secret{MustSecret(t, DecisionSecret)},
		CallbackURL:     "https://gw.example/approvals",
		Timeout:         time.Minute,
	}
}

// NewService starts an approval service with settings (Settings, when
// nil) over the in-memory store, and closes it when the test ends.
func NewService(t testing.TB, settings *approval.Settings) *approval.Service {
	t.Helper()
	return start(t, func(onChange approval.ChangeFunc) (approval.Store, error) {
		return approval.NewMemoryStore(onChange), nil
	}, settings)
}

// NewSharingServices starts two approval services over one in-memory
// store, as two gateways that share a Redis are, with the settings given
// (Settings, when nil), and closes them when the test ends.
func NewSharingServices(t testing.TB, first, second *approval.Settings) (*approval.Service, *approval.Service) {
	t.Helper()
	var mu sync.Mutex
	var told []approval.ChangeFunc
	store := approval.NewMemoryStore(func(id string) {
		mu.Lock()
		callbacks := slices.Clone(told)
		mu.Unlock()
		for _, onChange := range callbacks {
			onChange(id)
		}
	})
	open := func(onChange approval.ChangeFunc) (approval.Store, error) {
		mu.Lock()
		told = append(told, onChange)
		mu.Unlock()
		return store, nil
	}
	return start(t, open, first), start(t, open, second)
}

// NewUnreachableService starts an approval service with settings
// (Settings, when nil) whose store is a Redis that cannot be reached, as
// when the gateway loses its Redis, and closes it when the test ends:
// every read and write of an approval fails, after a moment.
func NewUnreachableService(t testing.TB, settings *approval.Settings) *approval.Service {
	t.Helper()
	return start(t, func(onChange approval.ChangeFunc) (approval.Store, error) {
		return approval.NewRedisStore(unreachableRedis, "", onChange)
	}, settings)
}

// start starts an approval service over the store newStore makes.
func start(t testing.TB, newStore func(approval.ChangeFunc) (approval.Store, error), settings *approval.Settings) *approval.Service {
	t.Helper()
	if settings == nil {
		settings = Settings(t)
	}
	s, err := approval.NewService(newStore, settings)
	if err != nil {
		t.Fatalf("starting the approval service: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Request asks s for a new approval of a call that approvers may decide
// (any reviewer, when none are given): delete_file on server files, with
// the argument path /srv/report.txt, in a session of its own.
func Request(t testing.TB, s *approval.Service, approvers ...string) *approval.Approval {
	t.Helper()
	a, err := s.Request(context.Background(), &approval.Call{
		Session:   "session-" + rand.Text(),
		Server:    "files",
		Tool:      "delete_file",
		Arguments: map[string]any{"path": "/srv/report.txt"},
		Reason:    "deletes a file",
		Approvers: approvers,
	})
	if err != nil {
		t.Fatalf("requesting an approval: %v", err)
	}
	return a
}

// ApproveAsAdmin approves approval id in s as the admin API does.
func ApproveAsAdmin(t testing.TB, s *approval.Service, id string) {
	t.Helper()
	admin := approval.Decider{ID: approval.PrincipalAdmin, Principals: []string{approval.PrincipalAdmin}}
	if _, err := s.Decide(context.Background(), id, true, admin, "fine"); err != nil {
		t.Fatalf("approving %s as the admin: %v", id, err)
	}
}

// Services finds approvals among a list of services, as a host's pool of
// approval services does (package approvalhttp's Services).
type Services []*approval.Service

// Find returns the first service that knows and owns approval id, among
// those accept accepts (see approval.Find).
func (l Services) Find(ctx context.Context, id string, accept func(*approval.Service) bool) (*approval.Service, error) {
	return approval.Find(ctx, l.Each, id, accept)
}

// Each calls f for every service, until f returns false.
func (l Services) Each(f func(*approval.Service) bool) {
	for _, s := range l {
		if !f(s) {
			return
		}
	}
}
