package stdio_test

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mcpgate/mcpgate/caddymodule/stdio"
	"github.com/mcpgate/mcpgate/internal/stdiotest"
	"github.com/mcpgate/mcpgate/internal/testwait"
)

// TestGrandchildrenReapedAsSubreaper: when the gateway is the parent of
// what its servers leave behind (PID 1 or a child subreaper, as Caddy is
// in a container), a stopped session's grandchildren are reaped, not left
// as zombies.
func TestGrandchildrenReapedAsSubreaper(t *testing.T) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Skipf("cannot become a child subreaper: %v", err)
	}
	t.Cleanup(func() { _ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0) })
	url := testServer(t, stdiotest.ModeServe, stdio.Config{}, nil)
	session := stdiotest.Connect(t, url, nil)
	text, _ := stdiotest.Call(t, session, "spawn", nil)
	grandchild, err := strconv.Atoi(text)
	if err != nil {
		t.Fatalf("spawn answered %q", text)
	}
	t.Cleanup(func() { _, _ = unix.Wait4(grandchild, nil, unix.WNOHANG, nil) })
	session.Close()
	testwait.Until(t, 5*time.Second, func() string {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", grandchild)); !errors.Is(err, os.ErrNotExist) {
			stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", grandchild))
			return fmt.Sprintf("the grandchild %d is still in the process table after its session stopped: %s", grandchild, stat)
		}
		return ""
	})
}
