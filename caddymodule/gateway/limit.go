package gateway

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
	"github.com/mcpgate/mcpgate/caddymodule/policy"
	"github.com/mcpgate/mcpgate/caddymodule/ratelimit"
)

// CodeRateLimited is the JSON-RPC error code of the errors the gateway
// answers requests over a rate limit with (other than tools/call, which
// get an isError result). Like CodeRefusedByPolicy it lies outside the
// range JSON-RPC 2.0 reserves.
const CodeRateLimited = -31429

// RateLimit limits how often messages of the given methods pass, per key.
type RateLimit struct {
	// Name says which limit it is, in logs and refusals.
	Name string
	// Key returns the key a message counts against (for example its user
	// and tool); the host builds it from what the gateway learned of the
	// message.
	Key func(r *http.Request, f Facts) string
	// Rule is how many messages pass per period, with a burst.
	Rule ratelimit.Rule
	// Methods are the methods the limit counts. Default: tools/call.
	Methods []string
	// Actions are the decisions the limit counts ("allow",
	// "needs_approval"): a limit on "needs_approval" alone bounds how
	// often callers ask for approval. Default: both.
	Actions []policy.Action
	// Limiter keeps the counts: in this process, or in Redis, shared by
	// replicas.
	Limiter ratelimit.Limiter
}

// limitTimeout bounds one rate limit check (a Redis round trip).
const limitTimeout = 2 * time.Second

// limit is the stage that holds the messages the policy did not refuse to
// the rate limits: a message over a limit is refused, with when to retry
// (Retry-After on the HTTP response, and in the refusal's text), and
// reaches no upstream. A message under several limits is checked against
// all of them before it counts against any, so that one a limit refuses
// uses up no other's (messages made at once, racing for a limit's last
// token between their checks and their counts, can still do that: a
// count is never given back, which could give back another message's
// and let a limit be exceeded). A limit that cannot
// be checked (its Redis is away) refuses: the gateway fails closed.
func (x *exchange) limit() {
	limits := x.g.cfg.RateLimits
	if len(limits) == 0 {
		return
	}
	var retryAfter time.Duration
	for i, v := range x.verdicts {
		if v.message.Kind != mcpmsg.KindRequest || v.blocked() {
			continue
		}
		var applied []RateLimit
		for _, lim := range limits {
			methods := lim.Methods
			if len(methods) == 0 {
				methods = []string{"tools/call"}
			}
			if slices.Contains(methods, v.message.Method) && (len(lim.Actions) == 0 || slices.Contains(lim.Actions, v.decision.Action)) {
				applied = append(applied, lim)
			}
		}
		keys := make([]string, len(applied))
		for j, lim := range applied {
			keys[j] = lim.Key(x.r, x.factsOf(v))
		}
		steps := []func(RateLimit, string) (ratelimit.Result, error){x.countAgainst}
		if len(applied) > 1 {
			steps = []func(RateLimit, string) (ratelimit.Result, error){x.checkAgainst, x.countAgainst}
		}
	steps:
		for _, step := range steps {
			for j, lim := range applied {
				result, err := step(lim, keys[j])
				if err != nil {
					x.g.logger.Error("rate limit could not be checked; message refused",
						zap.String("limit", lim.Name), zap.String("key", keys[j]), zap.Error(err))
					x.verdicts[i] = v.refusedWith(fmt.Sprintf("Rate limit %s could not be checked, so the message was refused; try again shortly.", lim.Name))
					x.verdicts[i].code, x.verdicts[i].rateLimited = CodeRateLimited, true
					break steps
				}
				if !result.Allowed {
					wait := result.RetryAfter
					retryAfter = max(retryAfter, wait)
					x.verdicts[i] = v.refusedWith(fmt.Sprintf("Rate limit %s reached (%d per %s): try again in %s.",
						lim.Name, lim.Rule.Events, lim.Rule.Per, wait.Round(time.Second/10)))
					x.verdicts[i].code, x.verdicts[i].rateLimited = CodeRateLimited, true
					break steps
				}
			}
		}
	}
	if retryAfter > 0 {
		x.w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(retryAfter.Seconds()))))
	}
}

// checkAgainst reports whether a message under key would pass lim now,
// counting nothing.
func (x *exchange) checkAgainst(lim RateLimit, key string) (ratelimit.Result, error) {
	ctx, cancel := context.WithTimeout(x.r.Context(), limitTimeout)
	defer cancel()
	return lim.Limiter.Check(ctx, key, lim.Rule)
}

// countAgainst counts a message under key against lim.
func (x *exchange) countAgainst(lim RateLimit, key string) (ratelimit.Result, error) {
	ctx, cancel := context.WithTimeout(x.r.Context(), limitTimeout)
	defer cancel()
	return lim.Limiter.Allow(ctx, key, lim.Rule)
}
