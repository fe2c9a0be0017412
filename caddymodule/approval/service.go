package approval

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"iter"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Settings are what a configuration says about approvals. A Service keeps
// the last settings it was given: they change with a config reload while
// its approvals stay.
type Settings struct {
	// Webhooks are the receivers that approval events are POSTed to.
	Webhooks []Webhook
	// WebhookSecrets sign outgoing webhooks, each message with every one
	// of them, so that receivers can rotate at their own pace. At least
	// one is required.
	WebhookSecrets []Secret
	// DecisionSecrets verify incoming decisions: one signed with any of
	// them is authentic. New approvals are bound to the first (see
	// Approval.KeyID), so a rotation lists the new secret first and keeps
	// the old one until the approvals announced under it are settled. At
	// least one is required, and none may be a webhook secret: whoever
	// receives approval requests must not be able to decide them.
	DecisionSecrets []Secret
	// CallbackURL is where decisions come in, as CallbackURL/<id>; no
	// trailing slash.
	CallbackURL string
	// InboxURL, when set, is the URL of the inbox page; webhook events
	// and InboxLink then link to each approval there, as
	// InboxURL?approval=<id>.
	InboxURL string
	// Timeout is how long an approval waits for a decision, and how long
	// a decision then waits for its call to be made again.
	Timeout time.Duration
	// Logger receives one entry for every approval event.
	Logger *zap.Logger
	// Audit, when set, receives one audit record per approval settled
	// (approved, denied, cancelled, expired), with who settled it.
	Audit *zap.Logger
	// Metrics, when set, count pending approvals and observe waits.
	Metrics *Metrics
	// Client sends webhooks; nil means http.DefaultClient's transport.
	// Whichever it is, redirects are not followed (see Configure).
	Client *http.Client
	// FirstRetry is the delay before the first retry of a webhook that
	// failed; zero means one second.
	FirstRetry time.Duration
}

// Metrics are the approval metrics a Service keeps up to date.
type Metrics struct {
	// Pending is the number of pending approvals in the store.
	Pending prometheus.Gauge
	// Wait observes how long approvals waited, by outcome (the state they
	// left pending for).
	Wait prometheus.ObserverVec
}

// Service keeps the approvals of one store: it creates and announces
// them, takes decisions, expires them, and wakes the calls held on them,
// whichever gateway sharing the store changed them.
type Service struct {
	store    Store
	settings atomic.Pointer[Settings]

	ctx    context.Context
	cancel context.CancelFunc
	// work tracks the goroutines the service owns: webhook deliveries
	// and the sweeper.
	work sync.WaitGroup

	mu sync.Mutex
	// changed holds, per approval id waited on, a channel closed at its
	// next change, and how many wait on it.
	changed map[string]*waiters

	// creating holds, per stripe of callers, a token while the bounds on
	// a caller's pending approvals are checked and an approval created,
	// a single step (see createBounded): channels rather than mutexes, so
	// that a request whose caller went away stops waiting behind a slow
	// store; stripes, so that one caller's requests wait only on those of
	// the callers that share its stripe.
	creating [createStripes]chan struct{}

	callersMu sync.Mutex
	// byCaller holds, per caller (see callerKey), the ids of the
	// approvals this service created for them that were pending when last
	// looked at.
	byCaller map[string][]string

	// deliveries holds a token for each webhook delivery running (at most
	// maxDeliveries).
	deliveries chan struct{}

	reportMu sync.Mutex
	// reported is what the service last added to a pending gauge.
	reported pendingReport
}

// pendingReport is a service's share of a pending gauge: services of one
// instance (of different stores) share the gauge, each adding its own
// count, so that none overwrites another's.
type pendingReport struct {
	gauge prometheus.Gauge
	count float64
}

// sweepInterval is how often pending approvals are checked for expiry,
// and the pending gauge refreshed.
const sweepInterval = time.Second

// callersSweepTicks is how many sweeps apart the callers' counts are
// cleared of settled approvals (a minute).
const callersSweepTicks = 60

// NewService starts a service over the store that newStore makes (given
// the function that the store must tell of every change). It refuses
// settings that Configure would refuse, before making the store.
func NewService(newStore func(ChangeFunc) (Store, error), settings *Settings) (*Service, error) {
	s := &Service{changed: make(map[string]*waiters), byCaller: make(map[string][]string), deliveries: make(chan struct{}, maxDeliveries)}
	for i := range s.creating {
		s.creating[i] = make(chan struct{}, 1)
	}
	if err := s.Configure(settings); err != nil {
		return nil, err
	}
	store, err := newStore(s.notify)
	if err != nil {
		return nil, err
	}
	s.store = store
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.work.Go(s.sweep)
	return s, nil
}

