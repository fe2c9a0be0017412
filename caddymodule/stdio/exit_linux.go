package stdio

import (
	"errors"
	"syscall"
	"time"

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

// reapGroup reaps the members of the program's process group, killed with
// it, that were re-parented to the gateway: a gateway that runs as PID 1
// or as a child subreaper (as in a container) is their parent once the
// program is gone, and they would stay zombies. It gives them a second to
// die; an ordinary gateway has none of them as children, and returns at
// once.
func reapGroup(pgid int) {
	deadline := time.Now().Add(time.Second)
	for {
		pid, err := unix.Wait4(-pgid, nil, unix.WNOHANG, nil)
		switch {
		case errors.Is(err, syscall.EINTR):
		case err != nil:
			return // ECHILD: no child of the gateway's is left in the group
		case pid > 0:
		case time.Now().After(deadline):
			return
		default:
			time.Sleep(10 * time.Millisecond)
		}
	}
}
