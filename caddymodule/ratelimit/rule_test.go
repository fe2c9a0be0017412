package ratelimit

import (
	"strings"
	"testing"
	"time"
)

func TestParseRate(t *testing.T) {
	tests := []struct {
		in         string
		wantEvents int
		wantPer    time.Duration
	}{
		{"30/1m", 30, time.Minute},
		{"1/1s", 1, time.Second},
		{"5/500ms", 5, 500 * time.Millisecond},
		{"2/1h30m", 2, 90 * time.Minute},
		{"1000/1d", 1000, 24 * time.Hour},
		{"7/7d", 7, 7 * 24 * time.Hour},
		{"007/1m", 7, time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			events, per, err := ParseRate(tt.in)
			if err != nil {
				t.Fatalf("ParseRate(%q) error: %v, want %d/%s", tt.in, err, tt.wantEvents, tt.wantPer)
			}
			if events != tt.wantEvents || per != tt.wantPer {
				t.Errorf("ParseRate(%q) = %d/%s, want %d/%s", tt.in, events, per, tt.wantEvents, tt.wantPer)
			}
		})
	}
}

func TestParseRateErrors(t *testing.T) {
	tests := []struct {
		in      string
		wantErr string
	}{
		{"", "want events/duration"},
		{"30", "want events/duration"},
		{"30 per minute", "want events/duration"},
		{"/1m", `events "" is not a whole number`},
		{"x/1m", `events "x" is not a whole number`},
		{"-1/1m", `events "-1" is not a whole number`},
		{"+5/1m", `events "+5" is not a whole number`},
		{"1.5/1m", `events "1.5" is not a whole number`},
		{"0/1m", "events must be positive"},
		{"99999999999999999999/1m", "events 99999999999999999999 is too large"},
		{"30/", `invalid duration ""`},
		{"30/m", `invalid duration "m"`},
		{"30/1x", `unknown unit "x"`},
		{"30/1m/1s", `unknown unit "m/"`},
		{"30/0s", "duration 0s must be positive"},
		{"30/-1m", "duration -1m must be positive"},
		{"30/0d", "duration 0d must be positive"},
		{"30/1.5d", "days must be a whole number"},
		{"30/1h1d", "days must be a whole number"},
		{"30/d", "days must be a whole number"},
		{"30/999999999999999999999h", "invalid duration"},
		{"30/106752d", "duration 106752d is too long"},
		{"30/99999999999999999999d", "duration 99999999999999999999d is too long"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			events, per, err := ParseRate(tt.in)
			if err == nil {
				t.Fatalf("ParseRate(%q) = %d/%s, want an error containing %q", tt.in, events, per, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseRate(%q) error = %q, want it to contain %q", tt.in, err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.in) {
				t.Errorf("ParseRate(%q) error = %q, want it to quote the rate", tt.in, err)
			}
		})
	}
}

func TestRuleValidate(t *testing.T) {
	tests := []struct {
		name    string
		rule    Rule
		wantErr string
	}{
		{"valid", Rule{Events: 30, Per: time.Minute, Burst: 5}, ""},
		{"default burst", Rule{Events: 30, Per: time.Minute}, ""},
		{"zero events", Rule{Per: time.Minute}, "events must be positive, got 0"},
		{"negative events", Rule{Events: -1, Per: time.Minute}, "events must be positive, got -1"},
		{"zero period", Rule{Events: 30}, "period must be positive, got 0s"},
		{"negative period", Rule{Events: 30, Per: -time.Second}, "period must be positive, got -1s"},
		{"negative burst", Rule{Events: 30, Per: time.Minute, Burst: -1}, "burst must not be negative, got -1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.rule.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("%+v.Validate() = %v, want no error", tt.rule, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("%+v.Validate() = %v, want an error containing %q", tt.rule, err, tt.wantErr)
			}
		})
	}
}