// Configure replaces the service's settings. It refuses, keeping the
// current settings, secrets that CheckDistinctSecrets refuses.
func (s *Service) Configure(settings *Settings) error {
	if err := CheckDistinctSecrets(settings.WebhookSecrets, settings.DecisionSecrets); err != nil {
		return fmt.Errorf("configuring approvals: %w", err)
	}
	c := *settings
	c.Webhooks = slices.Clone(c.Webhooks)
	c.WebhookSecrets = slices.Clone(c.WebhookSecrets)
	c.DecisionSecrets = slices.Clone(c.DecisionSecrets)
	// A webhook's URL is a credential (a Slack webhook's is), and its
	// event what the call carries: a receiver that answers with a
	// redirect does not get them sent on to another host (a 307 or 308
	// sends the event again, any redirect the URL as Referer). The 3xx
	// is an answer other than 2xx: the delivery is tried again.
	client := http.Client{}
	if c.Client != nil {
		client = *c.Client
	}
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c.Client = &client
	if c.FirstRetry <= 0 {
		c.FirstRetry = defaultFirstRetry
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	s.settings.Store(&c)
	return nil
}

// VerifyDecision checks the Standard Webhooks headers of a decision
// callback with body, received at now, against every decision secret,
// and returns its webhook-id. Errors wrap ErrUnsigned, ErrBadSignature or
// ErrStale.
func (s *Service) VerifyDecision(h http.Header, body []byte, now time.Time) (webhookID string, err error) {
	return verify(h, body, now, s.settings.Load().DecisionSecrets)
}

// FormToken returns the token that the inbox page's form for approval id
// carries for user: an HMAC under the first decision secret, so that no
// other site can make a signed-in approver's browser decide.
func (s *Service) FormToken(user, id string) string {
	return s.settings.Load().DecisionSecrets[0].formToken(user, id)
}

// CheckFormToken reports whether token is a form token for user and
// approval id under any decision secret, so that pages served before a
// rotation still work.
func (s *Service) CheckFormToken(token, user, id string) bool {
	return slices.ContainsFunc(s.settings.Load().DecisionSecrets, func(secret Secret) bool {
		return secret.checkFormToken(token, user, id)
	})
}

// Close stops the service's goroutines and closes its store. Calls still
// held see Done closed.
func (s *Service) Close() error {
	s.cancel()
	s.work.Wait()
	s.report(nil, 0)
	return s.store.Close()
}

// Done is closed when the service stops.
func (s *Service) Done() <-chan struct{} {
	return s.ctx.Done()
}

// Request returns the approval that stands for call: a live one for the
// same binding (pending, or decided and not yet used) under one of the
// service's decision secrets, or else a new pending approval, announced by
// webhook. An approval of a gateway that shares the store but not a
// decision secret never stands for the call: this gateway's reviewers
// decide its calls.
func (s *Service) Request(ctx context.Context, call *Call) (*Approval, error) {
	b, err := call.bind()
	if err != nil {
		return nil, err
	}
	if len(b.arguments) > MaxArguments {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, len(b.arguments), MaxArguments)
	}
	caller := callerKey(call)
	settings := s.settings.Load()
	now := time.Now()
	a := &Approval{
		ID:          newID(),
		Binding:     b.binding,
		Server:      call.Server,
		Tool:        call.Tool,
		ToolHash:    call.ToolHash,
		Arguments:   b.arguments,
		Reason:      call.Reason,
		User:        call.User,
		Session:     call.Session,
		Approvers:   b.approvers,
		KeyID:       settings.DecisionSecrets[0].ID(),
		RequestedAt: now,
		ExpiresAt:   now.Add(settings.Timeout),
		State:       Pending,
		Unannounced: len(settings.Webhooks) > 0,
	}
	var olderKeys []string
	for _, secret := range settings.DecisionSecrets[1:] {
		olderKeys = append(olderKeys, secret.ID())
	}
	got, created, err := s.createBounded(ctx, a, caller, now, olderKeys)
	if err != nil {
		return nil, err
	}
	if created {
		settings.Logger.Info("approval requested",
			zap.String("id", a.ID), zap.String("server", a.Server), zap.String("tool", a.Tool),
			zap.String("user", a.User), zap.String("session", a.Session), zap.Strings("approvers", a.Approvers),
			zap.String("reason", a.Reason), zap.Time("expires_at", a.ExpiresAt))
		s.refreshPending(ctx)
	}
	return got, nil
}

