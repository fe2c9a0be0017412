package gateway

import (
	"encoding/json"
	"maps"
	"slices"
	"time"
)

// SetTestHookGoAhead makes hook run whenever a held call may go ahead
// (approved, or confirmed by its caller), before it looks for a cancel
// that came at the same time, until restore puts back the hook before.
func SetTestHookGoAhead(hook func()) (restore func()) {
	previous := testHookGoAhead.Swap(&hook)
	return func() { testHookGoAhead.Store(previous) }
}

// CreatedTask exposes createdTask to the package's tests.
var CreatedTask = createdTask

// LegacyKept counts, over the HTTP+SSE streams open, the requests awaiting
// their answers, and the bytes of what is kept of them (their names, and
// their params as JSON when kept whole).
func (s *Sessions) LegacyKept() (requests, bytes int) {
	s.legacy.mu.Lock()
	streams := slices.Collect(maps.Values(s.legacy.streams))
	s.legacy.mu.Unlock()
	for _, stream := range streams {
		stream.mu.Lock()
		for _, request := range stream.inFlight {
			requests++
			params, _ := json.Marshal(request.params)
			bytes += len(request.name) + len(params)
		}
		stream.mu.Unlock()
	}
	return requests, bytes
}

// SetStreamWriteTimeout sets how long a write of an event stream to a
// client may take, until restore puts back the timeout before. Set it
// before the test's gateway serves, and restore it after.
func SetStreamWriteTimeout(d time.Duration) (restore func()) {
	previous := streamWriteTimeout
	streamWriteTimeout = d
	return func() { streamWriteTimeout = previous }
}

// SessionScope is what a gateway of the given upstream and server seals
// its session tokens for (Gateway.sessionScope).
func SessionScope(upstream, server string) string {
	return (&Gateway{cfg: Config{Upstream: upstream, Server: server}}).sessionScope()
}
