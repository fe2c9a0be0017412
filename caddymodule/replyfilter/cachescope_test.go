package replyfilter

import "testing"

func TestPrivateCacheScope(t *testing.T) {
	tests := []struct {
		name, result string
		add          bool
		want         string
	}{
		{"public made private", `{"tools":[],"ttlMs":60000,"cacheScope":"public"}`, false, `{"tools":[],"ttlMs":60000,"cacheScope":"private"}`},
		{"public made private, added or not", `{"tools":[],"cacheScope":"public","ttlMs":1}`, true, `{"tools":[],"cacheScope":"private","ttlMs":1}`},
		{"private kept", `{"tools":[],"cacheScope":"private"}`, true, `{"tools":[],"cacheScope":"private"}`},
		{"private spelt with an escape kept", `{"cacheScope":"priv\u0061te"}`, true, `{"cacheScope":"priv\u0061te"}`},
		{"another value", `{"cacheScope":"shared"}`, false, `{"cacheScope":"private"}`},
		{"not a string", `{"cacheScope":{"public":true}}`, false, `{"cacheScope":"private"}`},
		{"absent, added", `{"tools":[],"ttlMs":5}`, true, `{"cacheScope":"private","tools":[],"ttlMs":5}`},
		{"absent from an empty result, added", `{ }`, true, `{"cacheScope":"private" }`},
		{"absent, not added", `{"tools":[],"ttlMs":5}`, false, `{"tools":[],"ttlMs":5}`},
		{"a case variant", `{"CacheScope":"public"}`, true, `{"CacheScope":"private"}`},
		{"a variant beside it", `{"cacheScope":"private","CACHESCOPE":"public"}`, false, `{"cacheScope":"private","CACHESCOPE":"private"}`},
		{"spelt with an escape", `{"cache\u0053cope":"public"}`, false, `{"cache\u0053cope":"private"}`},
		{"spelt with the long s", "{\"cache\u017fcope\":\"public\"}", false, "{\"cache\u017fcope\":\"private\"}"},
		{"nested members untouched", `{"contents":[{"cacheScope":"public"}]}`, false, `{"contents":[{"cacheScope":"public"}]}`},
		{"nested members untouched, one added", `{"contents":[{"cacheScope":"public"}]}`, true, `{"cacheScope":"private","contents":[{"cacheScope":"public"}]}`},
		{"not an object", `[1]`, true, `[1]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := PrivateCacheScope([]byte(tt.result), tt.add)
			if err != nil || string(got) != tt.want {
				t.Errorf("PrivateCacheScope(%s, %v) = %s, %v; want %s", tt.result, tt.add, got, err, tt.want)
			}
		})
	}
}
