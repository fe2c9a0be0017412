package gateway

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/go-json-experiment/json/jsontext"
	"go.uber.org/zap"

	"github.com/mcpgate/mcpgate/caddymodule/approval"
	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
	"github.com/mcpgate/mcpgate/caddymodule/policy"
	"github.com/mcpgate/mcpgate/caddymodule/sessiontoken"
)

// This file binds the answers of a multi-round-trip request (2026-07-28,
// basic/patterns/mrtr) to what was asked. A result that asks for input
// carries inputRequests (keys to requests) and an opaque requestState; the
// client retries its request with inputResponses (keys to answers) and the
// requestState. The gateway seals the requestState it relays with the keys
// it allowed, the request they belong to (method and name) and the caller
// (the sessiontoken sealer, so no gateway needs to remember anything), and
// on the retry opens it: answers to keys it did not relay, a requestState
// it did not issue, answers without one, or answers given for another
// request are refused. The upstream gets back its own requestState.

// requestState is what a sealed requestState holds.
type requestState struct {
	// Keys are the input requests the gateway relayed, sorted.
	Keys []string `json:"k"`
	// Method and Name are the request's (Name as stateName bounds it); a
	// retry must be of the same. (A result whose request the gateway
	// cannot name is not sealed: see relay.checkInputRequests.)
	Method string `json:"m,omitempty"`
	Name   string `json:"n,omitempty"`
	// Params is the digest of the request's params (see paramsDigest):
	// the answers go with the request asked about, not with another call
	// of the same tool (other arguments). Empty in the gateway's own
	// question to the caller, whose Binding names the exact call.
	Params string `json:"p,omitempty"`
	// Original is the upstream's own requestState, as JSON; nil when the
	// result had none.
	Original json.RawMessage `json:"s,omitempty"`
	// Issued is when it was sealed (Unix seconds).
	Issued int64 `json:"t"`
	// Binding, when set, makes this the gateway's own question to the
	// caller (confirm.go): the binding of the call asked about
	// (approval.Call.Binding), and a nonce that lets the answer run the
	// call once.
	Binding string `json:"b,omitempty"`
	Nonce   string `json:"x,omitempty"`
	// ToolHash is the definition of the tool asked about: the answer runs
	// no other.
	ToolHash string `json:"h,omitempty"`
	// Policy is the revision of the policy that let the upstream's input
	// requests through (policy.Engine.Revision): answers retried under
	// another are refused, since the policy in force may block what they
	// answer. (The gateway's own question, whose answer is decided again
	// under the policy in force, has none.)
	Policy string `json:"r,omitempty"`
	// Approved is, of a call that ran once approved (by reviewers, or
	// its caller) and whose server then asked for input, what was
	// approved (approvedScope): its retry with the answers is the same
	// call, not asked about again when the policy asks for the same
	// approval of the same tool (coveredByEarlierApproval), once: its
	// Nonce is claimed as a confirmation's is, and the state is sealed
	// where the claims are shared, as a confirmation's.
	Approved string `json:"a,omitempty"`
}

// claimed reports whether the state's use is claimed (its Nonce): the
// gateway's own question to the caller, or a call that ran approved. Such
// a state opens only where the claims are (requestStateScope).
func (s requestState) claimed() bool {
	return s.Binding != "" || s.Approved != ""
}

// approvedNonce is the nonce of a state sealed for a call that ran
// approved (see requestState.Approved); "" for a call that needed no
// approval.
func approvedNonce(asked *policy.Decision) string {
	if asked == nil {
		return ""
	}
	return newNonce()
}

// earlierApproval is what a retry's requestState says of the approval its
// call ran on (see coveredByEarlierApproval).
type earlierApproval struct {
	scope, nonce string
	// claimed is set once its nonce is claimed, to be given back if the
	// retry is not forwarded.
	claimed bool
}

