package gateway

import (
	"container/list"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
	"github.com/mcpgate/mcpgate/caddymodule/policy"
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

// How many task bindings are kept, in all and for one caller, and for
// how long: past them, a task's requests are refused as those of a task
// the gateway does not know.
const (
	tasksKept          = 10_000
	tasksKeptPerCaller = 1_000
	tasksFor           = 24 * time.Hour
)

// errTooManyTasks is why a task an allowed call created is not followed.
var errTooManyTasks = errors.New("the gateway follows as many tasks as it may just now, so it cannot follow the task this call created: " +
	"its status and result cannot be had through the gateway")

// startedTasks are the tasks allowed calls started, by session and task
// id, with what is known of each call. A caller's tasks are kept apart
// from other callers': when the bounds are reached, the tasks that go are
// the expired ones, then the adding caller's own least recently followed
// (never another caller's live task: one starting many would make the
// gateway forget the task another follows); when the caller has none to
// give up, its new task is not followed.
//
// It is written here rather than with ttlcache: the eviction is per
// caller, which a cache with one order cannot do.
type startedTasks struct {
	mu    sync.Mutex
	tasks map[string]*trackedTask
	// added orders every task by when it was added (so by when it
	// expires); byCaller orders each caller's by when it was last
	// followed (see callerOf).
	added    *list.List
	byCaller map[sessionKey]*list.List
	// now is the clock, time.Now but in tests.
	now func() time.Time
}

// trackedTask is a task kept, with its places in the orders.
type trackedTask struct {
	key     string
	caller  sessionKey
	call    startedTask
	expires time.Time
	added   *list.Element
	used    *list.Element
}

// startedTask is the call that started a task.
type startedTask struct {
	// tool is the tool it called.
	tool string
	// approvedFor is, when it ran once approved (by reviewers, or its
	// caller), the decision that asked for the approval: a request of the
	// same caller following the task that the policy holds for the same
	// reason and approvers goes on that approval.
	approvedFor *policy.Decision
}

func newStartedTasks() *startedTasks {
	return &startedTasks{tasks: make(map[string]*trackedTask), added: list.New(), byCaller: make(map[sessionKey]*list.List), now: time.Now}
}

// taskKey keys a task of a session.
func taskKey(session sessionKey, taskID string) string {
	return session.String() + "\x00" + taskID
}

// started records that a call in session started the task, and reports
// whether it could (see startedTasks).
func (t *startedTasks) started(session sessionKey, taskID string, call startedTask) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	now, key, caller := t.now(), taskKey(session, taskID), callerOf(session)
	if task, ok := t.tasks[key]; ok {
		t.remove(task)
	}
	for front := t.added.Front(); front != nil && !now.Before(front.Value.(*trackedTask).expires); front = t.added.Front() {
		t.remove(front.Value.(*trackedTask))
	}
	own := t.byCaller[caller]
	if own != nil && own.Len() >= tasksKeptPerCaller || len(t.tasks) >= tasksKept {
		if own == nil || own.Len() == 0 {
			return false
		}
		t.remove(own.Front().Value.(*trackedTask))
	}
	if own = t.byCaller[caller]; own == nil {
		own = list.New()
		t.byCaller[caller] = own
	}
	task := &trackedTask{key: key, caller: caller, call: call, expires: now.Add(tasksFor)}
	task.added, task.used = t.added.PushBack(task), own.PushBack(task)
	t.tasks[key] = task
	return true
}

// call returns the call in session that started the task, and whether
// one did; the task is then its caller's most recently followed.
func (t *startedTasks) call(session sessionKey, taskID string) (startedTask, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	task, ok := t.tasks[taskKey(session, taskID)]
	if !ok {
		return startedTask{}, false
	}
	if !t.now().Before(task.expires) {
		t.remove(task)
		return startedTask{}, false
	}
	t.byCaller[task.caller].MoveToBack(task.used)
	return task.call, true
}

