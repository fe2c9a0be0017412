// Package adminapi serves mcpgate's routes on an admin API (in mcpgate,
// Caddy's), for operators and the `mcpgate tools` and `mcpgate approvals`
// commands: the tool catalog (list the tools, accept a changed tool's
// definition) and approvals (list them, approve or deny one).
//
// Listing tools answers whoever reaches the admin API. Everything else
// answers only operators: requests over a unix socket, whose file
// permissions say who may use it, or over TLS with a verified client
// certificate (Caddy's remote admin, with its access control). Any other
// caller, such as a process on the host using a local TCP endpoint (the
// agent whose call is held among them), is refused with 403.
//
// It knows nothing of Caddy: its host hands it the tool catalogs and
// approval services, registers its Routes, and answers the refusals they
// return, *approvalhttp.Error values as approvalhttp's handler returns,
// as it answers its own errors (in Caddy: caddy.APIError).
package adminapi

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"

	jsonv2 "github.com/go-json-experiment/json"
	"go.uber.org/zap"

	"github.com/mcpgate/mcpgate/caddymodule/approval"
	"github.com/mcpgate/mcpgate/caddymodule/approvalhttp"
)

// Route is one admin API route: requests whose path matches Pattern (as
// http.ServeMux matches patterns) go to Serve, whose errors the host
// answers.
type Route struct {
	// Pattern is the path the route answers.
	Pattern string
	// Serve answers a request, or returns why it did not: an
	// *approvalhttp.Error for a refusal, another error for a response that
	// could not be written.
	Serve func(w http.ResponseWriter, r *http.Request) error
}

// refuse returns the refusal that answers a request with status.
func refuse(status int, err error) error {
	return &approvalhttp.Error{Status: status, Err: err}
}

// Logs returns the logger the routes log to, as the host has it when a
// request comes (Caddy's default logger follows the config). Nil is no
// log.
type Logs func() *zap.Logger

// named returns the host's logger named name.
func (logs Logs) named(name string) *zap.Logger {
	if logs == nil {
		return zap.NewNop()
	}
	return logs().Named(name)
}

// internalError logs, as mcpgate.admin, what failed inside the gateway,
// and answers with a fixed message.
func (logs Logs) internalError(what string, err error) error {
	logs.named("mcpgate.admin").Error(what, zap.Error(err))
	return refuse(http.StatusInternalServerError, errors.New(what+" failed; the gateway's log says why"))
}

// maxBody bounds the JSON body of a request.
const maxBody = 1 << 16

// requireMethod refuses, with 405, a request not made with method.
func requireMethod(r *http.Request, method string) error {
	if r.Method != method {
		return refuse(http.StatusMethodNotAllowed, fmt.Errorf("method %s not allowed", r.Method))
	}
	return nil
}

// boolQuery reads a query parameter that is true or false (1 or 0,
// strconv.ParseBool's spellings), false when absent, and refuses any other
// value or the parameter given twice with 400: "?all=0" is not all.
func boolQuery(r *http.Request, name string) (bool, error) {
	values := r.URL.Query()[name]
	switch len(values) {
	case 0:
		return false, nil
	case 1:
		if b, err := strconv.ParseBool(values[0]); err == nil {
			return b, nil
		}
	}
	return false, refuse(http.StatusBadRequest, fmt.Errorf("query parameter %s: want true or false (1 or 0), got %q", name, values))
}

// decodeBody reads a request's JSON body (within maxBody) into v,
// refusing what does not decode with 400.
// The body is read strictly (json/v2): a member given twice, a name in
// another case, a member the request does not have, or anything after the
// value is refused, not read one way here and another by whoever wrote it
// (a "hash" given twice, the second empty, skipped the hash check).
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err == nil {
		err = jsonv2.Unmarshal(body, v, jsonv2.RejectUnknownMembers(true))
	}
	if err != nil {
		return refuse(http.StatusBadRequest, fmt.Errorf("decoding request: %w", stableError(err)))
	}
	return nil
}

