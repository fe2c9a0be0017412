package gateway

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"

	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
)

// This file binds the tasks a decided tools/call started (MCP 2025-11-25
// tasks, and the 2026-07-28 tasks extension) to the caller and session
// whose call started them. An upstream may keep one namespace of task ids
// for every caller (a stateless one, or one that scopes tasks by nothing),
// so that tasks/get, tasks/result and tasks/cancel would reach the results
// of another caller's call, of a tool the policy blocks for this one. The
// gateway records the id of each task an allowed tools/call's result
// creates, and relays those requests only for the tasks it recorded for
// the same caller and session (tasks/list, which would list every task the
// upstream keeps, is not among the library's protocol methods).

// taskMethods are the requests that name a task by params.taskId.
var taskMethods = []string{"tasks/get", "tasks/result", "tasks/cancel", "tasks/update"}

// How many task bindings are kept, and for how long: past them, a task's
// requests are refused as those of a task the gateway does not know.
const (
	tasksKept = 10_000
	tasksFor  = 24 * time.Hour
)

// startedTasks are the tasks allowed calls started, by session and task
// id, with the tool each call named.
type startedTasks struct {
	tasks *expirable.LRU[string, string]
}

func newStartedTasks() *startedTasks {
	return &startedTasks{tasks: expirable.NewLRU[string, string](tasksKept, nil, tasksFor)}
}

// taskKey keys a task of a session.
func taskKey(session sessionKey, taskID string) string {
	return session.String() + "\x00" + taskID
}

// started records that a call to tool in session started the task.
func (t *startedTasks) started(session sessionKey, taskID, tool string) {
	t.tasks.Add(taskKey(session, taskID), tool)
}

// tool returns the tool whose call in session started the task, and
// whether one did.
func (t *startedTasks) tool(session sessionKey, taskID string) (string, bool) {
	return t.tasks.Get(taskKey(session, taskID))
}

// createdTask returns the id of the task a tools/call result creates: a
// CreateTaskResult, {"task": {"taskId": ...}} (2025-11-25) or
// {"resultType": "task", "taskId": ...} (the 2026-07-28 extension); ""
// for any other result. Member names that differ from these only by case
// are an error, as in any result the gateway reads.
func createdTask(result []byte) (string, error) {
	task, err := memberValue(result, "task")
	if err != nil {
		return "", err
	}
	if task != nil {
		return stringMember(task, "taskId")
	}
	resultType, err := stringMember(result, "resultType")
	if err != nil || resultType != "task" {
		return "", err
	}
	return stringMember(result, "taskId")
}

// stringMember returns the string value of an object's member, "" when
// it has none.
func stringMember(object []byte, name string) (string, error) {
	raw, err := memberValue(object, name)
	if err != nil || raw == nil {
		return "", err
	}
	var value string
	if err := json.Unmarshal(raw, &value); err != nil {
		return "", fmt.Errorf("member %q is not a string", name)
	}
	return value, nil
}

// recordTask records the task an allowed tools/call's result created,
// bound to the exchange's session.
func (x *exchange) recordTask(answered answeredRequest, result []byte) error {
	if answered.method != "tools/call" {
		return nil
	}
	taskID, err := createdTask(result)
	if err != nil || taskID == "" {
		return err
	}
	x.g.sessions.tasks.started(x.session, taskID, answered.name)
	return nil
}

// checkTasks refuses a request naming a task (tasks/get, tasks/result,
// tasks/cancel, tasks/update) that no call of the same caller and
// session started through the gateway.
func (x *exchange) checkTasks() error {
	for i := range x.body.Messages {
		m := &x.body.Messages[i]
		if m.Kind != mcpmsg.KindRequest || !isTaskMethod(m.Method) {
			continue
		}
		taskID, _ := m.Params["taskId"].(string)
		if _, ok := x.g.sessions.tasks.tool(x.session, taskID); !ok {
			return refuse(http.StatusForbidden, mcpmsg.CodeInvalidParams,
				fmt.Sprintf("task %q was not started by a call of this caller in this session through the gateway", taskID))
		}
	}
	return nil
}

// isTaskMethod reports whether method names a task by params.taskId.
func isTaskMethod(method string) bool {
	return slices.ContainsFunc(taskMethods, func(m string) bool { return strings.EqualFold(m, method) })
}
