package policy

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"
)

// watchSettle is how long the policy files must stay unchanged before a
// reload: editors and deploy tools often write a file in several steps, or
// several files at once.
const watchSettle = 100 * time.Millisecond

// policyWatcher calls reload when policy files under the watched paths
// change, once they have settled.
type policyWatcher struct {
	fs     *fsnotify.Watcher
	logger *zap.Logger
	reload func()
	// files are the paths given as files; their folders are watched,
	// because editors replace a file rather than write it in place.
	files map[string]bool
	// dirs are the watched folders: true for folders whose files all load
	// (given as folders, or inside one), false for folders watched only
	// for a file in files or a folder in roots.
	dirs map[string]bool
	// roots are the paths given as folders, each with the folder it
	// resolved to (through a symbolic link, perhaps): their parents are
	// watched too, so that a folder replaced, or a link swapped, is
	// watched afresh.
	roots map[string]string
	done  chan struct{}
}

// watchPolicy starts watching paths (files, and folders recursively).
func watchPolicy(paths []string, logger *zap.Logger, reload func()) (*policyWatcher, error) {
	notify, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watching policy: %w", err)
	}
	w := &policyWatcher{
		fs:     notify,
		logger: logger,
		reload: reload,
		files:  map[string]bool{},
		dirs:   map[string]bool{},
		roots:  map[string]string{},
		done:   make(chan struct{}),
	}
	for _, path := range paths {
		path = filepath.Clean(path)
		info, err := os.Stat(path)
		if err == nil && info.IsDir() {
			err = errors.Join(w.addRoot(path), w.addDir(filepath.Dir(path), false))
		} else if err == nil {
			w.files[path] = true
			err = w.addDir(filepath.Dir(path), false)
		}
		if err != nil {
			return nil, errors.Join(fmt.Errorf("watching policy %s: %w", path, err), notify.Close())
		}
	}
	go w.run()
	return w, nil
}

// addRoot watches a folder given as a policy path, and the folders below
// it, through a symbolic link if it is one.
func (w *policyWatcher) addRoot(root string) error {
	resolved, err := filepath.EvalSymlinks(root)
	if err != nil {
		return err
	}
	w.roots[root] = resolved
	return w.addTree(resolved)
}

// addTree watches root and every folder below it but hidden ones (which
// the policy does not load; see LoadFilter).
func (w *policyWatcher) addTree(root string) error {
	return filepath.WalkDir(root, func(path string, entry fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !entry.IsDir() {
			return nil
		}
		if path != root && strings.HasPrefix(entry.Name(), ".") {
			return filepath.SkipDir
		}
		return w.addDir(path, true)
	})
}

// addDir watches one folder; all says whether all its files load.
func (w *policyWatcher) addDir(dir string, all bool) error {
	if known, ok := w.dirs[dir]; ok && (known || !all) {
		return nil
	}
	if err := w.fs.Add(dir); err != nil {
		return err
	}
	w.dirs[dir] = all
	return nil
}

// run reloads once changes have settled, until the watcher is closed.
func (w *policyWatcher) run() {
	defer close(w.done)
	settled := time.NewTimer(watchSettle)
	settled.Stop()
	for {
		select {
		case event, ok := <-w.fs.Events:
			if !ok {
				settled.Stop()
				return
			}
			if w.changed(event) {
				settled.Reset(watchSettle)
			}
		case err, ok := <-w.fs.Errors:
			if !ok {
				settled.Stop()
				return
			}
			w.logger.Error("watching policy failed", zap.Error(err))
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				// Events were lost (a burst of changes): the policy is
				// read again whatever they were, and the folders given
				// walked again for those made meanwhile.
				for root := range w.roots {
					if err := w.addRoot(root); err != nil {
						w.logger.Error("watching policy failed", zap.String("path", root), zap.Error(err))
					}
				}
				settled.Reset(watchSettle)
			}
		case <-settled.C:
			w.reload()
		}
	}
}

// changed reports whether event changes the policy, and watches folders
// created inside loaded folders.
func (w *policyWatcher) changed(event fsnotify.Event) bool {
	if event.Op == fsnotify.Chmod {
		return false
	}
	name := filepath.Clean(event.Name)
	if w.files[name] {
		return true
	}
	if resolved, isRoot := w.roots[name]; isRoot {
		// The folder (or the link to it) was replaced, removed or made:
		// what it is now is watched afresh.
		w.forgetTree(resolved)
		if info, err := os.Stat(name); err == nil && info.IsDir() {
			if err := w.addRoot(name); err != nil {
				w.logger.Error("watching policy failed", zap.String("path", name), zap.Error(err))
			}
		}
		return true
	}
	all, watched := w.dirs[filepath.Dir(name)]
	if !watched {
		return false
	}
	if strings.HasPrefix(filepath.Base(name), ".") {
		// A hidden entry the policy reads through links (a Kubernetes
		// ConfigMap swaps its ..data link to publish new files), in a
		// folder given or one holding a file given.
		return event.Has(fsnotify.Create) || event.Has(fsnotify.Rename) || event.Has(fsnotify.Remove)
	}
	if !all {
		return false
	}
	if event.Has(fsnotify.Create) {
		if info, err := os.Stat(name); err == nil && info.IsDir() {
			if err := w.addTree(name); err != nil {
				w.logger.Error("watching policy failed", zap.String("path", name), zap.Error(err))
			}
			return true
		}
	}
	if _, isDir := w.dirs[name]; isDir && (event.Has(fsnotify.Remove) || event.Has(fsnotify.Rename)) {
		w.forgetTree(name)
		return true
	}
	return isPolicyFile(filepath.Base(name))
}

// forgetTree stops watching a folder that was removed or moved away, and
// the folders below it, so that a folder created later in its place is
// watched afresh.
func (w *policyWatcher) forgetTree(root string) {
	for dir := range w.dirs {
		if rel, err := filepath.Rel(root, dir); err == nil && filepath.IsLocal(rel) {
			// The watch may be gone with the folder already.
			_ = w.fs.Remove(dir)
			delete(w.dirs, dir)
		}
	}
}

// close stops watching and waits for a reload in progress to end.
func (w *policyWatcher) close() error {
	err := w.fs.Close()
	<-w.done
	if err != nil {
		return fmt.Errorf("closing policy watcher: %w", err)
	}
	return nil
}
