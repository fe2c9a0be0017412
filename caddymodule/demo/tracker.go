package demo

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Issue is one issue of the demo tracker.
type Issue struct {
	ID       int      `json:"id"`
	Title    string   `json:"title"`
	Body     string   `json:"body,omitempty"`
	Status   string   `json:"status"`
	Comments []string `json:"comments,omitempty"`
}

// Tracker is a small in-memory issue tracker, served as an MCP server with
// read-only, write and destructive tools that carry MCP tool annotations.
type Tracker struct {
	mu     sync.Mutex
	issues map[int]*Issue
	nextID int
}

// NewTracker returns a tracker holding a few example issues.
func NewTracker() *Tracker {
	t := &Tracker{issues: make(map[int]*Issue)}
	for _, issue := range []Issue{
		{Title: "Login page times out", Body: "Users on slow links see a 504.", Status: "open"},
		{Title: "Export to CSV drops unicode", Body: "Names with accents come out garbled.", Status: "in_progress"},
		{Title: "Dark mode contrast", Body: "Links are hard to read.", Status: "closed"},
	} {
		t.create(issue.Title, issue.Body, issue.Status)
	}
	return t
}

func (t *Tracker) create(title, body, status string) Issue {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.nextID++
	issue := &Issue{ID: t.nextID, Title: title, Body: body, Status: status}
	t.issues[issue.ID] = issue
	return *issue
}

// Statuses an issue may have.
var statuses = []string{"open", "in_progress", "closed"}

type listIssuesInput struct {
	Status string `json:"status,omitempty" jsonschema:"only issues with this status: open, in_progress or closed"`
}

type issueIDInput struct {
	ID int `json:"id" jsonschema:"the issue number"`
}

type searchInput struct {
	Query string `json:"query" jsonschema:"words to look for in titles and bodies"`
}

type createIssueInput struct {
	Title string `json:"title" jsonschema:"a one-line summary"`
	Body  string `json:"body,omitempty" jsonschema:"the details"`
}

type addCommentInput struct {
	ID      int    `json:"id" jsonschema:"the issue number"`
	Comment string `json:"comment" jsonschema:"the comment's text"`
}

type updateStatusInput struct {
	ID     int    `json:"id" jsonschema:"the issue number"`
	Status string `json:"status" jsonschema:"open, in_progress or closed"`
}

type issuesOutput struct {
	Issues []Issue `json:"issues"`
}

func falsePtr() *bool { b := false; return &b }
func truePtr() *bool  { b := true; return &b }

// Server returns an MCP server exposing the tracker's tools.
func (t *Tracker) Server() *mcp.Server {
	server := mcp.NewServer(&mcp.Implementation{Name: "mcpgate-demo-tracker", Version: "1.0.0"}, nil)
	readOnly := &mcp.ToolAnnotations{ReadOnlyHint: true}
	mcp.AddTool(server, &mcp.Tool{Name: "list_issues", Description: "List issues, optionally by status.", Annotations: readOnly}, t.listIssues)
	mcp.AddTool(server, &mcp.Tool{Name: "get_issue", Description: "Show one issue.", Annotations: readOnly}, t.getIssue)
	mcp.AddTool(server, &mcp.Tool{Name: "search_issues", Description: "Search issue titles and bodies.", Annotations: readOnly}, t.searchIssues)
	mcp.AddTool(server, &mcp.Tool{Name: "create_issue", Description: "Open a new issue.",
		Annotations: &mcp.ToolAnnotations{DestructiveHint: falsePtr()}}, t.createIssue)
	mcp.AddTool(server, &mcp.Tool{Name: "add_comment", Description: "Comment on an issue.",
		Annotations: &mcp.ToolAnnotations{DestructiveHint: falsePtr()}}, t.addComment)
	mcp.AddTool(server, &mcp.Tool{Name: "update_status", Description: "Change an issue's status.",
		Annotations: &mcp.ToolAnnotations{DestructiveHint: falsePtr(), IdempotentHint: true}}, t.updateStatus)
	mcp.AddTool(server, &mcp.Tool{Name: "delete_issue", Description: "Delete an issue for good.",
		Annotations: &mcp.ToolAnnotations{DestructiveHint: truePtr(), IdempotentHint: true}}, t.deleteIssue)
	return server
}

func (t *Tracker) matching(keep func(*Issue) bool) issuesOutput {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := issuesOutput{Issues: []Issue{}}
	for _, issue := range t.issues {
		if keep(issue) {
			out.Issues = append(out.Issues, *issue)
		}
	}
	slices.SortFunc(out.Issues, func(a, b Issue) int { return a.ID - b.ID })
	return out
}

func (t *Tracker) listIssues(_ context.Context, _ *mcp.CallToolRequest, in listIssuesInput) (*mcp.CallToolResult, issuesOutput, error) {
	if in.Status != "" && !slices.Contains(statuses, in.Status) {
		return nil, issuesOutput{}, fmt.Errorf("unknown status %q", in.Status)
	}
	return nil, t.matching(func(i *Issue) bool { return in.Status == "" || i.Status == in.Status }), nil
}

func (t *Tracker) getIssue(_ context.Context, _ *mcp.CallToolRequest, in issueIDInput) (*mcp.CallToolResult, Issue, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	issue, ok := t.issues[in.ID]
	if !ok {
		return nil, Issue{}, fmt.Errorf("no issue #%d", in.ID)
	}
	return nil, *issue, nil
}

func (t *Tracker) searchIssues(_ context.Context, _ *mcp.CallToolRequest, in searchInput) (*mcp.CallToolResult, issuesOutput, error) {
	query := strings.ToLower(in.Query)
	return nil, t.matching(func(i *Issue) bool {
		return strings.Contains(strings.ToLower(i.Title+" "+i.Body), query)
	}), nil
}

func (t *Tracker) createIssue(_ context.Context, _ *mcp.CallToolRequest, in createIssueInput) (*mcp.CallToolResult, Issue, error) {
	if strings.TrimSpace(in.Title) == "" {
		return nil, Issue{}, fmt.Errorf("an issue needs a title")
	}
	return nil, t.create(in.Title, in.Body, "open"), nil
}

func (t *Tracker) addComment(_ context.Context, _ *mcp.CallToolRequest, in addCommentInput) (*mcp.CallToolResult, Issue, error) {
	if strings.TrimSpace(in.Comment) == "" {
		return nil, Issue{}, fmt.Errorf("a comment needs text")
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	issue, ok := t.issues[in.ID]
	if !ok {
		return nil, Issue{}, fmt.Errorf("no issue #%d", in.ID)
	}
	issue.Comments = append(issue.Comments, in.Comment)
	return nil, *issue, nil
}

func (t *Tracker) updateStatus(_ context.Context, _ *mcp.CallToolRequest, in updateStatusInput) (*mcp.CallToolResult, Issue, error) {
	if !slices.Contains(statuses, in.Status) {
		return nil, Issue{}, fmt.Errorf("unknown status %q", in.Status)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	issue, ok := t.issues[in.ID]
	if !ok {
		return nil, Issue{}, fmt.Errorf("no issue #%d", in.ID)
	}
	issue.Status = in.Status
	return nil, *issue, nil
}

func (t *Tracker) deleteIssue(_ context.Context, _ *mcp.CallToolRequest, in issueIDInput) (*mcp.CallToolResult, Issue, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	issue, ok := t.issues[in.ID]
	if !ok {
		return nil, Issue{}, fmt.Errorf("no issue #%d", in.ID)
	}
	delete(t.issues, in.ID)
	return nil, *issue, nil
}
