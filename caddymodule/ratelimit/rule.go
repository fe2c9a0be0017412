package ratelimit

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Rule is a rate limit: Events calls per Per on average, with bursts of up
// to Burst calls.
//
// It is a token bucket. The bucket holds at most Burst tokens and starts
// full; each allowed call takes one token, and a call that finds none is
// refused; tokens come back one every Per/Events. So after an idle spell
// at most Burst calls go through at once, and then one every Per/Events;
// over any span of time T at most Burst + T*Events/Per calls go through.
// It is not a window: in the Per after a full burst, up to Burst + Events
// calls can pass.
//
// Burst 0 means Burst = Events, as in most rate limiters (and in
// redis_rate's PerSecond, PerMinute and PerHour): "30/1m" lets a caller
// make a minute's 30 calls at once, then one every 2s. A smaller burst
// spreads calls out (Burst 1 allows one call every Per/Events and no
// more); a larger one allows spikes above the rate with the same average.
type Rule struct {
	// Events is how many calls are allowed per Per, on average.
	Events int
	// Per is the period Events are counted over.
	Per time.Duration
	// Burst is how many calls may go through at once; 0 means Events.
	Burst int
}

// Validate reports whether the rule can be enforced: Events and Per must be
// positive and Burst must not be negative.
func (r Rule) Validate() error {
	switch {
	case r.Events <= 0:
		return fmt.Errorf("rate limit events must be positive, got %d", r.Events)
	case r.Per <= 0:
		return fmt.Errorf("rate limit period must be positive, got %s", r.Per)
	case r.Burst < 0:
		return fmt.Errorf("rate limit burst must not be negative, got %d", r.Burst)
	}
	return nil
}

// effective validates the rule and returns it with its default burst
// filled in, so that rules that differ only in spelling the default share
// a bucket.
func (r Rule) effective() (Rule, error) {
	if err := r.Validate(); err != nil {
		return Rule{}, err
	}
	if r.Burst == 0 {
		r.Burst = r.Events
	}
	return r, nil
}

// ParseRate parses a rate written "events/duration", such as "30/1m" or
// "1000/1d". Events is a positive whole number. The duration is a positive
// Go duration (as Caddy writes them: "500ms", "1s", "1m", "1h30m") or a
// whole number of days ("1d", "7d", a day being 24h); days do not combine
// with other units. Both parts must fit their types (int and
// time.Duration).
func ParseRate(s string) (events int, per time.Duration, err error) {
	eventsText, perText, ok := strings.Cut(s, "/")
	if !ok {
		return 0, 0, fmt.Errorf("rate %q: want events/duration, such as 30/1m", s)
	}
	n, err := strconv.ParseUint(eventsText, 10, strconv.IntSize-1)
	switch {
	case errors.Is(err, strconv.ErrRange):
		return 0, 0, fmt.Errorf("rate %q: events %s is too large", s, eventsText)
	case err != nil:
		return 0, 0, fmt.Errorf("rate %q: events %q is not a whole number", s, eventsText)
	case n == 0:
		return 0, 0, fmt.Errorf("rate %q: events must be positive", s)
	}
	per, err = parsePeriod(perText)
	if err != nil {
		return 0, 0, fmt.Errorf("rate %q: %w", s, err)
	}
	return int(n), per, nil
}

// day is the length of the "d" unit that ParseRate accepts.
const day = 24 * time.Hour

// parsePeriod parses the duration of a rate, as ParseRate documents.
func parsePeriod(s string) (time.Duration, error) {
	var per time.Duration
	if daysText, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.ParseUint(daysText, 10, 63)
		switch {
		case errors.Is(err, strconv.ErrRange) || days > math.MaxInt64/uint64(day):
			return 0, fmt.Errorf("duration %s is too long", s)
		case err != nil:
			return 0, fmt.Errorf("duration %q: days must be a whole number, such as 1d or 7d", s)
		}
		per = time.Duration(days) * day
	} else {
		var err error
		if per, err = time.ParseDuration(s); err != nil {
			return 0, fmt.Errorf("duration: %w", err)
		}
	}
	if per <= 0 {
		return 0, fmt.Errorf("duration %s must be positive", s)
	}
	return per, nil
}
