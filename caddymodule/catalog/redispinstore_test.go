package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mcpgate/mcpgate/internal/redistest"
)

// TestRedisPinStore checks that pins saved through one catalog are known to
// another catalog (another replica, or a restart) over the same Redis.
func TestRedisPinStore(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: redistest.Start(t)})
	t.Cleanup(func() { client.Close() })
	ctx := context.Background()
	store := NewRedisPinStore(client, "mcpgate:pins:")

	first, err := New(ctx, store)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	v1 := json.RawMessage(`{"name":"echo","description":"v1"}`)
	if err := first.Learn(ctx, "tracker", []json.RawMessage{v1}, first.Generation("tracker")); err != nil {
		t.Fatalf("Learn: %v", err)
	}

	second, err := New(ctx, NewRedisPinStore(client, "mcpgate:pins:"))
	if err != nil {
		t.Fatalf("New over the same Redis: %v", err)
	}
	v2 := json.RawMessage(`{"name":"echo","description":"v2: now exfiltrates"}`)
	if err := second.Learn(ctx, "tracker", []json.RawMessage{v2}, second.Generation("tracker")); err != nil {
		t.Fatalf("Learn: %v", err)
	}
	tool, ok := second.Lookup("tracker", "echo")
	if !ok || !tool.Changed {
		t.Fatalf("second replica: echo = %+v (listed %v), want it changed against the pin the first saved", tool, ok)
	}
	if _, err := second.Accept(ctx, "tracker", "echo", ""); err != nil {
		t.Fatalf("Accept: %v", err)
	}
	pins, err := store.Load(ctx)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if pins["tracker"]["echo"] != tool.Hash {
		t.Errorf("pin in Redis = %q, want the accepted hash %q", pins["tracker"]["echo"], tool.Hash)
	}
}

// TestPinsSharedLive: replicas started together over one store (each
// loaded the pins when nothing was pinned) agree as they go. The first to
// see a tool pins it, and a replica that sees another definition first
// finds it changed rather than pinning its own; an operator's accept
// through one replica holds on the others at their next list or call.
func TestPinsSharedLive(t *testing.T) {
	stores := map[string]func(t *testing.T) (PinStore, PinStore){
		"redis": func(t *testing.T) (PinStore, PinStore) {
			client := redis.NewClient(&redis.Options{Addr: redistest.Start(t)})
			t.Cleanup(func() { client.Close() })
			return NewRedisPinStore(client, "mcpgate:pins:"), NewRedisPinStore(client, "mcpgate:pins:")
		},
		"file": func(t *testing.T) (PinStore, PinStore) {
			path := filepath.Join(t.TempDir(), "pins.json")
			return NewFilePinStore(path), NewFilePinStore(path)
		},
	}
	v1 := json.RawMessage(`{"name":"echo","description":"v1"}`)
	v2 := json.RawMessage(`{"name":"echo","description":"v2: now exfiltrates"}`)
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			storeA, storeB := open(t)
			a, b := newTestCatalog(t, storeA), newTestCatalog(t, storeB)
			if err := a.Learn(ctx, "tracker", []json.RawMessage{v1}, 0); err != nil {
				t.Fatalf("replica A learns v1: %v", err)
			}
			if err := b.Learn(ctx, "tracker", []json.RawMessage{v2}, 0); err != nil {
				t.Fatalf("replica B learns v2: %v", err)
			}
			if tool, _ := b.Lookup("tracker", "echo"); !tool.Changed {
				t.Fatal("replica B pinned the v2 it saw first, though replica A had pinned v1")
			}

			// The operator reviews v2 on replica A and accepts it there.
			if err := a.Learn(ctx, "tracker", []json.RawMessage{v2}, 0); err != nil {
				t.Fatalf("replica A learns v2: %v", err)
			}
			if _, err := a.Accept(ctx, "tracker", "echo", ""); err != nil {
				t.Fatalf("accepting on replica A: %v", err)
			}
			if tool, ok := b.Recheck(ctx, "tracker", "echo"); !ok || tool.Changed {
				t.Errorf("replica B after the accept on A: %+v (listed %v), want v2 accepted", tool, ok)
			}

			// Another change, seen by B's next list: still caught, and an
			// accept on A reaches B's next list too.
			v3 := json.RawMessage(`{"name":"echo","description":"v3"}`)
			if err := b.Learn(ctx, "tracker", []json.RawMessage{v3}, 0); err != nil {
				t.Fatalf("replica B learns v3: %v", err)
			}
			if tool, _ := b.Lookup("tracker", "echo"); !tool.Changed {
				t.Fatal("replica B took v3 without an accept")
			}
			if err := a.Learn(ctx, "tracker", []json.RawMessage{v3}, 0); err != nil {
				t.Fatalf("replica A learns v3: %v", err)
			}
			if _, err := a.Accept(ctx, "tracker", "echo", ""); err != nil {
				t.Fatalf("accepting v3 on replica A: %v", err)
			}
			// B read the store for its last list a moment ago: it reads
			// it again for a list after RecheckInterval.
			deadline := time.Now().Add(3 * RecheckInterval)
			for {
				if err := b.Learn(ctx, "tracker", []json.RawMessage{v3}, 0); err != nil {
					t.Fatalf("replica B lists v3 again: %v", err)
				}
				if tool, _ := b.Lookup("tracker", "echo"); !tool.Changed {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("replica B's lists did not take the accept made on A")
				}
				time.Sleep(RecheckInterval / 10)
			}
		})
	}
}

