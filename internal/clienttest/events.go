package clienttest

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"testing"
)

// EventData reads the data lines of the event stream resp carries, one
// string per line, until the stream ends (when the channel is closed).
func EventData(resp *http.Response) <-chan string {
	events := make(chan string, 16)
	go func() {
		defer close(events)
		lines := bufio.NewScanner(resp.Body)
		for lines.Scan() {
			if data, ok := strings.CutPrefix(lines.Text(), "data: "); ok {
				events <- data
			}
		}
	}()
	return events
}

// PostEvents posts body with header (see NewRequest) while ctx lasts, and
// returns the reply's status and the data of its events (EventData). The
// reply is closed when the test ends.
func PostEvents(tb testing.TB, ctx context.Context, url string, header http.Header, body string) (int, <-chan string) {
	tb.Helper()
	resp, err := http.DefaultClient.Do(NewRequest(tb, http.MethodPost, url, header, strings.NewReader(body)).WithContext(ctx))
	if err != nil {
		tb.Fatalf("POST %s: %v", url, err)
	}
	tb.Cleanup(func() { resp.Body.Close() })
	return resp.StatusCode, EventData(resp)
}
