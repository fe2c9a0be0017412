//go:build !linux

package stdio

// awaitExit reports false: without waitid's WNOWAIT, the program is reaped
// first and the rest of its group killed after, when in principle its
// group id could already name another group.
func awaitExit(int) bool { return false }

// reapGroup does nothing: without a process group to wait for, what the
// program left is reaped by its new parent.
func reapGroup(int) {}
