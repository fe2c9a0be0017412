package caddymodule

import (
	"context"
	"net"
)

// ClientSet exposes clientSet to the package's tests.
var ClientSet = clientSet

// RunningUpstream exposes runningUpstream to the package's tests.
var RunningUpstream = runningUpstream

// StoredSessionKey exposes storedSessionKey to the package's tests.
var StoredSessionKey = storedSessionKey

// LoadRedis exposes loadRedis to the package's tests.
var LoadRedis = loadRedis

// BoundedKey exposes boundedKey to the package's tests.
var BoundedKey = boundedKey

// LoadLocalLimiter and ReleaseLocalLimiter expose the process's local
// rate limit counts to the package's tests.
var LoadLocalLimiter, ReleaseLocalLimiter = loadLocalLimiter, releaseLocalLimiter

// DialKeys exposes dialNames.key to the package's tests: what each dial
// reaches, names looked up with lookup.
func DialKeys(lookup func(context.Context, string) ([]net.IPAddr, error), dials ...string) []string {
	d := newDialNames(context.Background(), lookup)
	keys := make([]string, 0, len(dials))
	for _, dial := range dials {
		keys = append(keys, d.key(dial))
	}
	return keys
}