// errAnnounced is why announceRequested's mark finds nothing to do.
var errAnnounced = errors.New("announced already")

// announceRequested announces a pending approval to the webhooks, once:
// the gateway that clears its Unannounced mark (an atomic change of the
// store) announces it, and no other; when the store cannot be reached to
// clear it, it is announced all the same (a receiver tells a second
// announcement by its webhook-id).
func (s *Service) announceRequested(a *Approval) {
	if len(s.settings.Load().Webhooks) == 0 {
		return
	}
	_, err := s.store.Update(s.ctx, a.ID, func(current *Approval) error {
		if !current.Unannounced {
			return errAnnounced
		}
		current.Unannounced = false
		return nil
	})
	switch {
	case errors.Is(err, errAnnounced):
		return
	case err != nil:
		s.settings.Load().Logger.Warn("approval announced without its mark cleared: a call made again may announce it again (same webhook-id)",
			zap.String("id", a.ID), zap.Error(err))
	}
	s.announce(EventRequested, a)
}

// announceIfUnannounced announces a, an approval that stands for a call,
// when it is pending under one of this gateway's decision secrets and
// was never announced: saved by a Create whose answer was lost.
func (s *Service) announceIfUnannounced(a *Approval) {
	if a.State == Pending && a.Unannounced && s.Owns(a) {
		s.settings.Load().Logger.Info("approval found pending but never announced (its creation's answer was lost); announcing it",
			zap.String("id", a.ID))
		s.announceRequested(a)
	}
}

// createStripes is how many stripes of callers check and create their
// approvals apart.
const createStripes = 64

// createBounded creates a (see Store.Create) within the bounds on pending
// approvals (checkPending), or returns the approval that stands for its
// call (made again once a hold ran out) even past them. A caller's
// requests are checked and created one at a time, so that its calls
// coming together cannot all pass its bound at the last place; callers
// apart, and gateways sharing a Redis, check theirs side by side
// (MaxPending may be passed by as many as ask at the same moment). An
// approval created is announced, and one found that never was (see
// Approval.Unannounced), within the same turn.
func (s *Service) createBounded(ctx context.Context, a *Approval, caller string, now time.Time, olderKeys []string) (*Approval, bool, error) {
	turn := s.turnOf(caller)
	select {
	case turn <- struct{}{}:
		defer func() { <-turn }()
	case <-ctx.Done():
		return nil, false, fmt.Errorf("waiting to ask for an approval: %w", ctx.Err())
	}
	if err := s.checkPending(ctx, caller); err != nil {
		if standing, serr := s.store.Standing(ctx, a, now, olderKeys...); serr == nil {
			s.announceIfUnannounced(standing)
			return standing, false, nil
		}
		return nil, false, err
	}
	got, created, err := s.store.Create(ctx, a, now, olderKeys...)
	if err != nil {
		return nil, false, err
	}
	if !created {
		s.announceIfUnannounced(got)
		return got, false, nil
	}
	if caller != "" {
		s.callersMu.Lock()
		s.byCaller[caller] = append(s.byCaller[caller], a.ID)
		s.callersMu.Unlock()
	}
	s.announceRequested(a)
	return got, true, nil
}

// turnOf returns the token of the caller's stripe (see creating).
func (s *Service) turnOf(caller string) chan struct{} {
	stripe := fnv.New32a()
	_, _ = stripe.Write([]byte(caller))
	return s.creating[stripe.Sum32()%createStripes]
}

// callerKey names whom a call's approval counts against for
// MaxPendingPerCaller: the call's caller as its binding names it (see
// Call.caller), a session together with its server (two upstreams may
// hand out one session id); "" for a caller with neither a user nor a
// session, who counts against MaxPending alone.
func callerKey(call *Call) string {
	caller := call.caller()
	if call.User == "" && caller != "" {
		return fmt.Sprintf("%d:%s:%s", len(call.Server), call.Server, caller)
	}
	return caller
}

