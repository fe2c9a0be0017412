package mcpgate_test

import (
	"encoding/json"
	"os"
	"testing"

	"golang.org/x/mod/modfile"
)

// TestXcaddyManifestMatchesGoMod keeps xcaddy.json in step with go.mod: the
// Caddy version xcaddy builds must be the one this module is built and
// tested against, and the plugin must be this module.
func TestXcaddyManifestMatchesGoMod(t *testing.T) {
	raw, err := os.ReadFile("xcaddy.json")
	if err != nil {
		t.Fatalf("reading xcaddy.json: %v", err)
	}
	var manifest struct {
		CaddyVersion string `json:"caddy_version"`
		Plugins      []struct {
			Module  string `json:"module"`
			Replace string `json:"replace"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(raw, &manifest); err != nil {
		t.Fatalf("parsing xcaddy.json: %v", err)
	}
	goMod, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatalf("reading go.mod: %v", err)
	}
	mod, err := modfile.ParseLax("go.mod", goMod, nil)
	if err != nil {
		t.Fatalf("parsing go.mod: %v", err)
	}
	caddyVersion := ""
	for _, req := range mod.Require {
		if req.Mod.Path == "github.com/caddyserver/caddy/v2" {
			caddyVersion = req.Mod.Version
		}
	}
	if caddyVersion == "" {
		t.Fatal("go.mod does not require github.com/caddyserver/caddy/v2")
	}
	if manifest.CaddyVersion != caddyVersion {
		t.Errorf("xcaddy.json caddy_version = %q, go.mod requires %q", manifest.CaddyVersion, caddyVersion)
	}
	if len(manifest.Plugins) != 1 || manifest.Plugins[0].Module != mod.Module.Mod.Path || manifest.Plugins[0].Replace != "." {
		t.Errorf("xcaddy.json plugins = %+v, want exactly this module (%s) built from \".\"", manifest.Plugins, mod.Module.Mod.Path)
	}
}
