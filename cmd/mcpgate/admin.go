package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
)

// adminAddress resolves the admin API address: the one given, else the
// admin address of the Caddyfile in the current folder (as `mcpgate run`
// would serve it), else Caddy's default.
func adminAddress(address string) (string, error) {
	configFile := ""
	if address == "" {
		if _, err := os.Stat("Caddyfile"); err == nil {
			configFile = "Caddyfile"
		}
	}
	return caddycmd.DetermineAdminAPIAddress(address, nil, configFile, "")
}

// adminJSON calls the admin API at address with body (nil: none) as JSON,
// and decodes the answer into into. A non-2xx answer is an error that
// carries the API's message.
func adminJSON(address, method, uri string, body, into any) error {
	addr, err := adminAddress(address)
	if err != nil {
		return err
	}
	var header http.Header
	var reader io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return err
		}
		header, reader = http.Header{"Content-Type": {"application/json"}}, bytes.NewReader(raw)
	}
	resp, err := caddycmd.AdminAPIRequest(addr, method, uri, header, reader)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(into); err != nil {
		return fmt.Errorf("reading the answer: %w", err)
	}
	return nil
}
