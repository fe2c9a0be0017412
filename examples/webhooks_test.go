package examples_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/caddymodule/approval"
	"github.com/mcpgate/mcpgate/caddymodule/approval/approvaltest"
	"github.com/mcpgate/mcpgate/caddymodule/display"
)

// hostile is text a caller (or a model) controls, made to break what it
// is embedded in: quotes, backslashes, newlines, unicode, HTML, Slack's
// mention and link syntax, and a code fence.
const hostile = "He said \"approve\" \\ }]\n<script>alert('x')</script> & <!channel> <https://evil.example|Approve> ```fence``` Grüße 日本 🚀"

// templateSample is one event to render a template over.
type templateSample struct {
	name string
	// call is the call that asks for approval.
	call approval.Call
	// inboxURL is the approval block's inbox_url.
	inboxURL string
	// event is the type of the event checked: requested, or the
	// approval cancelled or expired after it was requested.
	event string
}

var templateSamples = []templateSample{
	{
		name: "requested by a user, with an inbox",
		call: approval.Call{
			User: "alice@example.com", Server: "tracker", Tool: "create_issue",
			Arguments: map[string]any{"title": hostile, "body": "line one\nline two", "labels": []any{"bug", "<b>ui</b>"}},
			Reason:    "creating issues needs a human: " + hostile, Approvers: []string{"group:ops", "inbox:bob"},
		},
		inboxURL: "https://gw.example.com/approvals/",
		event:    approval.EventRequested,
	},
	{
		// Characters that reorder or hide text, and padding that pushes
		// the end of an argument past what a message shows.
		name: "requested with hidden characters and padding",
		call: approval.Call{
			Server: "shell", Tool: "run",
			Arguments: map[string]any{"command": "ls \u202e" + strings.Repeat(" ", 12000) + "; rm -rf /"},
			Reason:    "commands need a human \u202eevil\u200b",
		},
		event: approval.EventRequested,
	},
	{
		name:  "requested anonymously, without an inbox",
		call:  approval.Call{Server: "files", Tool: "delete_file", Arguments: map[string]any{"path": "/tmp/" + hostile}},
		event: approval.EventRequested,
	},
	{
		name:     "cancelled",
		call:     approval.Call{User: hostile, Server: "tracker", Tool: "update_status", Arguments: map[string]any{"id": 7}},
		inboxURL: "https://gw.example.com/approvals/",
		event:    approval.EventCancelled,
	},
	{
		name:  "expired",
		call:  approval.Call{Server: "tracker", Tool: "create_issue", Arguments: map[string]any{}},
		event: approval.EventExpired,
	},
	{
		// Tool names are the upstream's, and nothing in MCP keeps a line
		// break out of them.
		name:  "a tool named by a hostile server",
		call:  approval.Call{Server: "tracker", Tool: "add_comment\n" + hostile, Arguments: map[string]any{}},
		event: approval.EventExpired,
	},
}

// rendered is a webhook as its receiver got it.
type rendered struct {
	header http.Header
	body   []byte
	// inboxLink is the approval's link on the inbox page (empty
	// without an inbox).
	inboxLink string
}

