package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/mcpgate/mcpgate/caddymodule/mcphttp"
	"github.com/mcpgate/mcpgate/caddymodule/mcpmsg"
)

// read is the stage that reads the POST's whole body within max_body,
// refusing encodings and content types the gateway could not inspect.
func (x *exchange) read() error {
	if err := checkContentType(x.r.Header); err != nil {
		return refuse(http.StatusBadRequest, mcpmsg.CodeInvalidRequest, err.Error())
	}
	limit := x.g.cfg.MaxBody
	if x.r.ContentLength > limit {
		return refuse(http.StatusRequestEntityTooLarge, mcpmsg.CodeInvalidRequest, errBodyTooLarge(limit))
	}
	body := bytes.NewBuffer(make([]byte, 0, max(x.r.ContentLength, 0)+bytes.MinRead))
	if _, err := body.ReadFrom(http.MaxBytesReader(x.w, x.r.Body, limit)); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			// (The rest is not read: see exchange.reject.)
			return refuse(http.StatusRequestEntityTooLarge, mcpmsg.CodeInvalidRequest, errBodyTooLarge(limit))
		}
		return refuse(http.StatusBadRequest, mcpmsg.CodeInvalidRequest, "reading request body: "+err.Error())
	}
	x.raw = body.Bytes()
	return nil
}

// checkUncompressed accepts a body with no content coding but identity.
func checkUncompressed(header http.Header) error {
	if coding, encoded := mcphttp.ContentCoding(header); encoded {
		return fmt.Errorf("content encoding %q is not accepted", coding)
	}
	return nil
}

func errBodyTooLarge(limit int64) string {
	return "request body is larger than max_body (" + strconv.FormatInt(limit, 10) + " bytes)"
}

// checkContentType accepts only uncompressed JSON: the gateway must see the
// same bytes the upstream will decode.
func checkContentType(header http.Header) error {
	if err := checkUncompressed(header); err != nil {
		return fmt.Errorf("%w; send the body uncompressed", err)
	}
	values := header.Values("Content-Type")
	if len(values) != 1 {
		return errors.New("content type must be given once, as application/json")
	}
	if values[0] == "application/json" {
		// As clients send it: nothing to parse.
		return nil
	}
	mediaType, params, err := mime.ParseMediaType(values[0])
	if err != nil {
		return fmt.Errorf("content type %q is malformed: %w", values[0], err)
	}
	if mediaType != "application/json" {
		return fmt.Errorf("content type %q is not application/json", mediaType)
	}
	if charset, ok := params["charset"]; ok && !strings.EqualFold(charset, "utf-8") {
		return fmt.Errorf("charset %q is not accepted; MCP messages are UTF-8", charset)
	}
	return nil
}
