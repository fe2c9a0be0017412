package gateway

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
	"github.com/mcpgate/mcpgate/caddymodule/policy"
	"github.com/mcpgate/mcpgate/caddymodule/replyfilter"
)

// exchange is one request on its way through the gateway: what the stages
// learn of it, in the order they learn it.
type exchange struct {
	g    *Gateway
	w    http.ResponseWriter
	r    *http.Request
	next Next
	// started is when the request reached the gateway.
	started time.Time

	// caller is who is calling (admit); nil without an identity.
	caller *policy.User
	// client is what the client declared of itself, when clientKnown:
	// from the session (findSession), or from the message (parse).
	client      capabilities
	clientKnown bool
	// relay relays the server's messages of the reply or stream, once
	// made (newRelay).
	relay *relay
	// sessionClient is what the session's client declared when it opened
	// it, which its sealed id carries: the capabilities in the token the
	// request came with, or those of an initialize.
	sessionClient capabilities
	// raw is the POST's body as received (read), or, of a single message
	// a stage re-encoded (rewritten), its re-encoding; body its messages
	// (parse).
	raw  []byte
	body *mcpmsg.Body
	// rewritten is set when a stage re-encoded a message (to take out
	// what is the gateway's): the body goes on as its messages, not as
	// received.
	rewritten bool
	// unoffered are the tools/calls of tools the gateway does not offer
	// under the name called (renameCalls): a renamed tool's old name.
	// calledAs are, of the calls renameCalls renamed, the names their
	// client called the tools by (see verdict.calledAs).
	unoffered map[*mcpmsg.Message]bool
	calledAs  map[*mcpmsg.Message]string
	// version is the MCP revision the messages were sent under (parse).
	version string
	// session is the MCP session the request belongs to, and legacy is
	// set when the POST is a message of an HTTP+SSE session (findSession);
	// nil on Streamable HTTP.
	session sessionKey
	legacy  *legacyPost
	// verdicts are the policy's decisions, one per message (decide).
	verdicts []verdict
	// unrecorded is the upstream's list fetched for this request by a
	// gateway that does not own the catalog's (see toolUnrecorded).
	unrecorded struct {
		fetched bool
		raws    []json.RawMessage
		err     error
	}
	// lastList is the tools list a JSON reply filtered last (see
	// hideBlockedTools).
	lastList lastFilteredList
	// sessionEnded is set when the upstream, asked for its tools in the
	// client's session, no longer knew the session (decide).
	sessionEnded bool
	// callerAnswers are the answers retried calls bring to the gateway's
	// own question, whether the caller confirms them (checkTransport).
	callerAnswers map[*mcpmsg.Message]callerAnswer
	// approvedBefore holds, of the calls retried with the answers their
	// server asked for after they ran once approved, what was approved
	// (see coveredByEarlierApproval).
	approvedBefore map[*mcpmsg.Message]earlierApproval
	// approvalTokens are what the approval tokens of the body's calls
	// say (pending.go).
	approvalTokens map[*mcpmsg.Message]approvalToken
	// idsClaimed is set while the ids of the requests the POST carries are
	// held as in flight in the session (claimIDs).
	idsClaimed bool
	// cancelled is closed when the client cancels the POST's one tool
	// call (notifications/cancelled naming its id, in its session), from
	// the moment the call is decided until the exchange ends; nil when
	// the POST is no such call (watchCancel).
	cancelled        <-chan struct{}
	stopWatchCancels func()
	// passed is set once the body went on to the next handler (pass).
	passed bool
}

// Serve runs one request through the gateway: next sees only what the
// policy allowed.
func (g *Gateway) Serve(w http.ResponseWriter, r *http.Request, next Next) error {
	x := &exchange{g: g, w: w, r: r, next: next, started: time.Now()}
	defer x.endMessageSpans() // on a run that ended before the limits
	defer x.stopWatchingCancel()
	defer x.unclaimAnswers()
	err := x.run()
	var refused *refusal
	if errors.As(err, &refused) {
		return x.reject(refused)
	}
	return ignoreDone(err)
}

// run is the pipeline. A stage that refuses the request returns a
// *refusal, which Serve answers; a stage that answered the request itself
// ends the run with errDone.
func (x *exchange) run() error {
	if err := x.admit(); err != nil {
		return err
	}
	if err := x.findSession(); err != nil {
		return err
	}
	switch x.r.Method {
	case http.MethodPost:
	case http.MethodGet, http.MethodDelete, http.MethodHead, http.MethodOptions:
		return x.passBodyless()
	default:
		x.w.Header().Set("Allow", "GET, POST, DELETE, HEAD, OPTIONS")
		return refuse(http.StatusMethodNotAllowed, mcpmsg.CodeInvalidRequest, "method "+x.r.Method+" is not used by MCP")
	}
	if err := x.read(); err != nil {
		return err
	}
	if err := x.parse(); err != nil {
		return err
	}
	if err := x.checkTransport(); err != nil {
		return err
	}
	if err := x.decide(); err != nil {
		return err
	}
	x.limit()
	x.endMessageSpans()
	x.annotate()
	return x.route()
}

// errDone ends a run whose request a stage answered itself.
var errDone = errors.New("request answered")

// ignoreDone turns errDone into success: the request was answered.
func ignoreDone(err error) error {
	if errors.Is(err, errDone) {
		return nil
	}
	return err
}

// passBodyless passes GET, DELETE, HEAD and OPTIONS on: a GET as a
// watched stream, the others as they are, their replies isolated. None may
// carry a body.
func (x *exchange) passBodyless() error {
	r := x.r
	if r.ContentLength != 0 || len(r.TransferEncoding) > 0 {
		// Nothing in MCP sends a body with these methods, and the gateway
		// decides bodies only on POST: a body here would reach the
		// upstream unread.
		return refuse(http.StatusBadRequest, mcpmsg.CodeInvalidRequest, "a "+r.Method+" request must not carry a body")
	}
	r.Body = http.NoBody
	if _, _, err := versionHeader(r.Header); err != nil {
		// As on a POST.
		return refuse(http.StatusBadRequest, mcpmsg.CodeInvalidRequest, err.Error())
	}
	x.annotateBodyless()
	if r.Method == http.MethodGet {
		return x.stream()
	}
	// DELETE ends a session: nothing for a client-side policy to see. No
	// reply to these is an MCP message: set apart as any such reply.
	replyfilter.Isolate(x.w.Header())
	if !x.g.blocksSecrets() {
		return x.next.ServeHTTP(x.w, r)
	}
	// Under block_secrets a failure's body is screened all the same (an
	// mcp_stdio server's last line of stderr, quoted by its 404), asked
	// for uncompressed, as the gateway reads it.
	readReplyUncompressed(r)
	w, finish := replyfilter.Wrap(x.w, replyfilter.Hooks{PassSuccesses: true, ScreenFailure: x.g.screenFailure, OnError: x.logReplyError})
	err := x.next.ServeHTTP(w, r)
	return errors.Join(err, finish())
}
