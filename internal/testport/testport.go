// Package testport hands tests TCP ports on 127.0.0.1 for servers they
// start by port number (Caddy sites, redis-server), which cannot be given
// a listener the test already holds.
//
// A port found by listening on port 0 and closing the listener comes from
// the kernel's ephemeral range, the range it also takes the source port of
// every outgoing connection from: before the test's server listens on it,
// any process's next connection (another test binary's client, a Redis
// reconnect) may take it, and the server fails with "address already in
// use". So Free hands out ports outside that range, which the kernel never
// assigns by itself, and, since several test binaries run at once, holds a
// lock per port that other processes see until it exits.
package testport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Free returns a TCP port on 127.0.0.1 that was free a moment ago, that no
// other call in any process running now returned, and that the kernel does
// not choose for connections or listeners of its own (where the system
// leaves such ports).
func Free(t testing.TB) int {
	t.Helper()
	port, err := free()
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	return port
}

// free picks ports at random from the range outside the ephemeral one and
// returns the first that listens and can be claimed; without such a range
// it falls back to the kernel's choice.
func free() (int, error) {
	low, high, ok := unassignedRange()
	for range 200 {
		var port int
		if ok {
			port = low + rand.IntN(high-low+1)
		} else {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return 0, err
			}
			port = l.Addr().(*net.TCPAddr).Port
			l.Close()
		}
		if !listens(port) {
			continue
		}
		if claim(port) {
			return port, nil
		}
	}
	return 0, fmt.Errorf("no port claimed in 200 tries")
}

// listens reports whether a listener can take port now.
func listens(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// unassignedRange returns the ports the kernel leaves alone: those between
// 10000 (above most well-known and registered services run on developer
// machines) and the start of the ephemeral range, when that range starts
// high enough to leave at least 1,000 of them.
func unassignedRange() (low, high int, ok bool) {
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0, false
	}
	fields := strings.Fields(string(data))
	if len(fields) != 2 {
		return 0, 0, false
	}
	start, err := strconv.Atoi(fields[0])
	if err != nil {
		return 0, 0, false
	}
	const lowest = 10000
	if start-1-lowest < 1000 {
		return 0, 0, false
	}
	return lowest, start - 1, true
}

// claimed holds the ports handed out in this process (a process's own
// file lock does not keep it from locking a port twice), under claimMu.
var (
	claimMu sync.Mutex
	claimed = map[int]bool{}
)

// claim records port as handed out, in this process and (where file locks
// exist) for every other process that claims ports here, and reports
// whether nobody had it yet.
func claim(port int) bool {
	claimMu.Lock()
	defer claimMu.Unlock()
	if claimed[port] || !lockAcrossProcesses(port) {
		return false
	}
	claimed[port] = true
	return true
}
