//go:build unix

package testport

import (
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// TestClaimIsSeenByOtherProcesses checks that a port this process claimed
// cannot be claimed by another process (this test binary run again) while
// this one runs, and that one it did not claim can.
func TestClaimIsSeenByOtherProcesses(t *testing.T) {
	if port := os.Getenv("TESTPORT_CLAIM"); port != "" {
		n, err := strconv.Atoi(port)
		if err != nil {
			t.Fatal(err)
		}
		if !lockAcrossProcesses(n) {
			os.Exit(3)
		}
		os.Exit(0)
	}
	claimedHere := Free(t)
	cases := []struct {
		name string
		port int
		want int
	}{
		{"claimed here", claimedHere, 3},
		{"not claimed", otherPort(t, claimedHere), 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestClaimIsSeenByOtherProcesses$")
			cmd.Env = append(os.Environ(), "TESTPORT_CLAIM="+strconv.Itoa(c.port))
			out, err := cmd.CombinedOutput()
			code := 0
			if exit, ok := err.(*exec.ExitError); ok {
				code = exit.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != c.want {
				t.Fatalf("another process claiming port %d exited %d, want %d: %s", c.port, code, c.want, out)
			}
		})
	}
}

// otherPort returns a port nobody in this process claimed, other than not.
func otherPort(t *testing.T, not int) int {
	t.Helper()
	for range 1000 {
		port := 20000 + rand.IntN(10000)
		claimMu.Lock()
		taken := claimed[port]
		claimMu.Unlock()
		if port != not && !taken {
			return port
		}
	}
	t.Fatal("no unclaimed port")
	return 0
}

// TestFreeWithoutALockFolder: where the lock folder cannot be made (here
// the temporary folder is a file), ports are still handed out, unique
// within the process.
func TestFreeWithoutALockFolder(t *testing.T) {
	notAFolder := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notAFolder, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TMPDIR", notAFolder)
	first, second := Free(t), Free(t)
	if first == second {
		t.Fatalf("port %d handed out twice", first)
	}
}
