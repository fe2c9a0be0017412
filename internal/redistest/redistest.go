// Package redistest starts a real redis-server on a free loopback port for
// a test, and stops it when the test ends. A test of what happens when
// Redis goes away can kill the server and start it again on the same
// port, with the data it had.
package redistest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/testport"
)

// Start runs redis-server on 127.0.0.1 and returns its address. Without a
// redis-server binary the test is skipped, except in CI (CI set), where
// .ci/run installs it and its absence is a failure.
func Start(t testing.TB) string {
	t.Helper()
	return start(t, "--save", "", "--appendonly", "no").Addr
}

// Server is a redis-server that a test started and may kill and start
// again. It is not safe for concurrent use.
type Server struct {
	// Addr is the server's host:port; it stays the same across Restart.
	Addr string

	t    testing.TB
	path string
	args []string
	cmd  *exec.Cmd
}

// StartDurable runs redis-server like Start, but keeping every write in
// an append-only file that is synced before the write is acknowledged,
// so that whatever a client was told is stored comes back after Kill and
// Restart.
func StartDurable(t testing.TB) *Server {
	t.Helper()
	return start(t, "--save", "", "--appendonly", "yes", "--appendfsync", "always")
}

// start runs redis-server with the given persistence arguments, in a
// temporary folder that is its working directory for good.
func start(t testing.TB, persistence ...string) *Server {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("redis-server is not installed: %v", err)
		}
		t.Skipf("redis-server is not installed: %v", err)
	}
	port := testport.Free(t)
	s := &Server{
		Addr: fmt.Sprintf("127.0.0.1:%d", port),
		t:    t,
		path: path,
		args: append([]string{"--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--dir", t.TempDir()}, persistence...),
	}
	t.Cleanup(s.Kill)
	s.run()
	return s
}

// Kill ends the server at once (SIGKILL), as a crash would, and waits
// until it is gone. Killing a server that is not running does nothing.
func (s *Server) Kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Restart starts the killed server again, on the same port with the same
// folder (and so, for StartDurable, the same data), and waits until it
// answers PING, its data loaded.
func (s *Server) Restart() {
	s.t.Helper()
	if s.cmd != nil {
		s.t.Fatalf("restarting redis-server on %s, which is still running", s.Addr)
	}
	s.run()
}

// run starts the process and waits until it is ready.
func (s *Server) run() {
	s.t.Helper()
	cmd := exec.Command(s.path, s.args...)
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("starting redis-server: %v", err)
	}
	s.cmd = cmd
	deadline := time.Now().Add(10 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		if last = ping(s.Addr); last == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("redis-server on %s did not become ready: %v", s.Addr, last)
}

// ping sends PING and wants PONG: a server still loading its data
// answers -LOADING instead.
func ping(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}
