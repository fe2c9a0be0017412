package gateway

// SetTestHookGoAhead makes hook run whenever a held call may go ahead
// (approved, or confirmed by its caller), before it looks for a cancel
// that came at the same time, until restore is called.
func SetTestHookGoAhead(hook func()) (restore func()) {
	testHookGoAhead.Store(&hook)
	return func() { testHookGoAhead.Store(nil) }
}
