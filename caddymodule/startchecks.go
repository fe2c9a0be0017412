package caddymodule

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"go.uber.org/zap"

	"github.com/mcpgate/mcpgate/caddymodule/approval"
)

// This file holds the checks of a configuration that need every handler
// of it (its approvals, the servers its permissions tables name): the app
// makes them as the configuration starts.

// checkApprovalsServed checks that every mcp_approvals handler serves an
// approval service of the configuration. It serves only the services of
// its own process whose instance is exactly the one it names (see
// eachApprovalService): one naming no such instance would find nothing
// for every callback and inbox decision, and say only "unknown approval".
func (n *names) checkApprovalsServed() error {
	instances := n.approvalInstances()
	for _, served := range n.approvalsServed {
		switch {
		case served == "" && len(instances) == 0:
			return errors.New("mcp_approvals: no mcp_policy handler of this configuration has an approval block, so there are no approvals for it to decide: " +
				"every callback and inbox decision would find nothing (it serves only this process's approvals)")
		case served != "" && !slices.Contains(instances, served):
			return fmt.Errorf("mcp_approvals: instance %q is no approval instance of this configuration's mcp_policy handlers (%s)%s: "+
				"every callback and inbox decision would find nothing; name one of them exactly (a handler's approval block without `instance` is %q), or leave instance out to serve them all",
				served, namesOrNone(instances), didYouMean(served, instances), defaultApprovalInstance)
		}
	}
	return nil
}

// approvalInstances are the instances of the approval services the
// handlers hold calls in, sorted and without repeats.
func (n *names) approvalInstances() []string {
	var instances []string
	for _, use := range n.approvalUses {
		instances = append(instances, use.instance)
	}
	slices.Sort(instances)
	return slices.Compact(instances)
}

// checkApprovers checks that someone can hold the inbox approvers
// ("inbox", "inbox:<account>", "group:<name>") each entry of a handler's
// permissions table names: only the approvers named may decide a call
// (see approval.Approval.Entitled), and one that no inbox of the
// handler's approval instance gives decides nothing. An entry none of
// whose approvers can be held leaves its calls to wait until they
// expire: with a memory store only this process's inboxes decide them,
// and the configuration is refused, unless the entry is a tool's on
// every server (tools[name]), which a table shared by several servers
// may hold for another's tool. Otherwise (another of the entry's
// approvers holds it, or with Redis another replica's inbox may) a
// warning is logged. The caller does not count as one who can decide
// (a client that cannot be asked leaves the call to the others named);
// the other approvers count as held: "webhook"
// whoever holds a decision secret (one is required), "admin" and
// "admin:<name>" operators on the admin API, whose endpoint a module
// cannot see.
func (n *names) checkApprovers(logger *zap.Logger) error {
	for _, use := range n.approvalUses {
		held := n.inboxPrincipals(use.instance)
		for _, entry := range use.approvers {
			holds := func(approver string) bool { return !isInboxPrincipal(approver) || slices.Contains(held, approver) }
			if !slices.ContainsFunc(entry.Approvers, func(approver string) bool { return !holds(approver) }) {
				continue
			}
			// The caller decides only when it can be asked; a client
			// that cannot (no elicitation) leaves the call to the others
			// named, so the caller is no one who can always decide.
			decides := func(approver string) bool { return approver != approval.PrincipalCaller && holds(approver) }
			if use.store != storeRedis && !entry.AnyServer && !slices.ContainsFunc(entry.Approvers, decides) {
				unheld := entry.Approvers[0]
				return fmt.Errorf("mcp_policy (server %q): the permissions table's %s names only approvers no mcp_approvals inbox of approval instance %q holds (%s; %s)%s: "+
					"only the approvers named may decide its calls, and with store memory only this process's inboxes decide them, so they would wait until they expire; "+
					"give an inbox of that instance the account or `group <name> <account>...`, or name an approver that exists",
					use.server, entry.Where, use.instance, strings.Join(entry.Approvers, ", "), heldOrNone(held), didYouMean(unheld, held))
			}
			for _, approver := range entry.Approvers {
				if holds(approver) {
					continue
				}
				logger.Warn("the permissions table names an approver no mcp_approvals inbox of this configuration holds for its approval instance: "+
					"it decides none of the entry's calls (the entry's other approvers, or another replica's inbox, may; the caller only when it can be asked)",
					zap.String("server", use.server), zap.String("entry", entry.Where), zap.String("approver", approver), zap.String("instance", use.instance),
					zap.Strings("held", held), zap.String("did_you_mean", caseVariant(approver, held)))
			}
		}
	}
	return nil
}

// checkTableServers warns of every server a permissions table's section
// names ("servers": {"<name>": ...}, in policy data) that no handler of
// the configuration serves: the section applies to no call, and what it
// was to block on that server is decided by the rest of the table. It is
// a warning, not a refusal, as one policy folder may serve several
// configurations, each serving some of its servers.
func (n *names) checkTableServers(logger *zap.Logger) {
	served := slices.Sorted(maps.Keys(n.servers))
	for _, server := range n.tableServers {
		if slices.Contains(served, server) {
			continue
		}
		logger.Warn("the permissions table has a section for a server no mcp_policy handler of this configuration serves: it applies to no call (server names match exactly)",
			zap.String("server", server), zap.Strings("served", served), zap.String("did_you_mean", caseVariant(server, served)))
	}
}

// inboxPrincipals are the approvers the inboxes deciding the approvals of
// instance hold, sorted and without repeats.
func (n *names) inboxPrincipals(instance string) []string {
	var held []string
	for _, inbox := range n.inboxes {
		if inbox.instance == "" || inbox.instance == instance {
			held = append(held, inbox.principals...)
		}
	}
	slices.Sort(held)
	return slices.Compact(held)
}

// isInboxPrincipal reports whether only an inbox account holds approver.
func isInboxPrincipal(approver string) bool {
	return approver == approval.PrincipalInbox || strings.HasPrefix(approver, approval.PrincipalInbox+":") || strings.HasPrefix(approver, "group:")
}

// heldOrNone says which approvers inboxes hold, or that no inbox decides.
func heldOrNone(held []string) string {
	if len(held) == 0 {
		return "no inbox decides that instance"
	}
	return "its inboxes hold " + strings.Join(held, ", ")
}

// namesOrNone lists names, quoted, or says there are none.
func namesOrNone(names []string) string {
	if len(names) == 0 {
		return "there are none"
	}
	quoted := make([]string, len(names))
	for i, name := range names {
		quoted[i] = fmt.Sprintf("%q", name)
	}
	return strings.Join(quoted, ", ")
}

// didYouMean is "; did you mean <name>?" for the caseVariant of name
// among names, if there is one; else "".
func didYouMean(name string, names []string) string {
	if other := caseVariant(name, names); other != "" {
		return fmt.Sprintf("; did you mean %q?", other)
	}
	return ""
}

// caseVariant returns a name among names that is name in another case,
// which an operator may have meant, or "".
func caseVariant(name string, names []string) string {
	for _, other := range names {
		if other != name && strings.EqualFold(other, name) {
			return other
		}
	}
	return ""
}