// TestRecheckBounded: a changed tool called again and again reads the
// store at most once per RecheckInterval, and a store that cannot be read
// leaves the tool changed.
func TestRecheckBounded(t *testing.T) {
	store := &countingStore{pins: map[string]string{}}
	c := newTestCatalog(t, store)
	ctx := t.Context()
	store.pins["echo"] = "not the listed hash"
	if err := c.Learn(ctx, "tracker", []json.RawMessage{json.RawMessage(`{"name":"echo"}`)}, 0); err != nil {
		t.Fatal(err)
	}
	reads := store.reads
	for range 100 {
		if tool, _ := c.Recheck(ctx, "tracker", "echo"); !tool.Changed {
			t.Fatal("a tool whose stored pin differs is not changed")
		}
	}
	if got := store.reads - reads; got != 1 {
		t.Errorf("100 rechecks within %v read the store %d times, want 1", RecheckInterval, got)
	}
}

// countingStore is a PinStore of one server's pins that counts reads.
type countingStore struct {
	pins  map[string]string
	reads int
}

func (s *countingStore) Load(context.Context) (map[string]map[string]string, error) {
	return map[string]map[string]string{}, nil
}

func (s *countingStore) Pins(context.Context, string) (map[string]string, error) {
	s.reads++
	return maps.Clone(s.pins), nil
}

func (s *countingStore) PinFirst(_ context.Context, _, tool, hash string) (string, error) {
	s.reads++
	if pin, ok := s.pins[tool]; ok {
		return pin, nil
	}
	s.pins[tool] = hash
	return hash, nil
}

func (s *countingStore) Save(_ context.Context, _, tool, hash string) error {
	s.pins[tool] = hash
	return nil
}

// TestFirstPinTrustedWhileSaving: a tool first listed is decided by its
// listing while the store saves its pin, so that the calls following a
// first tools/list run (many sessions start at once) rather than find the
// tool changed.
func TestFirstPinTrustedWhileSaving(t *testing.T) {
	store := &slowStore{countingStore: countingStore{pins: map[string]string{}}, entered: make(chan struct{}), release: make(chan struct{})}
	c := newTestCatalog(t, store)
	learned := make(chan error, 1)
	go func() {
		learned <- c.Learn(t.Context(), "tracker", []json.RawMessage{json.RawMessage(`{"name":"echo"}`)}, 0)
	}()
	<-store.entered
	tool, ok := c.Lookup("tracker", "echo")
	close(store.release)
	if !ok || tool.Changed {
		t.Errorf("echo while its first pin is saved: %+v (listed %v), want it listed and unchanged", tool, ok)
	}
	if err := <-learned; err != nil {
		t.Fatal(err)
	}
}

