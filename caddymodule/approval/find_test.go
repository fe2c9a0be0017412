package approval_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/caddymodule/approval"
	"github.com/mcpgate/mcpgate/caddymodule/approval/approvaltest"
)

// TestFind: the service found is the first accepted one whose store knows
// the approval and which owns it; with none, the error wraps ErrNotFound,
// unless a store could not be read.
func TestFind(t *testing.T) {
	holder, elsewhere, unreachable := approvaltest.NewService(t, nil), approvaltest.NewService(t, nil), approvaltest.NewUnreachableService(t, nil)
	a := approvaltest.Request(t, holder)
	disowned := approvaltest.NewService(t, nil)
	gone := approvaltest.Request(t, disowned)
	retired := approvaltest.Settings(t)
	retired.DecisionSecrets = []approval.Secret{approvaltest.MustSecret(t, "whsec_"+strings.Repeat("B", 43)+"=")}
	if err := disowned.Configure(retired); err != nil {
		t.Fatalf("retiring the decision secret: %v", err)
	}
	tests := []struct {
		name     string
		services approvaltest.Services
		id       string
		// refuse is a service accept refuses.
		refuse *approval.Service
		// want is the service found; without one, wantNotFound says
		// whether the error wraps ErrNotFound.
		want         *approval.Service
		wantNotFound bool
	}{
		{name: "in the second service", services: approvaltest.Services{elsewhere, holder}, id: a.ID, want: holder},
		{name: "past an unreachable store", services: approvaltest.Services{unreachable, holder}, id: a.ID, want: holder},
		{name: "not accepted", services: approvaltest.Services{elsewhere, holder}, id: a.ID, refuse: holder, wantNotFound: true},
		{name: "known, not owned", services: approvaltest.Services{disowned}, id: gone.ID, wantNotFound: true},
		{name: "unknown", services: approvaltest.Services{elsewhere}, id: a.ID, wantNotFound: true},
		{name: "no services", id: a.ID, wantNotFound: true},
		{name: "not an approval's id", services: approvaltest.Services{holder}, id: "apr_x", wantNotFound: true},
		{name: "store unreachable", services: approvaltest.Services{holder, unreachable}, id: gone.ID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := approval.Find(context.Background(), tt.services.Each, tt.id, func(s *approval.Service) bool { return s != tt.refuse })
			if tt.want != nil {
				if got != tt.want || err != nil {
					t.Fatalf("Find = %p, %v; want %p, nil", got, err, tt.want)
				}
				return
			}
			if got != nil || err == nil || errors.Is(err, approval.ErrNotFound) != tt.wantNotFound {
				t.Errorf("Find = %p, %v; want nil and an error that wraps ErrNotFound: %v", got, err, tt.wantNotFound)
			}
		})
	}
}
