package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"go.uber.org/zap"

	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
	"github.com/mcpgate/mcpgate/caddymodule/policy"
	"github.com/mcpgate/mcpgate/caddymodule/replyfilter"
)

// itemList is a list of the server's whose items a policy decides one by
// one: the request that lists them, the member of its result that holds
// them, the request that reaches one, and the member of an item that
// names it to that request.
type itemList struct {
	list, items, reach, key string
}

// itemLists are the lists whose items the gateway hides from a caller
// when the policy blocks reaching them: resources (read by URI) and
// prompts (got by name). Resource templates are not among them: a
// template names no resource a policy could decide a read of.
var itemLists = map[string]itemList{
	"resources/list": {list: "resources/list", items: "resources", reach: "resources/read", key: "uri"},
	"prompts/list":   {list: "prompts/list", items: "prompts", reach: "prompts/get", key: "name"},
}

// itemListRequests returns, by canonical id, the lists of itemLists the
// allowed requests among the verdicts ask for; nil when there are none.
func itemListRequests(verdicts []verdict) map[string]itemList {
	var lists map[string]itemList
	for _, v := range verdicts {
		m := v.message
		list, ok := itemLists[m.Method]
		if !ok || !v.forwardsRequest() {
			continue
		}
		if lists == nil {
			lists = make(map[string]itemList)
		}
		lists[mcpmsg.CanonicalID(m.ID)] = list
	}
	return lists
}

// maxJudgedItems bounds the items of one list (one page) the gateway
// judges, each an evaluation: a server listing more in a page (servers
// page their lists by tens or hundreds) has those past it hidden, rather
// than every list of it costing the gateway seconds.
const maxJudgedItems = 2000

// hideBlockedItems returns the result of a resources/list or prompts/list
// without the items the policy blocks this caller from reaching: each
// item is kept when the decision on reaching it (a resources/read of its
// URI, a prompts/get of its name, in the list's context) would not block
// it, as tools lists hide the tools a caller could not call. Only a
// policy that decides without reading arguments hides items (a
// prompts/get's arguments, like a call's, may change its decision; see
// policy.Engine.DecidesWithoutArguments); an item that names nothing a
// request could reach (no string "uri" or "name"), or a URI that servers
// resolve in different ways, is hidden. A result holding a member that a
// reader may take for the list ("Resources") is refused.
func (x *exchange) hideBlockedItems(list itemList, version string, result []byte) ([]byte, error) {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(result, &members); err != nil {
		return nil, fmt.Errorf("reading the upstream's %s: %w", list.list, err)
	}
	for name := range members {
		if name != list.items && strings.EqualFold(name, list.items) {
			return nil, fmt.Errorf("reading the upstream's %s: a member %q beside or in place of %q, which readers may take for it", list.list, name, list.items)
		}
	}
	raw, ok := members[list.items]
	if !ok {
		return result, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, fmt.Errorf("reading the upstream's %s: %q: %w", list.list, list.items, err)
	}
	cut := len(items) > maxJudgedItems
	if cut {
		x.g.logger.Warn("a list held more items than the gateway judges: those past the bound are hidden",
			zap.String("upstream", x.g.cfg.Upstream), zap.String("method", list.list), zap.Int("items", len(items)), zap.Int("judged", maxJudgedItems))
		items = items[:maxJudgedItems]
	}
	base := x.baseInput(version)
	base.Kind, base.Method = mcpmsg.KindRequest.String(), list.reach
	kept := make([]json.RawMessage, 0, len(items))
	for _, item := range items {
		var named map[string]any
		_ = json.Unmarshal(item, &named)
		key, _ := named[list.key].(string)
		if key == "" || hasCaseVariant(named, list.key) {
			// A "URI" beside "uri" is the item's URI to a reader that
			// matches names in any case (Go's encoding/json takes the
			// last): the gateway cannot tell which it names.
			continue
		}
		base.Params = map[string]any{list.key: key}
		if x.g.hidesItem(x.r, base) {
			continue
		}
		kept = append(kept, item)
	}
	if len(kept) == len(items) && !cut {
		return result, nil
	}
	keptJSON, err := json.Marshal(kept)
	if err != nil {
		return nil, fmt.Errorf("encoding %s: %w", list.list, err)
	}
	members[list.items] = keptJSON
	return json.Marshal(members)
}