// approvedScope names an approval a call ran on: the decision that asked
// for it (its reason and approvers) and the tool's definition; "" for a
// call that needed none.
func approvedScope(asked *policy.Decision, toolHash string) string {
	if asked == nil {
		return ""
	}
	h := sha256.New()
	for _, part := range append([]string{asked.Reason, toolHash}, slices.Sorted(slices.Values(asked.Approvers))...) {
		fmt.Fprintf(h, "%d:%s", len(part), part)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// coveredByEarlierApproval is the verdict on a call retried with the
// answers its server asked for after the call ran once approved: allowed
// as approved, when the policy asks now for the same approval of the same
// tool (the requestState, sealed for the caller and bound to the call's
// arguments and the policy's revision, says it was given); as it is
// otherwise. Without it, a retry would be held, or its caller asked,
// again, and the answers never reach the server.
//
// The approval covers one retry: its nonce is claimed (a replay is asked
// about again); the retry's own state, if its server asks again, carries
// the approval on under a nonce of its own.
func (x *exchange) coveredByEarlierApproval(v verdict) verdict {
	earlier, ok := x.approvedBefore[v.message]
	if !ok || v.decision.Action != policy.ActionNeedsApproval || earlier.scope != approvedScope(&v.decision, v.toolHash) {
		return v
	}
	if err := x.claimAnswer(earlier.nonce); err != nil {
		if !errors.Is(err, approval.ErrReplayed) {
			x.g.logger.Error("could not record the use of an approval a call ran on; its retry is asked about again",
				zap.String("request_id", x.g.host.RequestID(x.r)), zap.Error(err))
		}
		return v
	}
	earlier.claimed = true
	x.approvedBefore[v.message] = earlier
	asked := v.decision
	v.decision = policy.Decision{Action: policy.ActionAllow, Reason: "approved before its server asked for input", Revision: v.decision.Revision}
	// A further round of questions is of the same approved call: its
	// state carries the approval on, with a nonce of its own, claimed
	// once in turn (only a forwarded retry mints one).
	v.approvedFor = &asked
	return v
}

// requestStateTTL is how long a sealed requestState is good for: an
// elicitation waits on a person.
const requestStateTTL = pendingTTL

// maxClockSkew is how far ahead of this gateway's clock a requestState
// may say it was issued: sealed by a replica whose clock runs ahead, or
// before this one's stepped back. One from further ahead is refused.
const maxClockSkew = 5 * time.Minute

// claimLifetime is how long a used confirmation is remembered (see
// claimAnswer), from its use: as long as its requestState is accepted,
// and an hour more, for the gateways whose clocks lag the one that
// sealed it (each accepts the state for requestStateTTL by its own
// clock, and so, after its use, for as long as it lags) and for a clock
// stepped back. Replicas' clocks must agree within that hour (see
// docs/approvals.md): the gateway cannot tell how far they disagree.
const claimLifetime = requestStateTTL + time.Hour

// requestStateScope keeps sealed requestStates apart from session ids.
// The state of a caller's confirmation (confirms) opens only where the
// confirmations are claimed in the same place (claimScope), so that no
// handler, replica or restarted process that would not know the
// confirmation ran already runs its call again; an upstream's own state
// opens in any of the upstream's handlers and replicas of the same
// server name, as the upstream expects of its stateless retries (under
// another server name, another policy decided what it asks).
func (x *exchange) requestStateScope(confirms bool) string {
	if confirms {
		return x.g.cfg.Upstream + "\x00requestState\x00confirmation\x00" + x.g.cfg.Server + "\x00" + x.claimScope()
	}
	return x.g.cfg.Upstream + "\x00requestState\x00" + x.g.cfg.Server
}

// sealRequestState seals state for the exchange's caller.
func (x *exchange) sealRequestState(state requestState) string {
	state.Issued = time.Now().Unix()
	payload, _ := json.Marshal(state)
	return x.g.cfg.Sealer.Seal(x.requestStateScope(state.claimed()), sessiontoken.Session{
		Kind: sessiontoken.RequestState, Caller: x.session.sealedCaller(), ID: string(payload),
	})
}

// requestName is what a request names: the tool or prompt, or the
// resource's URI.
func requestName(m *mcpmsg.Message) string {
	key := "name"
	if m.Method == "resources/read" {
		key = "uri"
	}
	name, _ := m.Params[key].(string)
	return name
}

// retryParams are the params a retried request adds or may change: the
// answers and the state it carries, and _meta (a progress token of its
// own, its revision and capabilities).
var retryParams = []string{"requestState", "inputResponses", "_meta"}

// paramsDigest is a SHA-256 of a request's params but retryParams, as
// canonical JSON with numbers as written (what the approvals bind).
func paramsDigest(params map[string]any) (string, error) {
	kept := make(map[string]any, len(params))
	for name, value := range params {
		if !slices.Contains(retryParams, name) {
			kept[name] = value
		}
	}
	canonical, err := approval.CanonicalArguments(kept)
	if err != nil {
		return "", fmt.Errorf("reading the request's params: %w", err)
	}
	sum := sha256.Sum256(canonical)
	return hex.EncodeToString(sum[:]), nil
}

// errUnboundAnswers is why a retried request's answers are refused.
var errUnboundAnswers = errors.New("inputResponses answer only input requests the gateway relayed for this request")

// errUnnamedInputRequests replaces a result asking for input that answers
// a request the gateway cannot name.
const errUnnamedInputRequests = "the gateway cannot tell which request this result answers (it came on a GET stream, " +
	"replayed on a resumed one, or for an id a request forgotten before its answer had), so its input requests are not relayed: make the request again"

// checkInputResponses holds every retried request of the body to what was
// asked, and gives the upstream back its own requestState (re-encoding the
// message).
func (x *exchange) checkInputResponses() error {
	for i := range x.body.Messages {
		m := &x.body.Messages[i]
		if m.Kind != mcpmsg.KindRequest || !slices.Contains(multiRoundTripMethods, m.Method) {
			continue
		}
		sealed, hasState := m.Params["requestState"]
		responses, hasResponses := m.Params["inputResponses"]
		if !hasState && !hasResponses {
			continue
		}
		if !hasState {
			return refuse(http.StatusForbidden, mcpmsg.CodeInvalidParams, errUnboundAnswers.Error()+": the request carries no requestState")
		}
		state, err := x.openRequestState(sealed)
		if err != nil {
			return refuse(http.StatusForbidden, mcpmsg.CodeInvalidParams, err.Error())
		}
		if state.Method != m.Method || state.Name != stateName(requestName(m)) {
			return refuse(http.StatusForbidden, mcpmsg.CodeInvalidParams,
				fmt.Sprintf("%s: the requestState was given for %s %q", errUnboundAnswers, state.Method, state.Name))
		}
		if state.Params != "" {
			if digest, err := paramsDigest(m.Params); err != nil || digest != state.Params {
				return refuse(http.StatusForbidden, mcpmsg.CodeInvalidParams,
					errUnboundAnswers.Error()+": the requestState was given for the same request with other params (its arguments)")
			}
		}
		if hasResponses && state.Binding == "" && (state.Policy == "" || state.Policy != x.g.cfg.Engine.Revision()) {
			return refuse(http.StatusConflict, mcpmsg.CodeInvalidParams,
				"the gateway's policy changed since the server's input requests were let through, and may block what these answers answer: make the request anew")
		}
		if hasResponses {
			answers, ok := responses.(map[string]any)
			if !ok {
				return refuse(http.StatusBadRequest, mcpmsg.CodeInvalidParams, "inputResponses is not an object")
			}
			for _, key := range slices.Sorted(maps.Keys(answers)) {
				if !slices.Contains(state.Keys, key) {
					return refuse(http.StatusForbidden, mcpmsg.CodeInvalidParams, fmt.Sprintf("%s: no input request %q was relayed", errUnboundAnswers, key))
				}
				// Read as servers read it (see CheckInputResponse).
				if err := mcpmsg.CheckInputResponse(key, answers[key]); err != nil {
					return refuse(http.StatusBadRequest, err.Code, err.Message)
				}
			}
		}
		if state.Binding != "" {
			if err := x.takeCallerAnswer(m, state, responses); err != nil {
				return err
			}
			continue
		}
		if state.Approved != "" && hasResponses {
			// (Only a retry with the answers is the call approved: one
			// without asks the server nothing new.)
			if x.approvedBefore == nil {
				x.approvedBefore = make(map[*mcpmsg.Message]earlierApproval)
			}
			x.approvedBefore[m] = earlierApproval{scope: state.Approved, nonce: state.Nonce}
		}
		if err := x.restoreRequestState(m, state.Original); err != nil {
			return refuse(http.StatusBadRequest, mcpmsg.CodeInvalidParams, err.Error())
		}
	}
	return nil
}

// takeCallerAnswer takes the caller's answer to the gateway's own question
// from a retried call, which must be the very call asked about, and
// removes the question's traces: the upstream sees the call as it was
// first made.
func (x *exchange) takeCallerAnswer(m *mcpmsg.Message, state requestState, responses any) error {
	if m.Tool == nil {
		return refuse(http.StatusForbidden, mcpmsg.CodeInvalidParams, errUnboundAnswers.Error())
	}
	v := verdict{message: m, input: &policy.Input{Server: x.g.cfg.Server}}
	binding, err := x.callerBinding(v)
	if err != nil || binding != state.Binding {
		return refuse(http.StatusForbidden, mcpmsg.CodeInvalidParams,
			errUnboundAnswers.Error()+": the confirmation was given for another call (other arguments, or another caller)")
	}
	answers, _ := responses.(map[string]any)
	answer, _ := answers[callerApproval].(map[string]any)
	action, _ := answer["action"].(string)
	if action != "accept" && action != "decline" {
		action = "cancel"
	}
	if action == "accept" {
		if err := x.claimAnswer(state.Nonce); errors.Is(err, approval.ErrReplayed) {
			return refuse(http.StatusConflict, mcpmsg.CodeInvalidParams, "this confirmation ran its call already; make the call anew to be asked again")
		} else if err != nil {
			x.g.logger.Error("could not record a caller's confirmation; call refused",
				zap.String("request_id", x.g.host.RequestID(x.r)), zap.Error(err))
			return refuse(http.StatusServiceUnavailable, mcpmsg.CodeInvalidParams,
				"the gateway could not record this confirmation (its log says why), so the call did not run; retry it with the same confirmation")
		}
	}
	if x.callerAnswers == nil {
		x.callerAnswers = make(map[*mcpmsg.Message]callerAnswer)
	}
	taken := callerAnswer{action: action, toolHash: state.ToolHash}
	if action == "accept" {
		taken.nonce = state.Nonce
	}
	x.callerAnswers[m] = taken
	return x.rewriteParams(m, func(params map[string]any) error {
		delete(params, "inputResponses")
		delete(params, "requestState")
		return nil
	})
}

// openRequestState opens a requestState the gateway sealed for the
// exchange's caller, and checks its age.
func (x *exchange) openRequestState(value any) (requestState, error) {
	token, ok := value.(string)
	if !ok {
		return requestState{}, errors.New("requestState is not a string")
	}
	confirms := false
	s, err := x.g.cfg.Sealer.Open(x.requestStateScope(false), token)
	if err != nil {
		confirms = true
		s, err = x.g.cfg.Sealer.Open(x.requestStateScope(true), token)
	}
	if err != nil || s.Kind != sessiontoken.RequestState {
		return requestState{}, errors.New("requestState was not issued by this gateway (a caller's confirmation is answered where it was asked, " +
			"or on a gateway that shares its approval store; not after a restart without one): make the request anew")
	}
	if s.Caller != x.session.sealedCaller() {
		return requestState{}, errors.New("requestState was issued to another user")
	}
	var state requestState
	if err := json.Unmarshal([]byte(s.ID), &state); err != nil || state.claimed() != confirms {
		return requestState{}, errors.New("requestState was not issued by this gateway")
	}
	switch age := time.Since(time.Unix(state.Issued, 0)); {
	case age > requestStateTTL:
		return requestState{}, fmt.Errorf("requestState expired %s ago; make the request anew", (age - requestStateTTL).Round(time.Second))
	case age < -maxClockSkew:
		return requestState{}, fmt.Errorf("requestState was issued %s ahead of this gateway's clock (the clocks of the gateways sharing its key disagree): make the request anew", (-age).Round(time.Second))
	}
	return state, nil
}

// restoreRequestState puts the upstream's own requestState back into a
// retried request (or takes it out, when it had none) and re-encodes the
// message, which the upstream then reads as the policy saw it.
func (x *exchange) restoreRequestState(m *mcpmsg.Message, original json.RawMessage) error {
	return x.rewriteParams(m, func(params map[string]any) error {
		delete(params, "requestState")
		if original == nil {
			return nil
		}
		var value any
		if err := decodeNumbers(original, &value); err != nil {
			return fmt.Errorf("restoring requestState: %w", err)
		}
		params["requestState"] = value
		return nil
	})
}

// rewriteParams re-encodes a request of the body with edit applied to a
// copy of its params, for a stage that takes out what is the gateway's own
// (an approval token, a sealed requestState, a caller's answer) or offers
// the server a revision the gateway knows (offerKnownRevision): the
// message's params and bytes become the copy's, and a single message's
// bytes the body forwarded (exchange.rewritten).
func (x *exchange) rewriteParams(m *mcpmsg.Message, edit func(params map[string]any) error) error {
	params := make(map[string]any, len(m.Params))
	maps.Copy(params, m.Params)
	if err := edit(params); err != nil {
		return err
	}
	raw, err := encodeMessage(m.ID, m.Method, params)
	if err != nil {
		return err
	}
	x.replaceMessage(m, params, raw)
	return nil
}

// replaceMessage makes params and raw the message's, and a single
// message's raw the body forwarded (exchange.rewritten).
func (x *exchange) replaceMessage(m *mcpmsg.Message, params map[string]any, raw []byte) {
	m.Params, m.Raw = params, raw
	x.rewritten = true
	if !x.body.Batch {
		x.raw = raw
	}
}

// encodeMessage writes a request of the client's anew: numbers as they
// came (json.Number), no HTML escaping.
func encodeMessage(id []byte, method string, params map[string]any) ([]byte, error) {
	var out bytes.Buffer
	encoder := json.NewEncoder(&out)
	encoder.SetEscapeHTML(false)
	if err := encoder.Encode(map[string]any{"jsonrpc": "2.0", "id": json.RawMessage(id), "method": method, "params": params}); err != nil {
		return nil, fmt.Errorf("encoding the request: %w", err)
	}
	return bytes.TrimSuffix(out.Bytes(), []byte("\n")), nil
}

// replaceMember returns object with the named member's value replaced by
// value (added when it has none), every other member as it was.
func replaceMember(object []byte, name string, value []byte) ([]byte, error) {
	decoder := jsontext.NewDecoder(bytes.NewReader(object))
	var out bytes.Buffer
	encoder := jsontext.NewEncoder(&out)
	if token, err := decoder.ReadToken(); err != nil || token.Kind() != '{' {
		return nil, errors.New("result is not an object")
	}
	if err := encoder.WriteToken(jsontext.BeginObject); err != nil {
		return nil, err
	}
	for decoder.PeekKind() == '"' {
		token, err := decoder.ReadToken()
		if err != nil {
			return nil, err
		}
		key := token.String()
		member, err := decoder.ReadValue()
		if err != nil {
			return nil, err
		}
		if key == name {
			continue
		}
		if err := encoder.WriteToken(jsontext.String(key)); err != nil {
			return nil, err
		}
		if err := encoder.WriteValue(member); err != nil {
			return nil, err
		}
	}
	if err := encoder.WriteToken(jsontext.String(name)); err != nil {
		return nil, err
	}
	if err := encoder.WriteValue(value); err != nil {
		return nil, err
	}
	if err := encoder.WriteToken(jsontext.EndObject); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(out.Bytes(), []byte("\n")), nil
}