// slowStore is a countingStore whose PinFirst waits for release.
type slowStore struct {
	countingStore
	entered, release chan struct{}
}

func (s *slowStore) PinFirst(ctx context.Context, server, tool, hash string) (string, error) {
	close(s.entered)
	<-s.release
	return s.countingStore.PinFirst(ctx, server, tool, hash)
}

// TestStoreAwayFailsClosed: with the shared store away, a replica that
// lists a tool for the first time does not trust it (another replica may
// have pinned another definition); once the store is back, a call's
// Recheck pins it, or finds the pin another replica made.
func TestStoreAwayFailsClosed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pins.json")
	v1 := json.RawMessage(`{"name":"echo","description":"v1"}`)
	v2 := json.RawMessage(`{"name":"echo","description":"v2: now exfiltrates"}`)
	ctx := t.Context()
	a := newTestCatalog(t, NewFilePinStore(path))
	if err := a.Learn(ctx, "tracker", []json.RawMessage{v1}, 0); err != nil {
		t.Fatal(err)
	}
	flaky := &flakyStore{PinStore: NewFilePinStore(path)}
	b := newTestCatalog(t, flaky)
	flaky.away.Store(true)
	if err := b.Learn(ctx, "tracker", []json.RawMessage{v2, json.RawMessage(`{"name":"fresh"}`)}, 0); err == nil {
		t.Fatal("Learn with the store away succeeded")
	}
	for _, name := range []string{"echo", "fresh"} {
		if tool, _ := b.Recheck(ctx, "tracker", name); !tool.Changed {
			t.Errorf("%s first listed while the store was away is trusted", name)
		}
	}
	flaky.away.Store(false)
	time.Sleep(RecheckInterval) // the rechecks above were the last for a while
	if tool, _ := b.Recheck(ctx, "tracker", "echo"); !tool.Changed {
		t.Error("echo v2 trusted once the store is back, though replica A had pinned v1")
	}
	if tool, _ := b.Recheck(ctx, "tracker", "fresh"); tool.Changed {
		t.Error("fresh, pinned by nobody, is still refused once the store is back")
	}
	pins, err := NewFilePinStore(path).Load(ctx)
	if err != nil || pins["tracker"]["echo"] == "" || pins["tracker"]["fresh"] == "" {
		t.Errorf("pins in the store: %v, %v; want echo's (A's) and fresh's", pins, err)
	}
}

// TestAcceptReviewed: an accept names the definition the operator
// reviewed; a tool that changed again since is not accepted.
func TestAcceptReviewed(t *testing.T) {
	ctx := t.Context()
	c := newTestCatalog(t, NewFilePinStore(filepath.Join(t.TempDir(), "pins.json")))
	learnOne := func(description string) Tool {
		t.Helper()
		if err := c.Learn(ctx, "tracker", []json.RawMessage{json.RawMessage(`{"name":"echo","description":"` + description + `"}`)}, c.Generation("tracker")); err != nil {
			t.Fatal(err)
		}
		tool, _ := c.Lookup("tracker", "echo")
		return tool
	}
	learnOne("v1")
	reviewed := learnOne("v2")
	learnOne("v3")
	if _, err := c.Accept(ctx, "tracker", "echo", reviewed.Hash); !errors.Is(err, ErrOtherDefinition) {
		t.Fatalf("accepting v2 while v3 is listed: %v, want ErrOtherDefinition", err)
	}
	if tool, _ := c.Lookup("tracker", "echo"); !tool.Changed {
		t.Fatal("v3 was accepted by an accept that named v2")
	}
	if tool, err := c.Accept(ctx, "tracker", "echo", ""); err != nil || tool.Changed {
		t.Errorf("accepting the current definition: %+v, %v", tool, err)
	}
}

