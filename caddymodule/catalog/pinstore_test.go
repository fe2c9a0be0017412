package catalog

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

func TestFilePinStoreMissingFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "absent")
	pins, err := NewFilePinStore(filepath.Join(dir, "pins.json")).Load(t.Context())
	if err != nil || len(pins) != 0 {
		t.Errorf("Load of a missing file = %v, %v; want an empty store", pins, err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("Load created %s (stat: %v), want nothing written", dir, err)
	}
}

func TestFilePinStoreSave(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	path := filepath.Join(dir, "pins.json")
	store := NewFilePinStore(path)
	saves := []struct{ server, tool, hash string }{
		{"tracker", "delete", "h1"},
		{"tracker", "read", "h2"},
		{"wiki", "read", "h3"},
		{"tracker", "delete", "h4"},
	}
	for _, s := range saves {
		if err := store.Save(t.Context(), s.server, s.tool, s.hash); err != nil {
			t.Fatalf("Save(%q, %q, %q): %v", s.server, s.tool, s.hash, err)
		}
	}
	want := map[string]map[string]string{
		"tracker": {"delete": "h4", "read": "h2"},
		"wiki":    {"read": "h3"},
	}
	got, err := NewFilePinStore(path).Load(t.Context())
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if !maps.EqualFunc(got, want, maps.Equal) {
		t.Errorf("Load = %v, want %v", got, want)
	}

	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "pins.json" {
		t.Errorf("directory holds %v, want only pins.json (no temporary files)", entries)
	}
	if runtime.GOOS == "windows" {
		return
	}
	for _, f := range []struct {
		path string
		want os.FileMode
	}{{dir, 0o700}, {path, 0o600}} {
		info, err := os.Stat(f.path)
		if err != nil {
			t.Fatal(err)
		}
		if got := info.Mode().Perm(); got != f.want {
			t.Errorf("mode of %s = %v, want %v", f.path, got, f.want)
		}
	}
}

func TestFilePinStoreCorrupt(t *testing.T) {
	tests := []struct {
		name    string
		content string
	}{
		{"empty", ""},
		{"truncated", `{"tracker":{"read":"h`},
		{"null", `null`},
		{"array", `[]`},
		{"string", `"pins"`},
		{"server null", `{"tracker":null}`},
		{"server not an object", `{"tracker":["read"]}`},
		{"hash not a string", `{"tracker":{"read":1}}`},
		{"duplicate server", `{"tracker":{},"tracker":{"read":"h"}}`},
		{"duplicate tool", `{"tracker":{"read":"h1","read":"h2"}}`},
		{"trailing data", `{} {}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "pins.json")
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			store := NewFilePinStore(path)
			if pins, err := store.Load(t.Context()); err == nil {
				t.Errorf("Load of %q = %v, want an error", tt.content, pins)
			}
			if err := store.Save(t.Context(), "tracker", "delete", "h"); err == nil {
				t.Errorf("Save over %q succeeded, want an error", tt.content)
			}
			if data, err := os.ReadFile(path); err != nil || string(data) != tt.content {
				t.Errorf("file holds %q (%v) after a failed Save, want %q untouched", data, err, tt.content)
			}
		})
	}
}

func TestFilePinStoreErrors(t *testing.T) {
	dir := t.TempDir()
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	tests := []struct {
		name string
		path string
		ctx  context.Context
	}{
		{"path is a directory", dir, t.Context()},
		{"cancelled context", filepath.Join(dir, "pins.json"), cancelled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := NewFilePinStore(tt.path)
			if _, err := store.Load(tt.ctx); err == nil {
				t.Error("Load succeeded, want an error")
			}
			if err := store.Save(tt.ctx, "tracker", "delete", "h"); err == nil {
				t.Error("Save succeeded, want an error")
			}
		})
	}
}

// TestFilePinStoreConcurrentSaves saves from many goroutines through two
// stores over one file, as during a config reload, and expects every pin.
func TestFilePinStoreConcurrentSaves(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pins.json")
	stores := []*FilePinStore{NewFilePinStore(path), NewFilePinStore(path)}
	want := map[string]map[string]string{}
	for i := range 40 {
		server := fmt.Sprintf("s%d", i%4)
		if want[server] == nil {
			want[server] = map[string]string{}
		}
		want[server][fmt.Sprintf("t%d", i)] = fmt.Sprintf("h%d", i)
	}
	parallel(t, 40, func(i int) error {
		return stores[i%2].Save(t.Context(), fmt.Sprintf("s%d", i%4), fmt.Sprintf("t%d", i), fmt.Sprintf("h%d", i))
	})
	got := filePins(t, path)
	if !maps.EqualFunc(got, want, maps.Equal) {
		t.Errorf("after concurrent saves, Load = %v, want %v", got, want)
	}
}

// TestFilePinStoreSymlink: a pins file given as a symbolic link is saved
// where the link points, and the link stays a link.
func TestFilePinStoreSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "shared", "pins.json")
	if err := os.MkdirAll(filepath.Dir(target), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(target, []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "pins.json")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := NewFilePinStore(link).Save(t.Context(), "tracker", "read", "h1"); err != nil {
		t.Fatal(err)
	}
	if info, err := os.Lstat(link); err != nil || info.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the pins file link after a save: %v, %v; want it still a link", info, err)
	}
	pins, err := NewFilePinStore(target).Load(t.Context())
	if err != nil || pins["tracker"]["read"] != "h1" {
		t.Errorf("the file the link points to holds %v (%v); want the pin saved", pins, err)
	}
}