// renderThroughService runs an approval service, as the gateway does,
// whose one webhook is the template at path, makes the sample's call ask
// for approval, settles it as the sample says, and returns the webhook of
// the sample's event type as it arrived, its signature verified.
func renderThroughService(t *testing.T, path string, sample templateSample) rendered {
	t.Helper()
	tmpl, err := approval.LoadTemplate(path)
	if err != nil {
		t.Fatalf("loading %s: %v", path, err)
	}
	arrived := make(chan rendered, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		arrived <- rendered{header: r.Header.Clone(), body: body}
	}))
	t.Cleanup(srv.Close)
	settings := approvaltest.Settings(t)
	settings.Webhooks = []approval.Webhook{{URL: srv.URL, Template: tmpl}}
	settings.CallbackURL = "https://gw.example.com/approvals"
	settings.InboxURL = sample.inboxURL
	if sample.event == approval.EventExpired {
		settings.Timeout = 100 * time.Millisecond
	}
	s := approvaltest.NewService(t, settings)

	ctx := context.Background()
	call := sample.call
	a, err := s.Request(ctx, &call)
	if err != nil {
		t.Fatalf("requesting approval: %v", err)
	}
	switch sample.event {
	case approval.EventCancelled:
		if _, err := s.Cancel(ctx, a.ID, "the client cancelled the call: "+hostile); err != nil {
			t.Fatalf("cancelling: %v", err)
		}
	case approval.EventExpired:
		time.Sleep(time.Until(a.ExpiresAt))
		if _, err := s.Expire(ctx, a.ID); err != nil && !errors.Is(err, approval.ErrConflict) {
			t.Fatalf("expiring: %v", err)
		}
	}
	wantID := "msg_" + a.ID + "_" + strings.TrimPrefix(sample.event, "approval.")
	deadline := time.After(10 * time.Second)
	for {
		select {
		case got := <-arrived:
			if got.header.Get(approval.HeaderID) != wantID {
				continue
			}
			if _, err := approvaltest.MustSecret(t, approvaltest.WebhookSecret).Verify(got.header, got.body, time.Now()); err != nil {
				t.Errorf("the %s webhook's signature: %v, want it verified over the body received", sample.event, err)
			}
			if ct := got.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			got.inboxLink = s.InboxLink(a.ID)
			return got
		case <-deadline:
			t.Fatalf("no %s webhook (%s) arrived", sample.event, wantID)
		}
	}
}

// slackMessage is the part of a Slack message the tests read.
type slackMessage struct {
	Text   string `json:"text"`
	Blocks []struct {
		Type string     `json:"type"`
		Text *slackText `json:"text"`
		// Fields are a section's; Elements a context's (texts) or an
		// actions block's (buttons, with a URL).
		Fields   []slackText `json:"fields"`
		Elements []struct {
			slackText
			URL string `json:"url"`
		} `json:"elements"`
	} `json:"blocks"`
}

// slackText is a Block Kit text object (or a button, whose text is one).
type slackText struct {
	Type string `json:"type"`
	Text any    `json:"text"`
}

// mrkdwn returns the message's mrkdwn texts.
func (m *slackMessage) mrkdwn() []string {
	var texts []string
	add := func(t slackText) {
		if s, ok := t.Text.(string); ok && t.Type == "mrkdwn" {
			texts = append(texts, s)
		}
	}
	for _, b := range m.Blocks {
		if b.Text != nil {
			add(*b.Text)
		}
		for _, f := range b.Fields {
			add(f)
		}
		for _, e := range b.Elements {
			add(e.slackText)
		}
	}
	return texts
}

// plainText returns the message's plain_text section texts (which Slack
// shows as written).
func (m *slackMessage) plainText() []string {
	var texts []string
	for _, b := range m.Blocks {
		if b.Type == "section" && b.Text != nil && b.Text.Type == "plain_text" {
			if s, ok := b.Text.Text.(string); ok {
				texts = append(texts, s)
			}
		}
	}
	return texts
}

// slackEscaped is text as a Slack mrkdwn text must carry it.
var slackEscaped = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace

