package clienttest

import (
	"bufio"
	"net/http"
	"strings"
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
