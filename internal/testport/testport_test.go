package testport

import (
	"net"
	"strconv"
	"testing"
)

// TestFreeAvoidsTheEphemeralRange checks that handed-out ports are unique,
// outside the kernel's ephemeral range where it leaves room, and
// listenable.
func TestFreeAvoidsTheEphemeralRange(t *testing.T) {
	low, high, ok := unassignedRange()
	seen := map[int]bool{}
	for range 50 {
		port := Free(t)
		if seen[port] {
			t.Fatalf("port %d handed out twice", port)
		}
		seen[port] = true
		if ok && (port < low || port > high) {
			t.Fatalf("port %d outside %d-%d", port, low, high)
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			t.Fatalf("listening on handed-out port %d: %v", port, err)
		}
		l.Close()
	}
}
