//go:build unix

package testport

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// lockAcrossProcesses takes an exclusive lock on a file named after port in
// a folder every test process shares, and keeps it (the file stays open)
// until this process exits, when the system releases it: a crashed test
// binary leaves no port taken. It reports false when another process holds
// the lock, or when no lock can be taken at all (then the port is not
// handed out, rather than handed out unguarded).
func lockAcrossProcesses(port int) bool {
	path := lockPath(port)
	if err := os.MkdirAll(filepath.Dir(path), 0o777); err != nil {
		return false
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return false
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return false
	}
	held = append(held, f)
	return true
}

// lockPath names port's lock file, in a folder every test process on the
// machine shares.
func lockPath(port int) string {
	return filepath.Join(os.TempDir(), "mcpgate-test-ports", strconv.Itoa(port)+".lock")
}

// held keeps the locked files open (and so locked) for the process's life;
// claim calls lockAcrossProcesses under claimMu.
var held []*os.File
