package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/mcpgate/mcpgate/caddymodule/boundedset"
	"github.com/mcpgate/mcpgate/caddymodule/mcphttp"
	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
	"github.com/mcpgate/mcpgate/caddymodule/sessiontoken"
)

// This file speaks the HTTP+SSE transport of MCP 2024-11-05 (basic/
// transports, "HTTP with SSE"), which servers still offer: the client's GET
// opens an event stream whose first event, "endpoint", names the URL the
// client posts its messages to; each POST is answered 202 Accepted, and
// the responses come as "message" events on the stream. The gateway keeps
// the client on its own URLs (it rewrites the endpoint), decides every
// posted message as on Streamable HTTP, and delivers a refusal the way the
// transport delivers responses: as an event on that session's stream.

// legacyStreams are the HTTP+SSE streams open through the gateway, by
// session (their message endpoint).
type legacyStreams struct {
	mu      sync.Mutex
	streams map[sessionKey]*legacyStream
	// secrets counts, for each value of an open stream's message
	// endpoint that may name its session upstream (sessionSecrets), the
	// open streams whose endpoint has it: a request that carries one
	// without the gateway's sealed session would post into that session.
	secrets map[string]int
	// openSecrets is len(secrets), read without the lock: most gateways
	// have no HTTP+SSE stream open, and every request asks.
	openSecrets atomic.Int64
}

// minSecretLength is the shortest endpoint value taken for a session id:
// the SDKs' ids are 26 (go-sdk) to 36 (a UUID) characters long, and
// shorter values (a page number, a flag) would refuse requests that merely
// carry them.
const minSecretLength = 16

// sessionSecrets are the values of a message endpoint (as the upstream
// names it, path and query: see legacyKey) that may name its session
// upstream: its query's values, or, without a query, its path's last
// segment; those of minSecretLength bytes or more, each in the forms it is
// looked up under (secretForms).
func sessionSecrets(endpoint string) []string {
	u, err := url.Parse(endpoint)
	if err != nil {
		return nil
	}
	var secrets []string
	for _, values := range u.Query() {
		for _, v := range values {
			if len(v) >= minSecretLength {
				secrets = append(secrets, secretForms(v)...)
			}
		}
	}
	// ("=" is how legacyKey writes a query of one empty name: no value.)
	if u.RawQuery == "" || u.RawQuery == "=" {
		if last := u.Path[strings.LastIndexByte(u.Path, '/')+1:]; len(last) >= minSecretLength {
			secrets = append(secrets, secretForms(last)...)
		}
	}
	return secrets
}

// secretForms are the forms a session id is looked up under: itself, and,
// for one that reads as a UUID, its value ("uuid:" and 32 lower-case hex
// digits; see uuidValue), since servers find sessions by it (Python's SDK
// with uuid.UUID(hex=...)) however a request spells it.
func secretForms(secret string) []string {
	if value, ok, _ := uuidValue(secret); ok {
		return []string{secret, "uuid:" + value}
	}
	return []string{secret}
}

