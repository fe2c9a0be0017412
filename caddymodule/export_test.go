package caddymodule

// ClientSet exposes clientSet to the package's tests.
var ClientSet = clientSet

// RunningUpstream exposes runningUpstream to the package's tests.
var RunningUpstream = runningUpstream

// StoredSessionKey exposes storedSessionKey to the package's tests.
var StoredSessionKey = storedSessionKey
