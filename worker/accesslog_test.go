package worker

import (
	"os/exec"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// accessTargets are request targets with what uvicorn's access log prints
// for them (checked against uvicorn 0.17 with h11), but for the `"` in a
// query, which uvicorn prints raw.
var accessTargets = []struct{ target, want string }{
	{"/healthcheck", "/healthcheck"},
	{"/", "/"},
	{"/all-async?x=1&y=2", "/all-async?x=1&y=2"},
	{`/a"b`, "/a%22b"},
	{`/x"%20200%20"`, "/x%22%20200%20%22"},
	{`/a"b?q="x\z%22`, `/a%22b?q=%22x\z%22`},
	{"/p'q!*@$,;=+&~", "/p%27q%21%2A%40%24%2C%3B%3D%2B%26~"},
	{"/%C3%A9/%2F/%7e", "/%C3%A9///~"},
	{"/100%", "/100%25"},
	{"/%zz%4", "/%25zz%254"},
	{"/x?", "/x"},
	{"/x?a=%22&b", "/x?a=%22&b"},
	{"*", "*"},
	{`http://example.com/a"b`, "http://example.com/a%22b"},
}

func TestAccessLogQuotesTheTargetAsUvicorn(t *testing.T) {
	for _, tc := range accessTargets {
		if got := string(appendTarget(nil, tc.target)); got != tc.want {
			t.Errorf("%q logged as %q, want %q", tc.target, got, tc.want)
		}
	}
}

// TestAccessLogTargetMatchesUvicornsCode runs uvicorn's own function on the
// paths above (not their queries, which differ on purpose for `"`).
func TestAccessLogTargetMatchesUvicornsCode(t *testing.T) {
	var py string
	for _, p := range []string{"python3", "/usr/bin/python3"} {
		if exec.Command(p, "-c", "import uvicorn.protocols.utils").Run() == nil {
			py = p
			break
		}
	}
	if py == "" {
		t.Skip("uvicorn is not importable by python3 or /usr/bin/python3 (Debian: apt-get install python3-uvicorn)")
	}
	var paths []string
	for _, tc := range accessTargets {
		if strings.HasPrefix(tc.target, "/") {
			paths = append(paths, strings.SplitN(tc.target, "?", 2)[0])
		}
	}
	// uvicorn's h11 protocol: scope["path"] = unquote(raw_path), then
	// get_path_with_query_string quotes it again.
	script := `import sys, urllib.parse
from uvicorn.protocols.utils import get_path_with_query_string
for p in sys.argv[1:]:
    print(get_path_with_query_string({"path": urllib.parse.unquote(p), "query_string": b""}))`
	out, err := exec.Command(py, append([]string{"-c", script}, paths...)...).Output()
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	for i, p := range paths {
		if got := string(appendTarget(nil, p)); got != want[i] {
			t.Errorf("%q: we log %q, uvicorn %q", p, got, want[i])
		}
	}
}

// TestAccessLogCannotBeForged: whatever the target, the line has exactly
// two `"`, around the request, and building it allocates nothing.
func TestAccessLogCannotBeForged(t *testing.T) {
	rec := &lineRecorder{Core: zapcore.NewNopCore(), record: true}
	a := newTestApp(t, zap.New(rec).Named("worker-1[123]"))
	a.accessLog("127.0.0.1:54321", "GET", `/x"%20200%20"?"a"`, "HTTP/1.1", 404, nil)
	if want := `127.0.0.1:54321 - "GET /x%22%20200%20%22?%22a%22 HTTP/1.1" 404`; len(rec.msgs) != 1 || rec.msgs[0] != want {
		t.Errorf("access line %q, want %q", rec.msgs, want)
	}
	rec.record = false
	if n := testing.AllocsPerRun(100, func() {
		a.accessLog("127.0.0.1:54321", "GET", `/p'q!*@$,;=+&~?a="b"`, "HTTP/1.1", 200, nil)
	}); n != 0 {
		t.Errorf("%v allocations per access line", n)
	}
}