// uuidValue reads s as Python's uuid.UUID(hex=s) does, which the Python
// SDK finds HTTP+SSE sessions with: "urn:" and "uuid:" removed anywhere,
// braces trimmed, hyphens removed, then 32 characters (code points, not
// bytes) read as int(s, 16) reads them: every Unicode decimal digit as
// its value (a fullwidth "１" as 1), Unicode white space as a space
// (int() strips what unicode.IsSpace holds, no more: checked against
// Python 3.11, whose digits Go's tables give the same values),
// surrounding spaces, a "+", a "0x" prefix and underscores between digits
// allowed, in any case. It returns the value as 32 lower-case hex digits.
// unsure is set when s holds a code point that Go's Unicode tables
// (unicode.Version) do not assign, which a Python of a later Unicode
// version may read as a digit: its value cannot be told. Written here
// because no Go library reads UUIDs this leniently: the point is to know
// every spelling a server may accept.
func uuidValue(s string) (value string, ok, unsure bool) {
	s = strings.ReplaceAll(strings.ReplaceAll(s, "urn:", ""), "uuid:", "")
	s = strings.ReplaceAll(strings.Trim(s, "{}"), "-", "")
	if utf8.RuneCountInString(s) != 32 {
		return "", false, false
	}
	ascii := make([]byte, 0, 32)
	for _, r := range s {
		switch {
		case unicode.IsSpace(r):
			ascii = append(ascii, ' ')
		case r < utf8.RuneSelf:
			ascii = append(ascii, byte(r))
		case unicode.Is(unicode.Nd, r):
			ascii = append(ascii, '0'+byte(decimalDigitValue(r)))
		case !assigned(r):
			return "", false, true
		default:
			return "", false, false
		}
	}
	digits := strings.TrimPrefix(strings.Trim(string(ascii), " "), "+")
	if len(digits) > 2 && digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X') {
		digits = digits[2:]
	}
	digits = strings.TrimLeft(strings.ReplaceAll(digits, "_", ""), "0")
	if len(digits) > 32 {
		return "", false, false
	}
	for i := range len(digits) {
		if c := digits[i] | 0x20; !('0' <= digits[i] && digits[i] <= '9' || 'a' <= c && c <= 'f') {
			return "", false, false
		}
	}
	return strings.Repeat("0", 32-len(digits)) + strings.ToLower(digits), true, false
}

// decimalDigitValue is the value of r, a decimal digit (unicode.Nd):
// Unicode encodes decimal digits in runs of ten from zero, and the Nd
// table's ranges are such runs side by side, so a digit's value is its
// distance from its range's start, modulo ten.
func decimalDigitValue(r rune) int {
	for _, rg := range unicode.Nd.R16 {
		if rune(rg.Lo) <= r && r <= rune(rg.Hi) {
			return int(r-rune(rg.Lo)) % 10
		}
	}
	for _, rg := range unicode.Nd.R32 {
		if rune(rg.Lo) <= r && r <= rune(rg.Hi) {
			return int(r-rune(rg.Lo)) % 10
		}
	}
	return 0
}

// assigned reports whether Go's Unicode tables give r a category
// (unicode.C holds the unassigned code points too; its parts do not).
func assigned(r rune) bool {
	return unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.P, unicode.S, unicode.Z, unicode.Cc, unicode.Cf, unicode.Co, unicode.Cs)
}

func (ls *legacyStreams) open(session sessionKey, stream *legacyStream) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if _, known := ls.streams[session]; !known {
		for _, secret := range sessionSecrets(session.id) {
			ls.secrets[secret]++
		}
		ls.openSecrets.Store(int64(len(ls.secrets)))
	}
	ls.streams[session] = stream
}

// carriesOpenSession reports whether u, a request's URL without a session
// of the gateway's, carries a value that names the session of a stream
// open through this process upstream (in its query, under any name, or as
// a segment of its path): the upstream would take it for a post into that
// session, whatever path or parameter name it is written with.
func (ls *legacyStreams) carriesOpenSession(u *url.URL) bool {
	if ls.openSecrets.Load() == 0 {
		return false
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	carries := func(v string) bool {
		if ls.secrets[v] > 0 {
			return true
		}
		value, ok, unsure := uuidValue(v)
		return unsure || ok && ls.secrets["uuid:"+value] > 0
	}
	for _, v := range looseQueryValues(u.RawQuery) {
		if carries(v) {
			return true
		}
	}
	for _, segment := range strings.Split(u.Path, "/") {
		if carries(segment) {
			return true
		}
	}
	return false
}

// looseQueryValues are the names and values of a query as any server
// may read them: its pairs split at "&" and at ";" (which older parsers,
// Python's before 3.9.2 and Rack's before 3, take for a separator too,
// where Go's url.ParseQuery drops a pair holding one), each decoded (as
// it was sent when it does not decode); and, of one holding bytes outside
// ASCII, as a server decoding escapes to Latin-1 reads it, and as
// Starlette does (starletteUnquote).
func looseQueryValues(rawQuery string) []string {
	var values []string
	for pair := range strings.FieldsFuncSeq(rawQuery, func(c rune) bool { return c == '&' || c == ';' }) {
		name, value, _ := strings.Cut(pair, "=")
		for _, raw := range []string{name, value} {
			decoded := raw
			if d, err := url.QueryUnescape(raw); err == nil {
				decoded = d
			}
			values = append(values, decoded)
			if hasNonASCII(decoded) {
				values = append(values, latin1(decoded))
			}
			if hasNonASCII(raw) {
				values = append(values, starletteUnquote(raw))
			}
		}
	}
	return values
}

// hasNonASCII reports whether s holds a byte outside ASCII.
func hasNonASCII(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return r >= utf8.RuneSelf }) >= 0
}