// remove forgets a task. t.mu is held.
func (t *startedTasks) remove(task *trackedTask) {
	delete(t.tasks, task.key)
	t.added.Remove(task.added)
	own := t.byCaller[task.caller]
	if own.Remove(task.used); own.Len() == 0 {
		delete(t.byCaller, task.caller)
	}
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
	if !x.g.sessions.tasks.started(x.session, taskID, startedTask{tool: answered.name, approvedFor: answered.approvedFor}) {
		return errTooManyTasks
	}
	return nil
}

// relatedTaskKey is the _meta member that puts a message in a task's
// context (MCP 2025-11-25, tasks).
const relatedTaskKey = "io.modelcontextprotocol/related-task"

// checkTasks refuses a request naming a task that no call of the same
// caller and session started through the gateway: a request following a
// task (params.taskId), a subscription to tasks' notifications
// (params.notifications.taskIds, the 2026-07-28 tasks extension), or any
// request put in a task's context (params._meta's related task; a
// client's notifications and responses may name tasks of its own, which a
// server's requests started).
func (x *exchange) checkTasks() error {
	for i := range x.body.Messages {
		m := &x.body.Messages[i]
		ids, err := namedTasks(m)
		if err != nil {
			return refuse(http.StatusBadRequest, mcpmsg.CodeInvalidParams, err.Error())
		}
		for _, taskID := range ids {
			if _, ok := x.g.sessions.tasks.call(x.session, taskID); !ok {
				return refuse(http.StatusForbidden, mcpmsg.CodeInvalidParams,
					fmt.Sprintf("task %q was not started by a call of this caller in this session through the gateway", taskID))
			}
		}
	}
	return nil
}

// namedTasks returns the ids of the tasks a client's request names; an
// error when a place that names tasks holds something else, or is named
// otherwise only by case (a server reading names loosely, as Go's
// encoding/json does, would read it there).
func namedTasks(m *mcpmsg.Message) ([]string, error) {
	if m.Kind != mcpmsg.KindRequest {
		return nil, nil
	}
	var ids []string
	if isTaskMethod(m.Method) {
		taskID, err := taskIDOf(m.Params)
		if err != nil {
			return nil, fmt.Errorf("%s: params.taskId is not a task id (%v)", m.Method, err)
		}
		ids = append(ids, taskID)
	}
	listed, err := memberPath(m.Params, "notifications", "taskIds")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", m.Method, err)
	}
	if listed != nil {
		values, ok := listed.([]any)
		if !ok {
			return nil, fmt.Errorf("%s: params.notifications.taskIds is not an array", m.Method)
		}
		for _, value := range values {
			taskID, ok := value.(string)
			if !ok {
				return nil, fmt.Errorf("%s: params.notifications.taskIds holds %v, not a task id", m.Method, value)
			}
			ids = append(ids, taskID)
		}
	}
	related, err := relatedTask(m.Params)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", m.Method, err)
	}
	if related != nil {
		ids = append(ids, *related)
	}
	return ids, nil
}

// relatedTask returns the task params' _meta puts a message in the
// context of (nil for none), reading names exactly.
func relatedTask(params map[string]any) (*string, error) {
	related, err := memberPath(params, "_meta", relatedTaskKey)
	if err != nil || related == nil {
		return nil, err
	}
	object, _ := related.(map[string]any)
	taskID, err := taskIDOf(object)
	if err != nil {
		return nil, fmt.Errorf("_meta[%q] names no task id", relatedTaskKey)
	}
	return &taskID, nil
}

// taskIDOf returns an object's taskId, read exactly: an error when the
// member is missing, not a string, or named otherwise only by case.
func taskIDOf(object map[string]any) (string, error) {
	value, present, err := exactMember(object, "taskId")
	if err != nil {
		return "", err
	}
	taskID, ok := value.(string)
	switch {
	case !present:
		return "", errors.New("taskId is missing")
	case !ok:
		return "", fmt.Errorf("taskId is %s, not a string", mcpmsg.TypeName(value))
	}
	return taskID, nil
}