// TestReset: a reset (a new configuration) forgets the list, not the
// pins.
func TestReset(t *testing.T) {
	ctx := t.Context()
	c := newTestCatalog(t, NewFilePinStore(filepath.Join(t.TempDir(), "pins.json")))
	if err := c.Learn(ctx, "mail-upstream", []json.RawMessage{json.RawMessage(`{"name":"send","description":"v1"}`)}, 0); err != nil {
		t.Fatal(err)
	}
	if err := c.Learn(ctx, "mail-upstream", []json.RawMessage{json.RawMessage(`{"name":"send","description":"v2"}`)}, 0); err != nil {
		t.Fatal(err)
	}
	if tools := c.Tools("mail-upstream"); len(tools) != 1 || tools[0].Server != "mail-upstream" || !tools[0].Changed {
		t.Errorf("Tools(mail-upstream) = %+v, want its changed send", tools)
	}
	if _, err := c.Accept(ctx, "mail-upstream", "send", ""); err != nil {
		t.Fatalf("accepting: %v", err)
	}
	c.Reset("mail-upstream", 0)
	if !c.Stale("mail-upstream") {
		t.Error("a reset list is not stale")
	}
	if _, listed := c.Lookup("mail-upstream", "send"); listed {
		t.Error("a reset list still decides lookups")
	}
	if err := c.Learn(ctx, "mail-upstream", []json.RawMessage{json.RawMessage(`{"name":"send","description":"v1"}`)}, c.Generation("mail-upstream")); err != nil {
		t.Fatal(err)
	}
	if tool, _ := c.Lookup("mail-upstream", "send"); !tool.Changed {
		t.Error("after a reset, v1 is trusted again though v2 was accepted: the pins were lost")
	}
}

// flakyStore is a PinStore that fails while away is set.
type flakyStore struct {
	PinStore
	away atomic.Bool
}

var errAway = errors.New("the store is away")

func (s *flakyStore) Pins(ctx context.Context, server string) (map[string]string, error) {
	if s.away.Load() {
		return nil, errAway
	}
	return s.PinStore.Pins(ctx, server)
}

func (s *flakyStore) PinFirst(ctx context.Context, server, tool, hash string) (string, error) {
	if s.away.Load() {
		return "", errAway
	}
	return s.PinStore.PinFirst(ctx, server, tool, hash)
}

func (s *flakyStore) Save(ctx context.Context, server, tool, hash string) error {
	if s.away.Load() {
		return errAway
	}
	return s.PinStore.Save(ctx, server, tool, hash)
}

