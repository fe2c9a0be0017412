// Package testwait lets tests wait for what happens in the background (a
// file watcher, a bundle poll, a goroutine's end) without asserting any
// timing.
package testwait

import (
	"testing"
	"time"
)

// Until polls check until it reports nothing, and fails tb with its last
// report once wait is over.
func Until(tb testing.TB, wait time.Duration, check func() string) {
	tb.Helper()
	deadline := time.Now().Add(wait)
	for {
		problem := check()
		if problem == "" {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("after %v: %s", wait, problem)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
