package caddymodule

// ClientSet exposes clientSet to the package's tests.
var ClientSet = clientSet