// checkPending refuses a new approval when the store has MaxPending
// pending, or the caller MaxPendingPerCaller (of those this service
// created). The caller holds its stripe's creating token.
func (s *Service) checkPending(ctx context.Context, caller string) error {
	n, err := s.store.CountPending(ctx)
	if err != nil {
		return err
	}
	if n >= MaxPending {
		return fmt.Errorf("%w: %d are pending, at most %d", ErrTooManyPending, n, MaxPending)
	}
	if caller == "" {
		return nil
	}
	s.callersMu.Lock()
	ids := slices.Clone(s.byCaller[caller])
	s.callersMu.Unlock()
	if len(ids) < MaxPendingPerCaller {
		return nil
	}
	settled, err := s.settledOf(ctx, ids)
	if err != nil {
		return err
	}
	if count := s.dropSettled(caller, settled); count >= MaxPendingPerCaller {
		return fmt.Errorf("%w: the caller has %d pending, at most %d", ErrTooManyPending, count, MaxPendingPerCaller)
	}
	return nil
}

// settledOf returns those of ids whose approvals are no longer pending
// (or no longer known).
func (s *Service) settledOf(ctx context.Context, ids []string) (map[string]bool, error) {
	settled := make(map[string]bool)
	for _, id := range ids {
		a, err := s.store.Get(ctx, id)
		switch {
		case errors.Is(err, ErrNotFound):
			settled[id] = true
		case err != nil:
			return nil, err
		case a.State != Pending:
			settled[id] = true
		}
	}
	return settled, nil
}

// dropSettled takes the settled ids out of a caller's, and returns how
// many are left. A caller left with none is forgotten.
func (s *Service) dropSettled(caller string, settled map[string]bool) int {
	s.callersMu.Lock()
	defer s.callersMu.Unlock()
	rest := slices.DeleteFunc(s.byCaller[caller], func(id string) bool { return settled[id] })
	if len(rest) == 0 {
		delete(s.byCaller, caller)
	} else {
		s.byCaller[caller] = rest
	}
	return len(rest)
}

// forgetSettledCallers drops from byCaller the approvals no longer
// pending, and the callers left with none.
func (s *Service) forgetSettledCallers(ctx context.Context) {
	s.callersMu.Lock()
	callers := make(map[string][]string, len(s.byCaller))
	for caller, ids := range s.byCaller {
		callers[caller] = slices.Clone(ids)
	}
	s.callersMu.Unlock()
	for caller, ids := range callers {
		settled, err := s.settledOf(ctx, ids)
		if err != nil {
			return
		}
		s.dropSettled(caller, settled)
	}
}

// MaxArguments bounds a held call's arguments, in bytes of canonical JSON:
// an approval keeps them (in memory or Redis) for its timeout and an hour
// after, shows them in the inbox and sends them to every webhook, so a
// caller making calls with arguments as large as a body would make the
// gateway keep and send a body's worth for each. A person reviews what
// fits on a page.
const MaxArguments = 64 << 10

// Owns reports whether the approval's key (see Approval.KeyID) is one of
// this service's decision secrets, and so whether the service may decide
// it: gateways that share a Redis but not a decision secret cannot decide
// each other's approvals, and a rotation keeps the approvals announced
// under an old secret decidable while that secret is listed.
func (s *Service) Owns(a *Approval) bool {
	return slices.ContainsFunc(s.settings.Load().DecisionSecrets, func(secret Secret) bool {
		return secret.ID() == a.KeyID
	})
}

// Find returns the service, among services, whose store knows approval
// id, that owns it (see Owns), and which accept, when given, accepts. Its
// error wraps ErrNotFound when there is none, an id not spelled as an
// approval's among them; it is a store's error instead when a store could
// not be read and no service was found: the approval may exist, and the
// decider should try again rather than be told it does not.
func Find(ctx context.Context, services iter.Seq[*Service], id string, accept func(*Service) bool) (*Service, error) {
	if !ValidID(id) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	var storeErr error
	for s := range services {
		if accept != nil && !accept(s) {
			continue
		}
		a, err := s.Get(ctx, id)
		switch {
		case err == nil && s.Owns(a):
			return s, nil
		case err != nil && !errors.Is(err, ErrNotFound):
			storeErr = err
		}
	}
	if storeErr != nil {
		return nil, fmt.Errorf("finding approval %s: %w", id, storeErr)
	}
	return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
}

// Get returns the approval with the id.
func (s *Service) Get(ctx context.Context, id string) (*Approval, error) {
	return s.store.Get(ctx, id)
}

