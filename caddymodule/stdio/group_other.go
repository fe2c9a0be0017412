//go:build !unix

package stdio

import (
	"os"
	"syscall"
)

// groupAttr returns nil: without Unix process groups, the programs a
// server starts are not stopped with it.
func groupAttr() *syscall.SysProcAttr { return nil }

// signalGroup kills p whatever sig is: there is no process group to
// signal, and no gentler signal.
func signalGroup(p *os.Process, _ syscall.Signal) error {
	return p.Kill()
}
