//go:build unix

package stdio

import (
	"os"
	"syscall"
)

// groupAttr puts the program in a process group of its own, which the
// programs it starts join, so that signals reach them all.
func groupAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// signalGroup sends sig to the process group that p leads.
func signalGroup(p *os.Process, sig syscall.Signal) error {
	return syscall.Kill(-p.Pid, sig)
}
