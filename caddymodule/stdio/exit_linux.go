package stdio

import (
	"errors"
	"syscall"

	"golang.org/x/sys/unix"
)

// awaitExit waits for the process pid to exit without reaping it
// (waitid with WNOWAIT), and reports true: until it is reaped, its
// process group id cannot name another group, so the rest of the group
// can be killed safely.
func awaitExit(pid int) bool {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, syscall.EINTR) {
			return true
		}
	}
}