// latin1 reads s byte by byte as Latin-1: each byte the code point of its
// value.
func latin1(s string) string {
	runes := make([]rune, len(s))
	for i := range len(s) {
		runes[i] = rune(s[i])
	}
	return string(runes)
}

// starletteUnquote reads raw, a name or value of a query holding bytes
// outside ASCII, as Starlette does: the query decoded as Latin-1 first,
// then each run of percent-escapes decoded as UTF-8 (invalid sequences as
// U+FFFD) and a "+" read as a space, as Python's urllib.parse.unquote_plus
// does, every other byte the Latin-1 character of its value. (A raw 0xA0
// beside an escaped "%D9%A1" is a no-break space and an Arabic-Indic one
// there, which neither reading alone gives.)
func starletteUnquote(raw string) string {
	var out strings.Builder
	var escaped []byte
	flush := func() {
		for len(escaped) > 0 {
			r, size := utf8.DecodeRune(escaped)
			out.WriteRune(r)
			escaped = escaped[size:]
		}
	}
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c == '%' && i+2 < len(raw) && isHex(raw[i+1]) && isHex(raw[i+2]) {
			b, _ := strconv.ParseUint(raw[i+1:i+3], 16, 8)
			escaped = append(escaped, byte(b))
			i += 2
			continue
		}
		flush()
		if c == '+' {
			c = ' '
		}
		out.WriteRune(rune(c))
	}
	flush()
	return out.String()
}

// isHex reports whether c is a hexadecimal digit.
func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c|0x20 && c|0x20 <= 'f'
}

// close forgets the stream, unless another has taken its session since.
func (ls *legacyStreams) close(session sessionKey, stream *legacyStream) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.streams[session] == stream {
		delete(ls.streams, session)
		for _, secret := range sessionSecrets(session.id) {
			if ls.secrets[secret]--; ls.secrets[secret] <= 0 {
				delete(ls.secrets, secret)
			}
		}
		ls.openSecrets.Store(int64(len(ls.secrets)))
	}
}

func (ls *legacyStreams) lookup(session sessionKey) *legacyStream {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.streams[session]
}