// TestSlackTemplate renders webhooks/slack.json.tmpl over the samples and
// checks that Slack gets a well-formed Block Kit message, whatever the
// caller's text.
func TestSlackTemplate(t *testing.T) {
	wantBlocks := map[string][]string{
		"requested by a user, with an inbox":           {"header", "section", "section", "section", "section", "section", "section", "context", "actions"},
		"requested anonymously, without an inbox":      {"header", "section", "section", "section", "section", "context"},
		"requested with hidden characters and padding": {"header", "section", "section", "section", "section", "section", "section", "context"},
		"cancelled":                        {"section", "context"},
		"expired":                          {"section", "context"},
		"a tool named by a hostile server": {"section", "context"},
	}
	for _, sample := range templateSamples {
		t.Run(sample.name, func(t *testing.T) {
			t.Parallel()
			got := renderThroughService(t, "webhooks/slack.json.tmpl", sample)
			var m slackMessage
			if err := json.Unmarshal(got.body, &m); err != nil {
				t.Fatalf("the Slack message is not valid JSON (%v):\n%s", err, got.body)
			}
			var types []string
			for _, b := range m.Blocks {
				types = append(types, b.Type)
			}
			if !slices.Equal(types, wantBlocks[sample.name]) {
				t.Errorf("block types = %q, want %q", types, wantBlocks[sample.name])
			}
			if !strings.Contains(m.Text, slackEscaped(display.Line(sample.call.Tool))) || strings.ContainsAny(m.Text, "\r\n") {
				t.Errorf("notification text %q does not name the tool %s on one line", m.Text, sample.call.Tool)
			}
			var buttons []string
			for _, b := range m.Blocks {
				if b.Type == "actions" {
					for _, e := range b.Elements {
						buttons = append(buttons, e.URL)
					}
				}
			}
			if want := nonEmpty(got.inboxLink); sample.event != approval.EventRequested {
				if len(buttons) != 0 {
					t.Errorf("a %s message has buttons %q, want none", sample.event, buttons)
				}
			} else if !slices.Equal(buttons, want) {
				t.Errorf("button URLs = %q, want the inbox link %q", buttons, want)
			}

			texts := strings.Join(m.mrkdwn(), "\n")
			for _, text := range m.mrkdwn() {
				// What the call holds never starts a line of the
				// message's own (the hostile text's second line).
				for line := range strings.Lines(text) {
					if strings.HasPrefix(line, "&lt;script") {
						t.Errorf("a line of a mrkdwn text comes from what the call holds: %q", text)
					}
				}
				// Slack reads <...> as a mention or a link: only the
				// template's own date token may be one.
				for rest := text; strings.Contains(rest, "<"); {
					rest = rest[strings.Index(rest, "<")+1:]
					if !strings.HasPrefix(rest, "!date^") {
						t.Errorf("a mrkdwn text holds a raw <, from the caller's text: %q", text)
						break
					}
				}
			}
			caller := "an anonymous caller"
			if sample.call.User != "" {
				caller = slackEscaped(display.Line(sample.call.User))
			}
			if !strings.Contains(texts, caller) {
				t.Errorf("the message does not name the caller %q:\n%s", caller, texts)
			}
			if sample.event != approval.EventRequested {
				return
			}
			for _, want := range []string{slackEscaped(sample.call.Server), "*Arguments*", "*Decide by*\n<!date^"} {
				if !strings.Contains(texts, want) {
					t.Errorf("the message lacks %q:\n%s", want, texts)
				}
			}
			// What the caller wrote freely is plain text, shown as written:
			// no mrkdwn formats, links or mentions it.
			plain := strings.Join(m.plainText(), "\n")
			if sample.call.Reason != "" && !strings.Contains(plain, display.Block(sample.call.Reason)) {
				t.Errorf("the reason is not shown as written (hidden characters made visible), in plain text:\n%s", plain)
			}
			// Nothing reorders or hides what the reviewer reads, and
			// what is left out says so.
			if strings.ContainsAny(plain, "\u202e\u200b") {
				t.Errorf("the plain text holds a bidirectional override or a zero-width space as such:\n%q", plain)
			}
			if strings.Contains(fmt.Sprint(sample.call.Arguments), "rm -rf") && !strings.Contains(plain, "rm -rf") && !strings.Contains(plain, "more bytes not shown") {
				t.Errorf("the arguments were cut without saying so:\n%s", plain)
			}
			if title, ok := sample.call.Arguments["title"].(string); ok && !strings.Contains(plain, jsonText(t, title)) {
				t.Errorf("the arguments block does not show the title as JSON, in plain text:\n%s", plain)
			}
			who := "any reviewer"
			if len(sample.call.Approvers) > 0 {
				who = strings.Join(sample.call.Approvers, ", ")
			}
			if !strings.Contains(texts, "*Who may approve*\n"+who) {
				t.Errorf("the message does not say who may approve (%s):\n%s", who, texts)
			}
		})
	}
}