// List returns the approvals the store remembers, oldest first.
func (s *Service) List(ctx context.Context) ([]*Approval, error) {
	return s.store.List(ctx)
}

// Decide approves or denies a pending approval on behalf of by, who must
// be entitled to (see Approval.Entitled; ErrNotEntitled otherwise). The
// check and the decision are one atomic change of the store. The first
// decision wins: a later one gets ErrConflict.
func (s *Service) Decide(ctx context.Context, id string, approve bool, by Decider, reason string) (*Approval, error) {
	to := Denied
	if approve {
		to = Approved
	}
	return s.settle(ctx, id, to, by, reason, func(a *Approval, now time.Time) error {
		if err := a.entitle(by); err != nil {
			return err
		}
		if a.State == Pending && !now.Before(a.ExpiresAt) {
			// Expired, though the sweep has not marked it yet: the caller
			// was told so, and it may not run now.
			return fmt.Errorf("%w: approval %s expired at %s", ErrConflict, id, a.ExpiresAt.Format(time.RFC3339))
		}
		return nil
	})
}

// Cancel cancels a pending approval, because the caller cancelled the
// call or went away (why), and announces it.
func (s *Service) Cancel(ctx context.Context, id, why string) (*Approval, error) {
	return s.settle(ctx, id, Cancelled, Decider{ID: "client"}, why, nil)
}

// Expire expires a pending approval whose time ran out, and announces it.
// Several gateways may try; one does it.
func (s *Service) Expire(ctx context.Context, id string) (*Approval, error) {
	return s.settle(ctx, id, Expired, Decider{ID: "timeout"}, "no decision in time", func(a *Approval, now time.Time) error {
		if now.Before(a.ExpiresAt) {
			return fmt.Errorf("%w: approval %s expires at %s", ErrConflict, id, a.ExpiresAt)
		}
		return nil
	})
}

// settle moves a pending approval to a final state, if allowed (when
// given) lets it, in one atomic change of the store; logs who did it and
// how long it waited, and announces cancellations and expiries.
func (s *Service) settle(ctx context.Context, id string, to State, by Decider, reason string, allowed func(*Approval, time.Time) error) (*Approval, error) {
	settings := s.settings.Load()
	now := time.Now()
	a, err := s.store.Update(ctx, id, func(a *Approval) error {
		if allowed != nil {
			if err := allowed(a, now); err != nil {
				return err
			}
		}
		return a.decide(to, by, reason, now, settings.Timeout)
	})
	if err != nil {
		return nil, err
	}
	waited := a.Waited(now)
	settings.Logger.Info("approval settled",
		zap.String("id", a.ID), zap.String("state", string(to)), zap.String("server", a.Server), zap.String("tool", a.Tool),
		zap.String("user", a.User), zap.String("by", a.Approver), zap.String("by_claim", a.ApproverClaim),
		zap.String("reason", reason), zap.Duration("waited", waited))
	if settings.Audit != nil {
		settings.Audit.Info("approval settled",
			zap.String("outcome", string(to)), zap.String("approval", a.ID), zap.String("server", a.Server), zap.String("tool", a.Tool),
			zap.String("user", a.User), zap.String("session", a.Session), zap.Strings("approvers", a.Approvers),
			zap.String("approver", a.Approver), zap.String("approver_claim", a.ApproverClaim),
			zap.String("reason", reason), zap.Duration("waited", waited))
	}
	if m := settings.Metrics; m != nil {
		m.Wait.WithLabelValues(string(to)).Observe(waited.Seconds())
	}
	switch to {
	case Cancelled:
		s.announce(EventCancelled, a)
	case Expired:
		s.announce(EventExpired, a)
	}
	s.refreshPending(ctx)
	return a, nil
}

