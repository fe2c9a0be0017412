package policy

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// eventually polls cond until it holds, failing the test after a few
// seconds: a wait for a reload to happen, not a timing assertion.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// newEngine starts an engine that is closed when the test ends.
func newEngine(t *testing.T, ctx context.Context, opts Options) *Engine {
	t.Helper()
	engine, err := New(ctx, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := engine.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return engine
}

// writeFile writes content to path, creating its folder.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// decidesAs returns a condition that holds when the engine decides action
// with reason for a tool call.
func decidesAs(engine *Engine, action Action, reason string) func() bool {
	return func() bool {
		d, _ := engine.Decide(context.Background(), toolInput("t"))
		return d.Action == action && d.Reason == reason
	}
}

func decisionRego(action, reason string) string {
	return "package mcp\ndefault note := \"\"\ndecision := {\"action\": \"" + action + "\", \"reason\": concat(\"\", [\"" + reason + "\", note])}\n"
}

// TestWatchFolder edits a watched policy folder: a good edit is picked up,
// a broken one is logged and leaves the previous policy in force, and files
// added later, in new folders too, load.
func TestWatchFolder(t *testing.T) {
	dir := writePolicy(t, map[string]string{"policy.rego": decisionRego("allow", "first")})
	core, logs := observer.New(zap.InfoLevel)
	engine := newEngine(t, context.Background(), Options{Paths: []string{dir}, Watch: true, Logger: zap.New(core)})
	if !decidesAs(engine, ActionAllow, "first")() {
		t.Fatal("the first policy does not allow")
	}

	policy := filepath.Join(dir, "policy.rego")
	writeFile(t, policy, decisionRego("block", "edited"))
	eventually(t, "the edit to block to be picked up", decidesAs(engine, ActionBlock, "edited"))
	if n := logs.FilterMessage("policy reloaded").Len(); n == 0 {
		t.Error(`no "policy reloaded" log after a good edit`)
	}

	writeFile(t, policy, "package mcp\ndecision := {")
	eventually(t, "the broken edit to be logged", func() bool {
		return logs.FilterMessage("policy reload failed; keeping the previous policy").FilterFieldKey("error").Len() > 0
	})
	if !decidesAs(engine, ActionBlock, "edited")() {
		t.Error("after a broken edit the previous policy no longer decides")
	}

	writeFile(t, policy, decisionRego("allow", "fixed"))
	eventually(t, "the fix to be picked up", decidesAs(engine, ActionAllow, "fixed"))

	// A new folder, with a module in it.
	writeFile(t, filepath.Join(dir, "more", "note.rego"), "package mcp\nnote := \" and noted\"\n")
	eventually(t, "a module in a new folder to be picked up", decidesAs(engine, ActionAllow, "fixed and noted"))

	// A test file is not part of the policy and triggers nothing.
	reloads := logs.FilterMessage("policy reloaded").Len()
	writeFile(t, filepath.Join(dir, "more", "note_test.rego"), "package mcp\ntest_x if true\n")
	time.Sleep(3 * watchSettle)
	if n := logs.FilterMessage("policy reloaded").Len(); n != reloads {
		t.Errorf("writing a test file caused %d reloads, want none", n-reloads)
	}

	// Removing the folder takes its module away.
	if err := os.RemoveAll(filepath.Join(dir, "more")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a removed folder to be dropped", decidesAs(engine, ActionAllow, "fixed"))
}

// TestWatchFile watches a single file that is replaced the way editors
// and deploy tools do it, by renaming a new file over it.
func TestWatchFile(t *testing.T) {
	dir := writePolicy(t, map[string]string{
		"policy.rego": decisionRego("allow", "first"),
		"other.rego":  "package other\nx := 1\n",
	})
	policy := filepath.Join(dir, "policy.rego")
	core, logs := observer.New(zap.InfoLevel)
	engine := newEngine(t, context.Background(), Options{Paths: []string{policy}, Watch: true, Logger: zap.New(core)})

	// A neighbour that is not watched triggers nothing.
	writeFile(t, filepath.Join(dir, "other.rego"), "package other\nx := 2\n")
	time.Sleep(3 * watchSettle)
	if n := logs.Len(); n != 0 {
		t.Errorf("editing a file beside the watched one logged %d messages, want none", n)
	}

	next := filepath.Join(dir, ".policy.rego.tmp")
	writeFile(t, next, decisionRego("needs_approval", "renamed"))
	if err := os.Rename(next, policy); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the replaced file to be picked up", decidesAs(engine, ActionNeedsApproval, "renamed"))
}

// TestCloseTwice checks that Close is safe to repeat.
func TestCloseTwice(t *testing.T) {
	dir := writePolicy(t, map[string]string{"policy.rego": decisionRego("allow", "x")})
	engine, err := New(context.Background(), Options{Paths: []string{dir}, Watch: true})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	for i := range 2 {
		if err := engine.Close(); err != nil {
			t.Errorf("Close #%d: %v", i+1, err)
		}
	}
}

// TestWatchOverflowReloads: when the watcher's queue overflows (a burst
// of changes), events are lost, so the policy is read again whatever they
// were: an edit among the lost events still takes effect.
func TestWatchOverflowReloads(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "policy.rego"), decisionRego("allow", "first"))
	var reloads atomic.Int32
	w, err := watchPolicy([]string{dir}, zap.NewNop(), func() { reloads.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.close() })
	w.fs.Errors <- fsnotify.ErrEventOverflow
	eventually(t, "a reload after the overflow", func() bool { return reloads.Load() == 1 })
}