// stableError words a json/v2 error about what the request holds in words
// of its own: the library's wording varies on purpose, from one build to
// the next, and operators read (and tests compare) these.
func stableError(err error) error {
	var semantic *jsonv2.SemanticError
	switch {
	case !errors.As(err, &semantic):
		return err
	case errors.Is(semantic.Err, jsonv2.ErrUnknownName):
		return fmt.Errorf("unknown member %q", semantic.JSONPointer.LastToken())
	default:
		return fmt.Errorf("a JSON %s at %q, where the request takes no such value", semantic.JSONKind, string(semantic.JSONPointer))
	}
}

// writeJSON answers a request with v as JSON.
func writeJSON(w http.ResponseWriter, v any) error {
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(v)
}

// errNotAnOperator is why the operator routes refuse a caller that came
// neither over a unix socket nor with a verified client certificate.
var errNotAnOperator = errors.New("mcpgate's approval and tool routes answer only operators: " +
	"put Caddy's admin endpoint on a unix socket (admin unix//run/mcpgate/admin.sock), whose file permissions say who may use it, " +
	"or use Caddy's remote admin with client certificates; or decide in the approval inbox")

// operator returns who calls an operator route, as an approval decider:
// "admin" over a unix socket, "admin:<name>" over TLS with a verified
// client certificate (see certificateName; "admin" when it has no common
// name), with the claim the request makes of itself. Over any other
// connection the caller could be any process on the host, and it is
// refused with 403, as is a certificate whose subject names more than
// one common name (readers take one or the other).
func operator(r *http.Request, claim string) (approval.Decider, error) {
	by := approval.Decider{ID: approval.PrincipalAdmin, Principals: []string{approval.PrincipalAdmin}, Claim: claim}
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		name, err := certificateName(r.TLS.VerifiedChains[0])
		if err != nil {
			return approval.Decider{}, refuse(http.StatusForbidden, err)
		}
		if name != "" {
			by.ID = approval.PrincipalAdmin + ":" + name
			by.Principals = append(by.Principals, by.ID)
			// The common name alone, however qualified the name: a
			// certificate naming the caller, from any CA, never decides
			// the caller's own call.
			by.Callers = []string{r.TLS.VerifiedChains[0][0].Subject.CommonName}
		}
		return by, nil
	}
	if _, unix := r.Context().Value(http.LocalAddrContextKey).(*net.UnixAddr); unix {
		return by, nil
	}
	return approval.Decider{}, refuse(http.StatusForbidden, errNotAnOperator)
}

// certificateName names the holder of a verified client certificate
// chain: the certificate's common name when the certificate is itself the
// one trusted (Caddy's remote admin lists it), else the common name
// followed by "@" and the first 16 hex digits of the SHA-256 of the
// trusted certificate that issued it (a CA's), since every CA that is
// trusted names its own certificates and two could name the same person.
// "" when the certificate has no common name.
func certificateName(chain []*x509.Certificate) (string, error) {
	leaf := chain[0]
	if n := commonNames(leaf); n > 1 {
		return "", fmt.Errorf("the client certificate names %d common names; an operator's certificate names one", n)
	}
	name := leaf.Subject.CommonName
	if name == "" || len(chain) == 1 {
		return name, nil
	}
	root := sha256.Sum256(chain[len(chain)-1].Raw)
	return name + "@" + hex.EncodeToString(root[:8]), nil
}

// commonNames counts the common names of a certificate's subject, which
// crypto/x509 reduces to its last one.
func commonNames(cert *x509.Certificate) int {
	n := 0
	for _, attribute := range cert.Subject.Names {
		if attribute.Type.Equal(oidCommonName) {
			n++
		}
	}
	return n
}

// oidCommonName is the attribute type of a common name (X.520).
var oidCommonName = asn1.ObjectIdentifier{2, 5, 4, 3}