// legacyStream is one open HTTP+SSE stream. On this transport the
// responses to what is posted come on the stream, so the stream is where
// the gateway finds the replies it reads: to the client's tools/list
// requests, and to its own.
type legacyStream struct {
	// write writes a message to the stream, between the upstream's
	// events.
	write func(message []byte) error

	mu sync.Mutex
	// ended is set, and done closed, once the client's request is done:
	// nothing more may be written to its stream, nor awaited on it.
	ended bool
	done  chan struct{}
	// declared is what the client declared at initialize, when
	// clientKnown.
	declared    capabilities
	clientKnown bool
	// toolsLists are the session's tools/list requests awaiting their
	// response, by canonical id, with the catalog's Generation when each
	// was forwarded.
	toolsLists map[string]uint64
	// inFlight are the client's requests forwarded on the session
	// (tools/list's among them) whose responses the stream has not
	// carried yet, by canonical id. Every response comes on the one stream, told
	// apart by its id alone: a request may not take the id of one still
	// awaiting its answer (MCP: an id is unique in its session), or one's
	// answer could be taken for the other's (a ping's for a tools/list's,
	// whose real answer would then go unfiltered).
	inFlight map[string]answeredRequest
	// retired are the canonical ids of requests forgotten before their
	// answers came (cancelled, or past maxInFlight), at most maxInFlight
	// (forgetting the oldest, which only as many requests forwarded and
	// forgotten since can push out): a late answer to one would be taken
	// for the answer to a request that took its id again.
	retired *boundedset.Set[string]
	// seq numbers the requests recorded in inFlight, one after the other.
	seq uint64
	// awaited are the gateway's own requests awaiting their response, by
	// canonical id.
	awaited map[string]chan []byte
	// metrics, when set, count what becomes of the tool calls forwarded
	// on the session (toolCallEnded).
	metrics *upstreamMetrics
}

func newLegacyStream(write func(message []byte) error) *legacyStream {
	return &legacyStream{write: write, done: make(chan struct{}), toolsLists: make(map[string]uint64),
		inFlight: make(map[string]answeredRequest), retired: boundedset.New[string](maxInFlight), awaited: make(map[string]chan []byte)}
}

// toolCallEnded counts what became of a request forwarded on the session,
// if it is a tool call: answered (by the stream, as outcome says),
// cancelled by its client, or given up (the POST failed, the stream
// ended, or the session forgot it past its bound).
func (s *legacyStream) toolCallEnded(request answeredRequest, outcome toolOutcome) {
	if request.tool == "" {
		return
	}
	now := time.Now()
	if s.metrics != nil {
		s.metrics.toolCall(request.tool, outcome, now.Sub(request.forwarded))
	}
	request.trail.ended(request.id, request.tool, request.span, outcome, request.forwarded, now)
}

// errStreamEnded is why nothing can be written to a stream whose client
// went away.
var errStreamEnded = errors.New("the session's event stream has ended")

// inject writes a message to the stream, unless it has ended. The write
// is made outside s.mu, which every POST of the session takes: one to a
// client that reads slowly would hold them all (write, replyfilter.Inject,
// writes nothing once the stream has ended, and within a deadline).
func (s *legacyStream) inject(message []byte) error {
	s.mu.Lock()
	ended := s.ended
	s.mu.Unlock()
	if ended {
		return errStreamEnded
	}
	return s.write(message)
}

// declare records the capabilities the session's client declared.
func (s *legacyStream) declare(c capabilities) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.declared, s.clientKnown = c, true
}

// capabilities returns what the session's client declared, if known.
func (s *legacyStream) capabilities() (capabilities, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.declared, s.clientKnown
}

// end marks the stream ended: its client's request is done.
func (s *legacyStream) end() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ended {
		// The client went away: it gave up on the calls it awaited.
		s.endCalls(toolCancelled)
		s.ended = true
		close(s.done)
	}
}

// endCalls counts and records, as outcome, the tool calls awaiting their
// answers that are not counted yet (one the client cancelled was, as it
// cancelled it), and marks them counted. The caller holds s.mu.
func (s *legacyStream) endCalls(outcome toolOutcome) {
	for _, id := range slices.Sorted(maps.Keys(s.inFlight)) {
		request := s.inFlight[id]
		if request.cancelled || request.tool == "" {
			continue
		}
		s.toolCallEnded(request, outcome)
		request.tool = ""
		s.inFlight[id] = request
	}
}

// errTooManyToolsLists refuses a tools/list when the session has as many
// awaiting their answers as it may: the answer to one the gateway could
// not remember would be filtered as a stray, but not recorded.
var errTooManyToolsLists = fmt.Errorf("this session has %d tools/list requests awaiting their answers; wait for them before asking again", maxPendingPerSession)

