// Package childtest runs part of a test (an upstream, most often) in a
// process of its own: the test binary again, told by an environment
// variable what to serve. An upstream in its own process keeps its memory
// and garbage collection out of the gateway's figures, and can be killed
// as a crash would kill it.
package childtest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Child is a process started by Start.
type Child struct {
	// Line is the first line the child wrote on its standard output (its
	// URL, for one started with ServeHTTP), without the line break.
	Line string
	cmd  *exec.Cmd
}

// Start runs this test binary again, with env set to 1 and the given
// arguments (by default -test.run=^$, so that only TestMain runs), and
// returns once the child has written its first line. The child's standard
// input closes when the test ends, which ends a child serving with
// ServeHTTP; one still running then is killed.
func Start(tb testing.TB, env string, args ...string) *Child {
	tb.Helper()
	if len(args) == 0 {
		args = []string{"-test.run=^$"}
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), env+"=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("starting the child process (%s): %v", env, err)
	}
	c := &Child{cmd: cmd}
	tb.Cleanup(func() {
		_ = stdin.Close()
		c.Kill()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		tb.Fatalf("reading the first line of the child process (%s): %v", env, err)
	}
	c.Line = strings.TrimSpace(line)
	return c
}

// Kill ends the child at once (SIGKILL), as a crash would, and waits until
// it is gone. Killing a child that has ended does nothing.
func (c *Child) Kill() {
	if c.cmd.ProcessState != nil {
		return
	}
	_ = c.cmd.Process.Kill()
	_ = c.cmd.Wait()
}

// ServeHTTP, called in the child (from TestMain, when its environment
// variable is set), serves handler on a free loopback port, writes its URL
// as the first line of standard output, and exits when standard input
// closes; it never returns. name says whose errors it reports.
func ServeHTTP(name string, handler http.Handler) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	fmt.Printf("http://%s\n", listener.Addr())
	fmt.Fprintf(os.Stderr, "%s: %v\n", name, http.Serve(listener, handler))
	os.Exit(1)
}

// Main is a test binary's TestMain for tests that start children: in a
// child started with env set it runs serve (which should not return),
// else the tests.
func Main(m *testing.M, env string, serve func()) {
	if os.Getenv(env) != "" {
		serve()
		return
	}
	os.Exit(m.Run())
}
