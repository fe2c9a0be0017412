package gateway

// SetTestHookGoAhead makes hook run whenever a held call may go ahead
// (approved, or confirmed by its caller), before it looks for a cancel
// that came at the same time, until restore puts back the hook before.
func SetTestHookGoAhead(hook func()) (restore func()) {
	previous := testHookGoAhead.Swap(&hook)
	return func() { testHookGoAhead.Store(previous) }
}

// CreatedTask exposes createdTask to the package's tests.
var CreatedTask = createdTask