// maxInFlight bounds the ids a session's stream remembers in inFlight.
// Past it, the id of a request other than a tools/list is forgotten
// (requests the server never answers, such as a POST it refused, would
// otherwise fill it): a list whose request took a forgotten id is still
// filtered, since a result that reads as a tools list always is (see
// stream).
const maxInFlight = 1024

// expectAnswers records the allowed requests a POST forwards, whose
// responses the stream will carry, its tools/list requests among them
// with the catalog's generation asOf; or
// refuses them all, recording nothing: a request with the id of one still
// awaiting its answer, and a tools/list past the session's bound
// (errTooManyToolsLists). A cancellation it forwards ends the wait for its
// request's answer, which the server need not send; but not a tools/list's,
// whose answer, if it comes after all, must not be taken for another
// request's. The tool calls' ends go to trail (nil: none).
func (s *legacyStream) expectAnswers(verdicts []verdict, asOf uint64, trail *callTrail) (recorded map[string]uint64, err error) {
	_, lists := toolsListRequests(verdicts)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return nil, errStreamEnded
	}
	for _, v := range verdicts {
		if v.message.Kind != mcpmsg.KindRequest || !v.allowed() {
			continue
		}
		if _, awaited := s.inFlight[mcpmsg.CanonicalID(v.message.ID)]; awaited {
			return nil, errIDInFlight(string(v.message.ID))
		}
	}
	if len(s.toolsLists)+len(lists) > maxPendingPerSession {
		return nil, errTooManyToolsLists
	}
	for id := range lists {
		s.toolsLists[id] = asOf
	}
	now := time.Now()
	for _, v := range verdicts {
		switch m := v.message; {
		case !v.allowed():
		case m.Kind == mcpmsg.KindRequest:
			for id := range s.inFlight {
				if len(s.inFlight) < maxInFlight {
					break
				}
				if _, listed := s.toolsLists[id]; !listed {
					s.toolCallEnded(s.inFlight[id], toolFailed)
					delete(s.inFlight, id)
					s.retired.Add(id)
				}
			}
			key, request := mcpmsg.CanonicalID(m.ID), v.answered().kept()
			if s.retired.Contains(key) {
				// A late answer to the forgotten request would read as
				// this one's: what it asks for is bound to no request
				// (relay.checkInputRequests refuses it). Its tool is
				// kept for the metrics and the audit trail alone.
				request = answeredRequest{tool: request.tool}
			}
			if request.tool != "" && trail != nil {
				request.trail, request.id, request.span = trail, bytes.Clone(m.ID), trail.startToolCallSpan(v)
			}
			s.seq++
			request.seq, request.forwarded = s.seq, now
			s.inFlight[key] = request
			if recorded == nil {
				recorded = make(map[string]uint64)
			}
			recorded[key] = s.seq
		default:
			if id, ok := cancelledID(v.message); ok {
				key := mcpmsg.CanonicalID(id)
				request, inFlight := s.inFlight[key]
				switch _, listed := s.toolsLists[key]; {
				case !inFlight:
				case listed:
					// Kept, its answer awaited, but answered by no one
					// else (see endWith).
					request.cancelled = true
					s.inFlight[key] = request
				default:
					s.toolCallEnded(request, toolCancelled)
					delete(s.inFlight, key)
					s.retired.Add(key)
				}
			}
		}
	}
	return recorded, nil
}