// hidesItem reports whether a list hides the item that input (a request
// reaching it, in the list's context) reaches: when the request names a
// resource by a URI servers resolve in different ways, or when a policy
// that decides without reading arguments blocks it (or fails). A gateway
// a reload retired asks the gateways serving its server now, as for
// tools (see hidesTool).
func (g *Gateway) hidesItem(r *http.Request, input *policy.Input) bool {
	message := mcpmsg.Message{Kind: mcpmsg.KindRequest, Method: input.Method, Params: input.Params}
	if message.UnresolvedResourceURI() != "" {
		return true
	}
	return g.hiddenByJudges(r, input, func(h *Gateway, input *policy.Input) bool {
		if !h.cfg.Engine.DecidesWithoutArguments() {
			return false
		}
		decision, err := h.cfg.Engine.Decide(r.Context(), input)
		if err != nil {
			h.logger.Error("policy failed on a listed item; item hidden", zap.String("server", h.cfg.Upstream), zap.String("method", input.Method), zap.Error(err))
		}
		// Only tool calls are held for approval: a read that needs it
		// is refused.
		return decision.Action != policy.ActionAllow
	})
}

// hideThenCheckItems filters a resources or prompts list
// (hideBlockedItems), and then checks the requests it may embed for the
// client, as hideThenCheck does for tools lists.
func (x *exchange) hideThenCheckItems(rl *relay, list itemList, id []byte, version string, result []byte) ([]byte, error) {
	filtered, err := x.hideBlockedItems(list, version, result)
	if err != nil {
		return nil, err
	}
	return rl.checkInputRequests(id, filtered)
}

// hasCaseVariant reports whether object has a member whose name differs
// from name only by case (as Go's encoding/json matches names).
func hasCaseVariant(object map[string]any, name string) bool {
	for member := range object {
		if member != name && strings.EqualFold(member, name) {
			return true
		}
	}
	return false
}

// hideStrayItems filters, as hideBlockedItems does, a result that holds a
// resources or prompts list (a top-level "resources" or "prompts" array
// holding objects, under any name a reader may take for it) whatever it
// answers: a list answered on another POST than its own (an
// upstream that answers on the latest stream of an id, as the TypeScript
// SDK's does), after its request was cancelled, or on a resumed stream,
// whose request the gateway no longer ties to it. A result that names
// neither is returned as it is, unread.
func (x *exchange) hideStrayItems(version string, result []byte) ([]byte, error) {
	for _, list := range itemLists {
		if !replyfilter.MayName(result, list.items) || !holdsObjects(result, list.items) {
			continue
		}
		filtered, err := x.hideBlockedItems(list, version, result)
		if err != nil {
			return nil, err
		}
		result = filtered
	}
	return result, nil
}

// holdsObjects reports whether result, a JSON object, has a member whose
// name folds to name and holds an array with an object in it (what SDK
// clients may read as a list of resources or prompts: go-sdk skips a
// null item and reads the rest; hideBlockedItems hides every item that is
// no object). A result with such a member that holds no object is left
// as the server wrote it.
func holdsObjects(result []byte, name string) bool {
	var members map[string]json.RawMessage
	if json.Unmarshal(result, &members) != nil {
		return false
	}
	for member, value := range members {
		if !strings.EqualFold(member, name) {
			continue
		}
		var items []json.RawMessage
		if json.Unmarshal(value, &items) != nil {
			continue
		}
		for _, item := range items {
			if trimmed := bytes.TrimLeft(item, " \t\r\n"); len(trimmed) > 0 && trimmed[0] == '{' {
				return true
			}
		}
	}
	return false
}
