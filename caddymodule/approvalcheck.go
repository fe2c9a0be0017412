package caddymodule

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// This file holds the checks of a configuration's approvals that need
// every handler of it: the app makes them as the configuration starts.

// checkApprovalsServed checks that every mcp_approvals handler serves an
// approval service of the configuration. It serves only the services of
// its own process whose instance is exactly the one it names (see
// eachApprovalService): one naming no such instance would find nothing
// for every callback and inbox decision, and say only "unknown approval".
func (n *names) checkApprovalsServed() error {
	instances := slices.Sorted(maps.Keys(n.approvalInstances))
	for _, served := range n.approvalsServed {
		switch {
		case served == "" && len(instances) == 0:
			return errors.New("mcp_approvals: no mcp_policy handler of this configuration has an approval block, so there are no approvals for it to decide: " +
				"every callback and inbox decision would find nothing (it serves only this process's approvals)")
		case served != "" && !n.approvalInstances[served]:
			return fmt.Errorf("mcp_approvals: instance %q is no approval instance of this configuration's mcp_policy handlers (%s)%s: "+
				"every callback and inbox decision would find nothing; name one of them exactly (a handler's approval block without `instance` is %q), or leave instance out to serve them all",
				served, namesOrNone(instances), didYouMean(served, instances), defaultApprovalInstance)
		}
	}
	return nil
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

// didYouMean is ", did you mean <name>?" for a name among names that is
// name in another case, which an operator may have meant; else "".
func didYouMean(name string, names []string) string {
	for _, other := range names {
		if other != name && strings.EqualFold(other, name) {
			return fmt.Sprintf("; did you mean %q?", other)
		}
	}
	return ""
}