// endWith ends the stream, first answering on it every request of the
// client's still awaiting its answer (but those it cancelled) with an
// error saying why none will come, unless the stream has ended already.
// Once ended, the stream takes no more requests (expectAnswers). Tool
// calls still awaited are counted failed, the client told or not.
func (s *legacyStream) endWith(why string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endCalls(toolFailed)
	if s.ended {
		return
	}
	for _, id := range slices.Sorted(maps.Keys(s.inFlight)) {
		if s.inFlight[id].cancelled {
			continue
		}
		if err := s.write(mcpmsg.ErrorResponse([]byte(id), mcpmsg.CodeInternalError, why)); err != nil {
			break
		}
	}
	clear(s.inFlight)
	s.ended = true
	close(s.done)
}

// forget takes the requests a POST recorded (see expectAnswers) out of
// those awaiting their answers, unless a later request took their ids
// since: the POST failed, and their answers will not come. With retire,
// their ids are retired, as a cancelled request's (the upstream may have
// taken the POST before it failed); without, they are free again (the
// upstream answered the POST with an error of its own: a client sending
// the message again with its id is not refused).
func (s *legacyStream) forget(recorded map[string]uint64, retire bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for key, seq := range recorded {
		if request, ok := s.inFlight[key]; ok && request.seq == seq {
			s.toolCallEnded(request, toolFailed)
			delete(s.inFlight, key)
			delete(s.toolsLists, key)
			if retire {
				s.retired.Add(key)
			}
		}
	}
}

// take notes that the stream carried the response to the request with
// this id, and returns that request (ok false when it was not in flight).
func (s *legacyStream) take(id []byte) (request answeredRequest, ok bool) {
	key := mcpmsg.CanonicalID(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	request, ok = s.inFlight[key]
	delete(s.inFlight, key)
	return request, ok
}

// toolsList returns the catalog's generation when the session's tools/list
// request with this id was forwarded, and forgets the request; listed is
// false when there is none.
func (s *legacyStream) toolsList(id []byte) (asOf uint64, listed bool) {
	key := mcpmsg.CanonicalID(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	asOf, listed = s.toolsLists[key]
	delete(s.toolsLists, key)
	return asOf, listed
}

// await returns where the response to the gateway's own request with this
// id will be delivered, and a function to call when no longer waiting.
func (s *legacyStream) await(id string) (<-chan []byte, func()) {
	key := mcpmsg.CanonicalID([]byte(id))
	response := make(chan []byte, 1)
	s.mu.Lock()
	s.awaited[key] = response
	s.mu.Unlock()
	return response, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.awaited[key] == response {
			delete(s.awaited, key)
		}
	}
}

// deliver hands m to the gateway's request awaiting it, and reports
// whether one was: such a response is the gateway's, not the client's.
func (s *legacyStream) deliver(m *mcpmsg.Message) bool {
	if m.Kind != mcpmsg.KindResponse {
		return false
	}
	key := mcpmsg.CanonicalID(m.ID)
	s.mu.Lock()
	defer s.mu.Unlock()
	response, ok := s.awaited[key]
	if ok {
		delete(s.awaited, key)
		response <- bytes.Clone(m.Raw)
	}
	return ok
}

// legacyKey names the HTTP+SSE session of base's upstream and caller whose
// message endpoint is u, a URL as the upstream sees it: by path and query,
// the query in canonical order and encoding.
func legacyKey(base sessionKey, u *url.URL) (sessionKey, error) {
	query, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return sessionKey{}, fmt.Errorf("message endpoint query: %w", err)
	}
	base.legacy, base.id = true, u.Path+"?"+query.Encode()
	return base, nil
}

