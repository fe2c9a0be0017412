//go:build unix

package testport

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// lockAcrossProcesses takes an exclusive lock on a file named after port in
// a folder every test process of this user shares, and keeps it (the file
// stays open) until this process exits, when the system releases it: a
// crashed test binary leaves no port taken. It reports false when another
// process holds the lock. Where no lock can be set up (a folder that
// cannot be written), ports are unique within the process only, as
// without file locks.
func lockAcrossProcesses(port int) bool {
	path := lockPath(port)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return true
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return true
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return !errors.Is(err, syscall.EWOULDBLOCK)
	}
	held = append(held, f)
	return true
}

// lockPath names port's lock file, in a folder of the user's that every
// test process of theirs on the machine shares.
func lockPath(port int) string {
	return filepath.Join(os.TempDir(), "mcpgate-test-ports-"+strconv.Itoa(os.Getuid()), strconv.Itoa(port)+".lock")
}

// held keeps the locked files open (and so locked) for the process's life;
// claim calls lockAcrossProcesses under claimMu.
var held []*os.File
