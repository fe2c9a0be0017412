package catalog

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// PinStore persists the definition hashes an operator has accepted (pins),
// so that they survive a restart, and, for a store gateways share, so
// that what one of them pins or accepts holds for all.
type PinStore interface {
	// Load returns every pin, as server name -> tool name -> hash.
	Load(ctx context.Context) (map[string]map[string]string, error)
	// Pins returns one server's pins, tool name -> hash, as the store has
	// them now.
	Pins(ctx context.Context, server string) (map[string]string, error)
	// PinFirst pins one tool of one server to hash unless it is pinned
	// already, atomically, and returns the pin it has now: hash, or the
	// pin another gateway sharing the store made first.
	PinFirst(ctx context.Context, server, tool, hash string) (string, error)
	// Save pins one tool of one server to hash, replacing any pin it had.
	// Each call is atomic: after a crash the pin is either saved whole or
	// not at all, and other pins are untouched.
	Save(ctx context.Context, server, tool, hash string) error
}

// BatchPinner is a PinStore that pins many tools of one server in one
// step, as PinFirst pins one: each tool is pinned to its hash unless it
// is pinned already, and the pins they have then are returned. A store
// whose every write costs as much as all (a file rewritten whole)
// implements it, so that a list of many new tools is one write, not one
// per tool.
type BatchPinner interface {
	PinFirstAll(ctx context.Context, server string, hashes map[string]string) (map[string]string, error)
}

// FilePinStore is a PinStore in a JSON file holding one object, server name
// -> tool name -> hash:
//
//	{"github": {"create_issue": "9f86d0…"}}
//
// A missing file is an empty store. A file that cannot be read as that
// object is an error, never an empty store, so that pins are not silently
// forgotten. Saves rewrite the file atomically (a temporary file renamed
// over it) with mode 0600, creating its directory with mode 0700.
//
// A FilePinStore is safe for concurrent use, and so are two FilePinStores
// over the same path in one process (as old and new configurations are
// while Caddy reloads). Separate processes must not share a file.
type FilePinStore struct {
	path string
	mu   *sync.Mutex
}

// fileLocks holds a mutex per absolute path, shared by every FilePinStore
// over that path, so that the read-modify-write of one Save cannot lose
// another's pin when a config reload briefly runs two stores over one file.
var fileLocks sync.Map

// NewFilePinStore returns a store in the file at path.
func NewFilePinStore(path string) *FilePinStore {
	key, err := filepath.Abs(path)
	if err != nil {
		key = filepath.Clean(path)
	}
	mu, _ := fileLocks.LoadOrStore(key, new(sync.Mutex))
	return &FilePinStore{path: path, mu: mu.(*sync.Mutex)}
}

// Load implements PinStore.
func (s *FilePinStore) Load(ctx context.Context) (map[string]map[string]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("loading tool pins from %s: %w", s.path, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.read()
}

// Pins implements PinStore.
func (s *FilePinStore) Pins(ctx context.Context, server string) (map[string]string, error) {
	pins, err := s.Load(ctx)
	if err != nil {
		return nil, err
	}
	return pins[server], nil
}

// PinFirst implements PinStore.
func (s *FilePinStore) PinFirst(ctx context.Context, server, tool, hash string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("saving tool pin to %s: %w", s.path, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	pins, err := s.read()
	if err != nil {
		return "", fmt.Errorf("saving tool pin: %w", err)
	}
	if pin, ok := pins[server][tool]; ok {
		return pin, nil
	}
	if err := s.set(pins, server, tool, hash); err != nil {
		return "", err
	}
	return hash, nil
}

// PinFirstAll implements BatchPinner: one read and one write of the file
// for every tool of the list, rather than one each.
func (s *FilePinStore) PinFirstAll(ctx context.Context, server string, hashes map[string]string) (map[string]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("saving tool pins to %s: %w", s.path, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	pins, err := s.read()
	if err != nil {
		return nil, fmt.Errorf("saving tool pins: %w", err)
	}
	if pins[server] == nil {
		pins[server] = map[string]string{}
	}
	got, added := make(map[string]string, len(hashes)), false
	for tool, hash := range hashes {
		if pin, ok := pins[server][tool]; ok {
			got[tool] = pin
			continue
		}
		pins[server][tool], got[tool], added = hash, hash, true
	}
	if added {
		if err := s.write(pins); err != nil {
			return nil, fmt.Errorf("saving tool pins to %s: %w", s.path, err)
		}
	}
	return got, nil
}

// Save implements PinStore.
func (s *FilePinStore) Save(ctx context.Context, server, tool, hash string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("saving tool pin to %s: %w", s.path, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	pins, err := s.read()
	if err != nil {
		return fmt.Errorf("saving tool pin: %w", err)
	}
	return s.set(pins, server, tool, hash)
}

// set writes pins with one tool's pin set; s.mu must be held.
func (s *FilePinStore) set(pins map[string]map[string]string, server, tool, hash string) error {
	if pins[server] == nil {
		pins[server] = map[string]string{}
	}
	pins[server][tool] = hash
	if err := s.write(pins); err != nil {
		return fmt.Errorf("saving tool pin to %s: %w", s.path, err)
	}
	return nil
}

// read returns the pins in the file; s.mu must be held.
func (s *FilePinStore) read() (map[string]map[string]string, error) {
	data, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]map[string]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading tool pins: %w", err)
	}
	var pins map[string]map[string]string
	if err := jsonv2.Unmarshal(data, &pins); err != nil {
		return nil, fmt.Errorf("reading tool pins from %s: %w", s.path, err)
	}
	if pins == nil {
		return nil, fmt.Errorf("reading tool pins from %s: not a JSON object", s.path)
	}
	for server, tools := range pins {
		if tools == nil {
			return nil, fmt.Errorf("reading tool pins from %s: server %q: not a JSON object", s.path, server)
		}
	}
	return pins, nil
}

// write replaces the file with pins, atomically; s.mu must be held.
func (s *FilePinStore) write(pins map[string]map[string]string) error {
	data, err := jsonv2.Marshal(pins, jsonv2.Deterministic(true), jsontext.WithIndent("  "))
	if err != nil {
		return err
	}
	// A pins file given as a symbolic link is written where it points:
	// renamed over, the link would become a file of its own, and the file
	// it pointed to (that other processes or a backup read) would stop
	// following the pins.
	path := s.path
	if target, err := filepath.EvalSymlinks(path); err == nil {
		path = target
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	// CreateTemp makes the file 0600. Removing it fails harmlessly once it
	// has been renamed.
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
