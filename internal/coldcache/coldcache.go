// Package coldcache runs a benchmark's calls with the processor's caches
// evicted between them, as a call finds them in place when other work
// (other requests, the client, the upstream) runs between two calls of
// one kind, and reports the calls' own median time.
package coldcache

import (
	"slices"
	"testing"
	"time"
)

// Loop calls call(1), call(2), ... once per iteration of b.Loop. With
// evict > 0, it writes through evict bytes of memory before each call
// (16 MiB is four times the L2 cache of the machines these run on), times
// the calls alone and reports their median as µs/median-call (ns/op then
// counts the writing too); with evict <= 0, it only calls.
func Loop(b *testing.B, evict int, call func(n int)) {
	n := 0
	if evict <= 0 {
		for b.Loop() {
			n++
			call(n)
		}
		return
	}
	memory := make([]byte, evict)
	var elapsed []float64
	for b.Loop() {
		n++
		for i := 0; i < len(memory); i += 64 {
			memory[i]++
		}
		start := time.Now()
		call(n)
		elapsed = append(elapsed, float64(time.Since(start))/float64(time.Microsecond))
	}
	slices.Sort(elapsed)
	b.ReportMetric(elapsed[len(elapsed)/2], "µs/median-call")
}
