package gateway

import (
	"fmt"
	"testing"
	"time"
)

// TestPolledTaskKept: a task its client keeps following (each tasks/get
// looks it up) stays known however many tasks others start after it, up
// to its time.
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

// TestTasksKeptPerCaller: no caller's tasks, however many, make the
// gateway forget another caller's live task, followed or not: a caller
// past its bound gives up its own least recently followed; with every
// place taken by others' live tasks, a new caller's task is not followed
// (started reports it); expired tasks make room.
func TestTasksKeptPerCaller(t *testing.T) {
	tasks := newStartedTasks()
	now := time.Unix(0, 0)
	tasks.now = func() time.Time { return now }
	caller := func(name string) sessionKey { return sessionKey{upstream: "u", caller: name, id: "s-" + name} }
	tasks.started(caller("alice"), "build", startedTask{tool: "build"})
	for i := range tasksKept {
		tasks.started(caller("mallory"), fmt.Sprint(i), startedTask{tool: "x"})
	}
	if _, ok := tasks.call(caller("alice"), "build"); !ok {
		t.Fatal("alice's live task was forgotten after mallory started tasks of his own")
	}
	if _, ok := tasks.call(caller("mallory"), "0"); ok {
		t.Error("mallory's first task is still kept past his bound; want his least recently followed given up")
	}
	for c := range tasksKept / tasksKeptPerCaller {
		for i := range tasksKeptPerCaller {
			tasks.started(caller(fmt.Sprint("c", c)), fmt.Sprint(i), startedTask{tool: "x"})
		}
	}
	if len(tasks.tasks) > tasksKept {
		t.Errorf("%d tasks kept; the bound is %d", len(tasks.tasks), tasksKept)
	}
	if _, ok := tasks.call(caller("alice"), "build"); !ok {
		t.Fatal("alice's live task was forgotten once every place was taken")
	}
	if tasks.started(caller("newcomer"), "t", startedTask{tool: "x"}) {
		t.Error("a new caller's task was followed with every place taken by others' live tasks")
	}
	now = now.Add(tasksFor)
	if !tasks.started(caller("newcomer"), "t", startedTask{tool: "x"}) {
		t.Error("a new caller's task was not followed once the others expired")
	}
	if _, ok := tasks.call(caller("alice"), "build"); ok {
		t.Error("alice's task is known past its time")
	}
}

// TestTasksKeptAcrossUpstreams: a caller's bound counts its tasks on
// every upstream, and an anonymous session's tasks are its own: another
// anonymous session's many tasks never make the gateway forget them.
func TestTasksKeptAcrossUpstreams(t *testing.T) {
	tasks := newStartedTasks()
	for u := range tasksKept / tasksKeptPerCaller {
		for i := range tasksKeptPerCaller {
			tasks.started(sessionKey{upstream: fmt.Sprint("u", u), caller: "mallory", id: "m"}, fmt.Sprint(i), startedTask{tool: "x"})
		}
	}
	if !tasks.started(sessionKey{upstream: "u0", caller: "alice", id: "a"}, "build", startedTask{tool: "build"}) {
		t.Error("alice's task not followed: one caller on ten upstreams took every place")
	}
	victim := sessionKey{upstream: "u", id: "s-victim"}
	tasks.started(victim, "build", startedTask{tool: "build"})
	for i := range tasksKeptPerCaller {
		tasks.started(sessionKey{upstream: "u", id: "s-other"}, fmt.Sprint(i), startedTask{tool: "x"})
	}
	if _, ok := tasks.call(victim, "build"); !ok {
		t.Error("an anonymous session's task was forgotten after another anonymous session started tasks")
	}
}
