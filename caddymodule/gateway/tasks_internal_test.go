package gateway

import (
	"fmt"
	"testing"
)

// TestPolledTaskKept: a task its client keeps following (each tasks/get
// looks it up) stays known however many tasks others start after it, up
// to its time: the bound evicts the task least recently used.
func TestPolledTaskKept(t *testing.T) {
	tasks := newStartedTasks()
	followed := sessionKey{upstream: "u", caller: "alice", id: "s-alice"}
	other := sessionKey{upstream: "u", caller: "mallory", id: "s-mallory"}
	tasks.started(followed, "long-build", startedTask{tool: "build"})
	for i := range tasksKept + 1 {
		if _, ok := tasks.call(followed, "long-build"); !ok {
			t.Fatalf("alice's task, looked up before each of the %d tasks another caller started since, is no longer known", i)
		}
		tasks.started(other, fmt.Sprint(i), startedTask{tool: "x"})
	}
}