// startLegacySession reads uri, the data of the endpoint event of the
// stream the exchange opened, which names where the session's messages
// go. It returns the session, its endpoint as the upstream sees it, and
// the URL to send the client in its place: the same path on the gateway
// (with the prefix that routing stripped before the gateway put back),
// whose query is only the sealed session. A relative uri resolves
// against the stream's URL as the upstream saw it; an absolute one names
// the upstream's own host, which the client is not sent to: every message
// goes through the gateway to the same upstream.
func (x *exchange) startLegacySession(uri string) (sessionKey, *url.URL, string, error) {
	target, err := x.r.URL.Parse(uri)
	if err != nil {
		return sessionKey{}, nil, "", fmt.Errorf("endpoint %q is not a URL: %w", uri, err)
	}
	if target.Scheme != "" && target.Scheme != "http" && target.Scheme != "https" || target.Opaque != "" {
		return sessionKey{}, nil, "", fmt.Errorf("endpoint %q is not an HTTP URL", uri)
	}
	endpoint := &url.URL{Path: target.Path, RawPath: target.RawPath, RawQuery: target.RawQuery}
	session, err := legacyKey(x.session, endpoint)
	if err != nil {
		return sessionKey{}, nil, "", err
	}
	token := x.g.cfg.Sealer.Seal(x.g.sessionScope(), sessiontoken.Session{
		Kind: sessiontoken.Legacy, Caller: session.sealedCaller(), ID: endpoint.String(),
	})
	client := &url.URL{
		Path:     strippedPrefix(x.g.host.OriginalPath(x.r), x.r.URL.Path) + endpoint.Path,
		RawQuery: url.Values{legacySessionParam: {token}}.Encode(),
	}
	given := client.String()
	if !strings.HasPrefix(given, "/") || strings.HasPrefix(given, "//") || strings.ContainsAny(given, "\\\t\r\n") {
		// "//host/path" (or "/\host", which WHATWG URL readers take for
		// it) names another host: the client's messages would go there,
		// past the gateway, with its session token.
		return sessionKey{}, nil, "", fmt.Errorf("endpoint %q would send the client to another host", uri)
	}
	return session, endpoint, given, nil
}

// strippedPrefix returns the path prefix that routes before the gateway
// stripped from the client's path (as handle_path does), so that URLs the
// upstream names can be given back to the client with it: "" when the
// path was not stripped, or was rewritten in a way the gateway cannot
// undo.
func strippedPrefix(originalPath, path string) string {
	prefix, stripped := strings.CutSuffix(originalPath, path)
	if !stripped {
		return ""
	}
	return prefix
}

// legacyPost is a message posted on the HTTP+SSE transport.
type legacyPost struct {
	session sessionKey
	// stream is the session's stream, open through the gateway.
	stream *legacyStream
	// recorded are the requests the POST forwards, as the stream awaits
	// them (see expectAnswers).
	recorded map[string]uint64
}

// refuse answers a refused message as the HTTP+SSE transport answers: the
// response to a request goes to the session's stream as a message event,
// and the POST gets 202 Accepted. A notification or response, or a
// request whose answer cannot be delivered on the stream, gets a JSON-RPC
// error with 403.
func (p *legacyPost) refuse(w http.ResponseWriter, v verdict, logger *zap.Logger) error {
	if response := v.response(); response != nil {
		err := p.stream.inject(response)
		if err == nil {
			w.WriteHeader(http.StatusAccepted)
			return nil
		}
		logger.Info("could not deliver a refusal on the session's event stream",
			zap.String("upstream", p.session.upstream), zap.Error(err))
	}
	mcphttp.WriteJSON(w, http.StatusForbidden, mcpmsg.ErrorResponse(v.message.ID, CodeRefusedByPolicy, v.refusal()))
	return nil
}

// expect prepares the session's stream for the replies to the messages a
// POST forwards, as of the catalog's generation asOf (see expectAnswers).
func (p *legacyPost) expect(verdicts []verdict, asOf uint64, trail *callTrail) error {
	recorded, err := p.stream.expectAnswers(verdicts, asOf, trail)
	p.recorded = recorded
	return err
}

// failed tells the session's stream that the POST failed: none of its
// requests will be answered; refusedByUpstream when the upstream answered
// the POST with an error status of its own (see legacyStream.forget).
func (p *legacyPost) failed(refusedByUpstream bool) {
	p.stream.forget(p.recorded, !refusedByUpstream)
}
