package mcpmsg

import (
	"fmt"
	"slices"
	"strings"
)

// ClientRequestMethods are the requests MCP defines for a client to send a
// server, in the protocol revisions the gateway speaks and their official
// extensions (tasks/update: io.modelcontextprotocol/tasks), sorted.
var ClientRequestMethods = []string{
	"completion/complete",
	"initialize",
	"logging/setLevel",
	"ping",
	"prompts/get",
	"prompts/list",
	"resources/list",
	"resources/read",
	"resources/subscribe",
	"resources/templates/list",
	"resources/unsubscribe",
	"server/discover",
	"subscriptions/listen",
	"tasks/cancel",
	"tasks/get",
	"tasks/list",
	"tasks/result",
	"tasks/update",
	"tools/call",
	"tools/list",
}

// mcpNamespaces are the first segments of the methods MCP defines.
var mcpNamespaces = []string{"completion", "elicitation", "logging", "notifications", "prompts", "resources", "roots", "sampling", "server", "subscriptions", "tasks", "tools"}

// CheckClientRequestMethod accepts a method a client may request of a
// server: one MCP defines (exactly as it spells it), or an extension's
// under a prefix of its own ("acme/search"). A name in MCP's namespaces
// that MCP does not define, in any case ("tools/cal", "Tools/call"), a
// notification, and a name without a prefix that MCP does not define are
// refused: a setting that names one would never match a message.
func CheckClientRequestMethod(method string) error {
	if _, found := slices.BinarySearch(ClientRequestMethods, method); found {
		return nil
	}
	namespace, _, prefixed := strings.Cut(method, "/")
	if !prefixed || namespace == "" || slices.Contains(mcpNamespaces, strings.ToLower(namespace)) {
		return fmt.Errorf("method %q is not a request MCP defines for clients (%s); an extension's method has a prefix of its own, such as acme/search",
			method, strings.Join(ClientRequestMethods, ", "))
	}
	return nil
}

// CheckNotifications refuses a notification (a message without an id)
// whose method is one of MCP's requests ("ping", "initialize") or in MCP's
// namespaces but not a notification's ("tools/call" sent without an id, in
// any case): what MCP defines there are requests, which have ids. A server
// that ran one anyway would run it past the limits, which count requests,
// and answer nobody; only a policy that decides notifications by method
// would have stopped it. Extensions' notifications ("acme/changed") pass.
func (b *Body) CheckNotifications() *Error {
	for i, m := range b.Messages {
		if m.Kind != KindNotification {
			continue
		}
		namespace, _, _ := strings.Cut(strings.ToLower(m.Method), "/")
		request := slices.ContainsFunc(ClientRequestMethods, func(method string) bool { return strings.EqualFold(method, m.Method) })
		if request || namespace != "notifications" && slices.Contains(mcpNamespaces, namespace) {
			message := fmt.Sprintf("%q is not a notification MCP defines: its methods outside notifications/ are requests, which need an id", m.Method)
			if b.Batch {
				message = fmt.Sprintf("batch element %d: %s", i, message)
			}
			return &Error{Code: CodeInvalidRequest, Message: message}
		}
	}
	return nil
}