// TestRedisPinStoreInherits: a store that keeps its pins apart (an
// approval instance's) starts from the pins it shared before, once: a
// definition that changed is still changed after the move, and what it
// pins then is its own.
func TestRedisPinStoreInherits(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: redistest.Start(t)})
	t.Cleanup(func() { client.Close() })
	ctx := context.Background()
	shared, err := New(ctx, NewRedisPinStore(client, "mcpgate:pins:"))
	if err != nil {
		t.Fatal(err)
	}
	v1 := json.RawMessage(`{"name":"echo","description":"v1"}`)
	if err := shared.Learn(ctx, "tracker", []json.RawMessage{v1}, shared.Generation("tracker")); err != nil {
		t.Fatal(err)
	}

	own := func() *Catalog {
		c, err := New(ctx, NewRedisPinStore(client, "mcpgate:{team-a}:pins:").Inherit("mcpgate:pins:"))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	teamA := own()
	v2 := json.RawMessage(`{"name":"echo","description":"v2: now exfiltrates"}`)
	if err := teamA.Learn(ctx, "tracker", []json.RawMessage{v2}, teamA.Generation("tracker")); err != nil {
		t.Fatal(err)
	}
	if tool, ok := teamA.Lookup("tracker", "echo"); !ok || !tool.Changed {
		t.Errorf("the instance's echo after the move: %+v; want it changed against the pin it shared", tool)
	}
	// What the instance pins from then on is its own.
	v3 := json.RawMessage(`{"name":"search","description":"v1"}`)
	if err := teamA.Learn(ctx, "mail", []json.RawMessage{v3}, teamA.Generation("mail")); err != nil {
		t.Fatal(err)
	}
	if pins, err := NewRedisPinStore(client, "mcpgate:pins:").Load(ctx); err != nil || pins["mail"] != nil {
		t.Errorf("the shared pins: %v, %v; want the instance's new pin kept apart", pins, err)
	}
	if pins, err := NewRedisPinStore(client, "mcpgate:{team-a}:pins:").Load(ctx); err != nil || pins["mail"]["search"] == "" || pins["tracker"]["echo"] == "" {
		t.Errorf("the instance's pins: %v, %v; want those it took on and its own", pins, err)
	}
	// Once taken on whole, the shared ones are not taken on again.
	if err := shared.Learn(ctx, "files", []json.RawMessage{v1}, shared.Generation("files")); err != nil {
		t.Fatal(err)
	}
	if _, ok := own().pins["files"]; ok {
		t.Error("the shared pins were taken on again by an instance that had taken them on")
	}
}

// failingScripts fails every script (PinFirst) after the first.
type failingScripts struct{ ran int }

func (h *failingScripts) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *failingScripts) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (h *failingScripts) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if name := strings.ToLower(cmd.Name()); name == "eval" || name == "evalsha" {
			if h.ran >= 1 {
				cmd.SetErr(errors.New("connection reset"))
				return cmd.Err()
			}
			if err := next(ctx, cmd); err != nil {
				return err
			}
			h.ran++
			return nil
		}
		return next(ctx, cmd)
	}
}

// TestRedisPinStoreInheritsAfterAFailedCopy: a copy of the shared pins
// cut short is made again at the next load: the tools it had not copied
// yet were pinned anew on their first use, changed definitions trusted.
func TestRedisPinStoreInheritsAfterAFailedCopy(t *testing.T) {
	addr := redistest.Start(t)
	client := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { client.Close() })
	ctx := context.Background()
	shared, err := New(ctx, NewRedisPinStore(client, "mcpgate:pins:"))
	if err != nil {
		t.Fatal(err)
	}
	servers := []string{"tracker", "mail", "files", "wiki"}
	v1 := json.RawMessage(`{"name":"echo","description":"v1"}`)
	for _, server := range servers {
		if err := shared.Learn(ctx, server, []json.RawMessage{v1}, shared.Generation(server)); err != nil {
			t.Fatal(err)
		}
	}
	const own = "mcpgate:{team-a}:pins:"
	flaky := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { flaky.Close() })
	flaky.AddHook(&failingScripts{})
	if _, err := New(ctx, NewRedisPinStore(flaky, own).Inherit("mcpgate:pins:")); err == nil {
		t.Fatal("a copy cut short loaded")
	}
	teamA, err := New(ctx, NewRedisPinStore(client, own).Inherit("mcpgate:pins:"))
	if err != nil {
		t.Fatal(err)
	}
	v2 := json.RawMessage(`{"name":"echo","description":"v2: now exfiltrates"}`)
	for _, server := range servers {
		if err := teamA.Learn(ctx, server, []json.RawMessage{v2}, teamA.Generation(server)); err != nil {
			t.Fatal(err)
		}
		if tool, ok := teamA.Lookup(server, "echo"); !ok || !tool.Changed {
			t.Errorf("%s's echo after a copy cut short: %+v; want it changed against the pin it shared", server, tool)
		}
	}
}
