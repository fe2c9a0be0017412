// Package ratelimit decides whether one more call under a key may go ahead
// under a rate limit rule, and if not, when it may. The caller builds the
// key (for instance a user and a tool) and answers refused calls itself.
//
// Two limiters implement the same token bucket: Local counts in this
// process, so each gateway replica allows the whole rule on its own; Redis
// counts in a Redis shared by the replicas, so together they allow it once.
//
// The package knows nothing of Caddy or MCP.
package ratelimit

import (
	"context"
	"time"
)

// Limiter decides, one call at a time, whether calls under a key keep
// within a rule.
type Limiter interface {
	// Allow counts one call under key against rule and reports whether it
	// may go ahead. Calls under the same key but different rules are
	// counted apart. A refused call is not counted. An error (an invalid
	// rule, an unreachable store) comes with a zero Result, which refuses
	// the call: callers fail closed.
	Allow(ctx context.Context, key string, rule Rule) (Result, error)
	// Check reports what Allow would answer for one call under key now,
	// counting nothing: a caller held to several limits checks them all
	// before it counts against any, so that a call one limit refuses
	// uses up no other's.
	Check(ctx context.Context, key string, rule Rule) (Result, error)
}

// Result is a Limiter's answer for one call.
type Result struct {
	// Allowed reports that the call may go ahead; it has been counted.
	Allowed bool
	// Remaining is how many more calls under the same key and rule would
	// be allowed at once right after this one (the whole tokens left in
	// the bucket); 0 when the call is refused. Concurrent calls under the
	// same key may have used some of them by the time the caller reads it.
	Remaining int
	// RetryAfter is, for a refused call, how long until the next call
	// would be allowed (if no other call takes the token first); it is
	// then always positive. It is 0 for an allowed call.
	RetryAfter time.Duration
}
