package ratelimit_test

import (
	"context"
	"fmt"
	"time"

	"github.com/mcpgate/mcpgate/caddymodule/ratelimit"
)

func ExampleParseRate() {
	events, per, err := ratelimit.ParseRate("1000/1d")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(events, per)

	_, _, err = ratelimit.ParseRate("0/1m")
	fmt.Println(err)
	// Output:
	// 1000 24h0m0s
	// rate "0/1m": events must be positive
}

func ExampleLocal() {
	// A clock that stands still, so that the output is always the same.
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	limiter, err := ratelimit.NewLocal(ratelimit.LocalConfig{Now: func() time.Time { return start }})
	if err != nil {
		fmt.Println(err)
		return
	}
	// 30 calls a minute, 3 at once: a token comes back every 2s.
	rule := ratelimit.Rule{Events: 30, Per: time.Minute, Burst: 3}
	for range 4 {
		res, err := limiter.Allow(context.Background(), "alice/search", rule)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%+v\n", res)
	}
	// Output:
	// {Allowed:true Remaining:2 RetryAfter:0s}
	// {Allowed:true Remaining:1 RetryAfter:0s}
	// {Allowed:true Remaining:0 RetryAfter:0s}
	// {Allowed:false Remaining:0 RetryAfter:2s}
}