// jsonText is v as JSON for people to read, as the arguments are shown:
// HTML characters as they are.
func jsonText(t *testing.T, v any) string {
	t.Helper()
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// nonEmpty returns the one-element list of s, or none if s is empty.
func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

// ticket is what webhooks/ticket.json.tmpl renders.
type ticket struct {
	Subject string   `json:"subject"`
	Body    string   `json:"body"`
	Labels  []string `json:"labels"`
	Links   []struct {
		Title string `json:"title"`
		URL   string `json:"url"`
	} `json:"links"`
}

// TestTicketTemplate renders webhooks/ticket.json.tmpl over the samples
// and checks the ticket: its subject names the tool and server, its body
// holds the caller's text as plain text, and it links to the inbox.
func TestTicketTemplate(t *testing.T) {
	for _, sample := range templateSamples {
		t.Run(sample.name, func(t *testing.T) {
			t.Parallel()
			got := renderThroughService(t, "webhooks/ticket.json.tmpl", sample)
			dec := json.NewDecoder(strings.NewReader(string(got.body)))
			dec.DisallowUnknownFields()
			var tk ticket
			if err := dec.Decode(&tk); err != nil {
				t.Fatalf("the ticket is not the expected JSON (%v):\n%s", err, got.body)
			}
			state := strings.TrimPrefix(sample.event, "approval.")
			if !strings.Contains(tk.Subject, strconv.Quote(sample.call.Tool)) || !strings.Contains(tk.Subject, strconv.Quote(sample.call.Server)) || !strings.Contains(strings.ToLower(tk.Subject), state) {
				t.Errorf("subject %q, want it to name %s, %s and %s", tk.Subject, state, sample.call.Tool, sample.call.Server)
			}
			wantLabels := []string{"mcpgate", sample.event, "server:" + sample.call.Server, "tool:" + sample.call.Tool}
			if !slices.Equal(tk.Labels, wantLabels) {
				t.Errorf("labels = %q, want %q", tk.Labels, wantLabels)
			}
			var links []string
			for _, l := range tk.Links {
				links = append(links, l.URL)
			}
			if want := nonEmpty(got.inboxLink); !slices.Equal(links, want) {
				t.Errorf("links = %q, want the inbox link %q", links, want)
			}
			caller := "an anonymous caller"
			if sample.call.User != "" {
				caller = sample.call.User
			}
			// Quoted, as everything the call holds, hidden characters
			// shown.
			wantBody := []string{strconv.Quote(display.Block(caller)), strconv.Quote(display.Block(sample.call.Tool))}
			if sample.event == approval.EventRequested {
				// What the caller wrote, quoted: its line breaks shown as \n.
				if sample.call.Reason != "" {
					wantBody = append(wantBody, strconv.Quote(display.Block(sample.call.Reason)))
				}
				if got.inboxLink == "" {
					wantBody = append(wantBody, "signed POST to https://gw.example.com/approvals/apr_")
				} else {
					wantBody = append(wantBody, "Review it in the inbox: "+got.inboxLink)
				}
				if title, ok := sample.call.Arguments["title"].(string); ok {
					wantBody = append(wantBody, jsonText(t, title))
				}
			}
			for _, want := range wantBody {
				if !strings.Contains(tk.Body, want) {
					t.Errorf("the body lacks %q:\n%s", want, tk.Body)
				}
			}
			// Nothing reorders or hides what the reviewer reads, and
			// what is left out says so.
			if strings.ContainsAny(tk.Body, "\u202e\u200b") {
				t.Errorf("the body holds a bidirectional override or a zero-width space as such:\n%q", tk.Body)
			}
			if strings.Contains(fmt.Sprint(sample.call.Arguments), "rm -rf") && !strings.Contains(tk.Body, "rm -rf") && !strings.Contains(tk.Body, "more bytes not shown") {
				t.Errorf("the arguments were cut without saying so:\n%s", tk.Body)
			}
			// The hostile text's second line never starts a line of the
			// ticket's (it is quoted wherever it is), nor is the subject
			// more than one line.
			for line := range strings.Lines(tk.Body) {
				if strings.HasPrefix(line, "<script>") {
					t.Errorf("a line of the body comes from what the call holds: %q\n%s", line, tk.Body)
				}
			}
			if strings.ContainsAny(tk.Subject, "\r\n") {
				t.Errorf("the subject %q is more than one line", tk.Subject)
			}
		})
	}
}
