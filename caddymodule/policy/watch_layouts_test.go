package policy

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestWatchRootReplacedSlowly: a watched policy folder replaced whole (rm -rf, then a new copy that
// takes longer than the settle time): the new policy must take effect.
func TestWatchRootReplacedSlowly(t *testing.T) {
	dir, engine := watchedFolderRemoved(t)
	time.Sleep(4 * watchSettle)
	writeFile(t, filepath.Join(dir, "policy.rego"), decisionRego("block", "replaced"))
	eventually(t, "the replaced folder's policy to take effect", decidesAs(engine, ActionBlock, "replaced"))
}

// TestWatchSymlinkedRoot: the policy path is a symbolic link to a folder (a common deploy layout): an
// edit inside it must be picked up.
func TestWatchSymlinkedRoot(t *testing.T) {
	base := t.TempDir()
	real := filepath.Join(base, "v1")
	writeFile(t, filepath.Join(real, "policy.rego"), decisionRego("allow", "first"))
	link := filepath.Join(base, "current")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	engine := newEngine(t, context.Background(), Options{Paths: []string{link}, Watch: true})
	writeFile(t, filepath.Join(real, "policy.rego"), decisionRego("block", "edited"))
	eventually(t, "an edit inside a symlinked policy folder to take effect", decidesAs(engine, ActionBlock, "edited"))
}

// TestWatchConfigMapSwap: the Kubernetes ConfigMap layout: files are symlinks through ..data, which is
// swapped atomically to a new timestamped folder.
func TestWatchConfigMapSwap(t *testing.T) {
	for _, asFile := range []bool{false, true} {
		t.Run(fmt.Sprintf("the policy named as a file %v", asFile), func(t *testing.T) {
			watchConfigMapSwap(t, asFile)
		})
	}
}

// watchConfigMapSwap is TestWatchConfigMapSwap with the policy path the
// mount's folder, or (asFile) its file.
func watchConfigMapSwap(t *testing.T, asFile bool) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "..v1", "policy.rego"), decisionRego("allow", "first"))
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Symlink("..v1", filepath.Join(dir, "..data")))
	must(os.Symlink("..data/policy.rego", filepath.Join(dir, "policy.rego")))
	path := dir
	if asFile {
		path = filepath.Join(dir, "policy.rego")
	}
	engine := newEngine(t, context.Background(), Options{Paths: []string{path}, Watch: true})
	if !decidesAs(engine, ActionAllow, "first")() {
		d, err := engine.Decide(context.Background(), toolInput("t"))
		t.Fatalf("first: %+v %v", d, err)
	}
	writeFile(t, filepath.Join(dir, "..v2", "policy.rego"), decisionRego("block", "swapped"))
	must(os.Symlink("..v2", filepath.Join(dir, "..data_tmp")))
	must(os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
	must(os.RemoveAll(filepath.Join(dir, "..v1")))
	eventually(t, "the swapped ConfigMap to take effect", decidesAs(engine, ActionBlock, "swapped"))
}

// TestWatchRootReplacedThenEdited: a folder removed and copied anew at
// once is picked up, and so is a later edit of the new folder.
func TestWatchRootReplacedThenEdited(t *testing.T) {
	dir, engine := watchedFolderRemoved(t)
	writeFile(t, filepath.Join(dir, "policy.rego"), decisionRego("block", "replaced"))
	time.Sleep(4 * watchSettle)
	writeFile(t, filepath.Join(dir, "policy.rego"), decisionRego("needs_approval", "edited later"))
	eventually(t, "a later edit of the replaced folder to take effect", decidesAs(engine, ActionNeedsApproval, "edited later"))
}

// watchedFolderRemoved makes a policy folder, an engine watching it, and
// removes the folder whole, as a deploy that replaces it begins.
func watchedFolderRemoved(t *testing.T) (string, *Engine) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "org")
	writeFile(t, filepath.Join(dir, "policy.rego"), decisionRego("allow", "first"))
	engine := newEngine(t, context.Background(), Options{Paths: []string{dir}, Watch: true})
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	return dir, engine
}
