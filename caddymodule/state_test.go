package caddymodule_test

import (
	"context"
	"errors"
	"io/fs"
	"strings"
	"sync"
	"testing"

	"github.com/mcpgate/mcpgate/caddymodule"
	"github.com/mcpgate/mcpgate/internal/redistest"
)

// flakyStorage is a storage whose loads fail as told (after a first
// load that finds nothing), and which records what is stored.
type flakyStorage struct {
	mu sync.Mutex
	// loadErrs are the errors of the loads, in order; past them, loads
	// return what is stored.
	loadErrs []error
	stored   map[string][]byte
}

func (s *flakyStorage) Load(_ context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.loadErrs) > 0 {
		err := s.loadErrs[0]
		s.loadErrs = s.loadErrs[1:]
		if err != nil {
			return nil, err
		}
	}
	if value, ok := s.stored[key]; ok {
		return value, nil
	}
	return nil, fs.ErrNotExist
}

func (s *flakyStorage) Store(_ context.Context, key string, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stored == nil {
		s.stored = make(map[string][]byte)
	}
	s.stored[key] = value
	return nil
}

func (*flakyStorage) Lock(context.Context, string) error   { return nil }
func (*flakyStorage) Unlock(context.Context, string) error { return nil }

// TestStoredSessionKey: the session key replicas share is made once, read
// back as it was stored, and never made anew in place of one the storage
// failed to give (which would end every session sealed with it), nor when
// the one stored is unreadable.
func TestStoredSessionKey(t *testing.T) {
	ctx := context.Background()
	transient := errors.New("storage unavailable")
	tests := []struct {
		name     string
		loadErrs []error
		stored   string
		wantErr  string
	}{
		{"made on first use", nil, "", ""},
		{"a failure before the lock", []error{transient}, "", "storage unavailable"},
		{"a failure after the lock", []error{fs.ErrNotExist, transient}, "", "storage unavailable"},
		{"an unreadable key", nil, "not a key", "the session key in Caddy's storage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			storage := &flakyStorage{loadErrs: tt.loadErrs}
			if tt.stored != "" {
				_ = storage.Store(ctx, "mcpgate/session.key", []byte(tt.stored))
			}
			key, err := caddymodule.StoredSessionKey(ctx, storage)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got key %x, error %v; want an error saying %q", key, err, tt.wantErr)
				}
				if tt.stored == "" && len(storage.stored) != 0 {
					t.Errorf("a key was stored after the failure: %q", storage.stored)
				}
				return
			}
			if err != nil || len(key) == 0 {
				t.Fatalf("got key %x, error %v; want a key", key, err)
			}
			again, err := caddymodule.StoredSessionKey(ctx, storage)
			if err != nil || string(again) != string(key) {
				t.Errorf("read back: %x (%v); want the key made first, %x", again, err, key)
			}
		})
	}
}

// TestRedisClientShared: the approval services, pin stores and rate limits
// that name one Redis address share one client, which stays open while
// any of them uses it and is closed once none does.
func TestRedisClientShared(t *testing.T) {
	address := redistest.Start(t)
	first, releaseFirst, err := caddymodule.LoadRedis(address)
	if err != nil {
		t.Fatal(err)
	}
	second, releaseSecond, err := caddymodule.LoadRedis(address)
	if err != nil {
		t.Fatal(err)
	}
	if first != second {
		t.Fatal("two users of one address got two clients")
	}
	releaseFirst()
	if err := second.Ping(t.Context()).Err(); err != nil {
		t.Fatalf("the client, still in use by one, after the other gave it back: %v", err)
	}
	releaseSecond()
	if err := second.Ping(t.Context()).Err(); err == nil {
		t.Error("the client answered once nothing used it; want it closed")
	}
	if _, _, err := caddymodule.LoadRedis(""); err == nil {
		t.Error("an empty address made a client; want an error")
	}
}