// memberPath returns the value at path in nested objects, nil when a step
// is missing or not an object; an error when a step is named otherwise
// only by case.
func memberPath(object map[string]any, path ...string) (any, error) {
	var value any = object
	for _, name := range path {
		current, ok := value.(map[string]any)
		if !ok {
			return nil, nil
		}
		next, present, err := exactMember(current, name)
		if err != nil || !present {
			return nil, err
		}
		value = next
	}
	return value, nil
}

// exactMember returns an object's member named name, refusing a member
// named otherwise only by case.
func exactMember(object map[string]any, name string) (any, bool, error) {
	if variant, _, found := mcpmsg.CaseVariant(object, name); found {
		return nil, false, fmt.Errorf("member %q is %q in another case", variant, name)
	}
	value, present := object[name]
	return value, present, nil
}

// taskCall returns the call that started the task a request names, and
// whether the request names one (checkTasks refused those naming a task
// no call of the session started).
func (x *exchange) taskCall(m *mcpmsg.Message) (startedTask, bool) {
	if m.Kind != mcpmsg.KindRequest || !isTaskMethod(m.Method) {
		return startedTask{}, false
	}
	taskID, _ := m.Params["taskId"].(string)
	return x.g.sessions.tasks.call(x.session, taskID)
}

// aboutForeignTask reports whether a server's message concerns a task no
// call of the session started through the gateway, which is then not
// passed on: a notification of a task's status (with its result or what
// it asks: notifications/tasks/status of 2025-11-25, notifications/tasks
// of the 2026-07-28 extension), or any message put in a task's context
// (params._meta's related task). An upstream that keeps every caller's
// tasks in one namespace may send them to a stream of another caller's.
// What names a task unreadably (another case, another type) counts as
// foreign.
func (rl *relay) aboutForeignTask(m *mcpmsg.Message) bool {
	var named []string
	if strings.HasPrefix(strings.ToLower(m.Method), "notifications/tasks") {
		taskID, err := taskIDOf(m.Params)
		if err != nil {
			return rl.foreignTask(m, "")
		}
		named = append(named, taskID)
	}
	related, err := relatedTask(m.Params)
	if err != nil {
		return rl.foreignTask(m, "")
	}
	if related != nil {
		named = append(named, *related)
	}
	for _, taskID := range named {
		if _, ok := rl.tasks.call(rl.session, taskID); !ok {
			return rl.foreignTask(m, taskID)
		}
	}
	return false
}

// errForeignTask is why a server's request about a task the session did
// not start is refused.
const errForeignTask = "the request concerns a task the client's session did not start"

// foreignTask logs a server's message about a task the session did not
// start, and reports true.
func (rl *relay) foreignTask(m *mcpmsg.Message, taskID string) bool {
	rl.logger().Info("server message about a task the session did not start not passed on",
		zap.String("method", m.Method), zap.String("task", taskID))
	return true
}

// coveredByApproval reports whether a request following the task, which
// the policy decided needs approval, goes on the approval of the call
// that started it: only for a caller the gateway identifies (anonymous
// callers of a stateless upstream share one session, and one of them
// would follow another's task on that other's approval), held for the
// same reason by the same approvers.
func (t startedTask) coveredByApproval(session sessionKey, d policy.Decision) bool {
	if session.caller == "" || t.approvedFor == nil || d.Action != policy.ActionNeedsApproval {
		return false
	}
	return d.Reason == t.approvedFor.Reason &&
		slices.Equal(slices.Sorted(slices.Values(d.Approvers)), slices.Sorted(slices.Values(t.approvedFor.Approvers)))
}

// isTaskMethod reports whether method names a task by params.taskId.
func isTaskMethod(method string) bool {
	return slices.ContainsFunc(taskMethods, func(m string) bool { return strings.EqualFold(m, method) })
}
