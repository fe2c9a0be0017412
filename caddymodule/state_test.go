package caddymodule_test

import (
	"context"
	"errors"
	"io/fs"
	"strings"
	"sync"
	"testing"

	"github.com/mcpgate/mcpgate/caddymodule"
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