// Use uses up a decided approval: the approved call is about to run, or
// the caller is told of the denial. Only one caller can use an approval;
// the others get ErrConflict.
func (s *Service) Use(ctx context.Context, id string) (*Approval, error) {
	now := time.Now()
	a, err := s.store.Update(ctx, id, func(a *Approval) error {
		if !s.Owns(a) {
			// Another gateway's approval, decided by its reviewers.
			return fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		return a.deliver(now)
	})
	if err != nil {
		return nil, err
	}
	s.settings.Load().Logger.Info("approval used",
		zap.String("id", a.ID), zap.String("state", string(a.State)),
		zap.String("server", a.Server), zap.String("tool", a.Tool), zap.String("user", a.User),
		zap.Duration("since_decision", now.Sub(a.DecidedAt)))
	return a, nil
}

// ClaimScope names where Claim records its keys (see Store.Scope): keys
// claimed through services of one scope are claimed for them all.
func (s *Service) ClaimScope() string {
	return s.store.Scope()
}

// Claim records a one-time key (a caller's confirmation nonce) for ttl, and returns ErrReplayed if it was recorded
// before, by this gateway or another sharing the store. The ttl must cover
// as long as the key could be presented again and accepted otherwise.
func (s *Service) Claim(ctx context.Context, key string, ttl time.Duration) error {
	fresh, err := s.store.Claim(ctx, key, ttl)
	if err != nil {
		return err
	}
	if !fresh {
		return fmt.Errorf("%w: %s", ErrReplayed, key)
	}
	return nil
}

// Unclaim forgets a key Claim recorded (a confirmation whose call did not
// run after all), so that it may be claimed again.
func (s *Service) Unclaim(ctx context.Context, key string) error {
	return s.store.Unclaim(ctx, key)
}

// waiters are those waiting for the next change of an approval.
type waiters struct {
	ch chan struct{}
	n  int
}

// Changed returns a channel closed at the next change of the approval,
// made by this gateway or another sharing the store, and stop, to call
// once the channel is no longer waited on (it may be called more than
// once). Take it before reading the approval, so that no change falls in
// between. The service remembers only approvals waited on: one settled
// for good (expired, cancelled) while a call waited on it would otherwise
// stay remembered, since it never changes again.
func (s *Service) Changed(id string) (changed <-chan struct{}, stop func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w, ok := s.changed[id]
	if !ok {
		w = &waiters{ch: make(chan struct{})}
		s.changed[id] = w
	}
	w.n++
	var once sync.Once
	return w.ch, func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			// After a change, the id may be waited on anew, by others.
			if w.n--; w.n == 0 && s.changed[id] == w {
				delete(s.changed, id)
			}
		})
	}
}

// notify wakes whoever waits for a change of the approval.
func (s *Service) notify(id string) {
	s.mu.Lock()
	w, ok := s.changed[id]
	delete(s.changed, id)
	s.mu.Unlock()
	if ok {
		close(w.ch)
	}
}

// sweep expires pending approvals whose time ran out (whether or not a
// call is held on them), lets the store forget old ones, and keeps the
// pending gauge current.
func (s *Service) sweep() {
	ticker := time.NewTicker(sweepInterval)
	defer ticker.Stop()
	for tick := 1; ; tick++ {
		select {
		case <-s.ctx.Done():
			return
		case <-ticker.C:
		}
		if tick%callersSweepTicks == 0 {
			s.forgetSettledCallers(s.ctx)
		}
		due, err := s.store.Due(s.ctx, time.Now())
		if err != nil {
			s.settings.Load().Logger.Error("finding expired approvals", zap.Error(err))
			continue
		}
		for _, id := range due {
			if _, err := s.Expire(s.ctx, id); err != nil && !errors.Is(err, ErrConflict) && !errors.Is(err, ErrNotFound) {
				s.settings.Load().Logger.Error("expiring approval", zap.String("id", id), zap.Error(err))
			}
		}
		s.refreshPending(s.ctx)
	}
}

// refreshPending sets the pending gauge from the store.
func (s *Service) refreshPending(ctx context.Context) {
	settings := s.settings.Load()
	if settings.Metrics == nil {
		return
	}
	n, err := s.store.CountPending(ctx)
	if err != nil {
		settings.Logger.Warn("counting pending approvals", zap.Error(err))
		return
	}
	s.report(settings.Metrics.Pending, float64(n))
}

// report makes the service's share of gauge count (nil: withdraws its
// share, as when it stops), taking its share out of the gauge it last
// reported to if that was another.
func (s *Service) report(gauge prometheus.Gauge, count float64) {
	s.reportMu.Lock()
	defer s.reportMu.Unlock()
	if s.reported.gauge != nil && s.reported.gauge != gauge {
		s.reported.gauge.Sub(s.reported.count)
		s.reported = pendingReport{}
	}
	if gauge != nil {
		gauge.Add(count - s.reported.count)
		s.reported = pendingReport{gauge: gauge, count: count}
	}
}
