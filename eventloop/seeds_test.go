package eventloop

import (
	"strings"
	"testing"
)

// framingSeed is an input the differential framing test starts from.
type framingSeed struct {
	name, data string
}

const host = "Host: x\r\n"

// framingSeeds are the fuzz target's seeds and TestFramingSeeds' cases:
// the usual, and the inputs request smuggling and parser differentials
// are made of.
var framingSeeds = []framingSeed{
	{"get", get},
	{"pipelined with HEAD and a late answer", "GET /echo?1 HTTP/1.1\r\n" + host + "\r\nHEAD /echo?2 HTTP/1.1\r\n" + host + "\r\nGET /a HTTP/1.1\r\n" + host + "\r\n"},
	{"expect continue", "POST /echo HTTP/1.1\r\n" + host + "Content-Length: 5\r\nExpect: 100-continue\r\n\r\nhello"},
	{"chunked with extension and trailer", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\n" + get},
	{"HTTP/1.0 then more", "GET / HTTP/1.0\r\n\r\n" + get},
	{"HTTP/1.0 keep-alive", "GET /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /echo HTTP/1.1\r\n" + host + "Connection: close\r\n\r\n" + get},
	{"leading empty lines and bare LF", "\r\n\nGET /echo HTTP/1.1\nHost: x\n\n"},
	{"POST with a body", "POST /echo HTTP/1.1\r\n" + host + "Content-Length: 11\r\n\r\nhello world" + get},

	// Content-Length and Transfer-Encoding together, and their variants.
	{"CL and TE", "POST /echo HTTP/1.1\r\n" + host + "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + get},
	{"CL and TE smuggling", "POST /echo HTTP/1.1\r\n" + host + "Content-Length: 35\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"},
	{"TE and CL order", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n" + get},
	{"duplicate CL equal", "POST /echo HTTP/1.1\r\n" + host + "Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc" + get},
	{"duplicate CL different", "POST /echo HTTP/1.1\r\n" + host + "Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd" + get},
	{"CL list", "POST /echo HTTP/1.1\r\n" + host + "Content-Length: 3, 3\r\n\r\nabc"},
	{"CL signed", "POST /echo HTTP/1.1\r\n" + host + "Content-Length: +3\r\n\r\nabc"},
	{"CL spaces", "POST /echo HTTP/1.1\r\n" + host + "Content-Length:  3 \r\n\r\nabc" + get},
	{"CL huge", "POST /echo HTTP/1.1\r\n" + host + "Content-Length: 99999999999999999999\r\n\r\n"},
	{"TE on HTTP/1.0", "POST /echo HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello" + get},
	{"TE on HTTP/1.0 without CL", "POST /echo HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" + get},
	{"TE gzip", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: gzip\r\n\r\nxyz"},
	{"TE gzip chunked", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"},
	{"TE chunked twice", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
	{"TE identity", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: identity\r\nContent-Length: 3\r\n\r\nabc"},
	{"TE Chunked", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: Chunked \r\n\r\n3\r\nabc\r\n0\r\n\r\n" + get},

	// Field syntax.
	{"space before colon CL", "POST /echo HTTP/1.1\r\n" + host + "Content-Length : 35\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"},
	{"space before colon TE", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"},
	{"tab before colon", "GET /echo HTTP/1.1\r\n" + host + "X-A\t: b\r\n\r\n"},
	{"obs-fold", "GET /echo HTTP/1.1\r\n" + host + "X-A: a\r\n b\r\n\tc\r\n\r\n" + get},
	{"obs-fold first line", "GET /echo HTTP/1.1\r\n X-A: a\r\n" + host + "\r\n"},
	{"bare LF", "GET /echo HTTP/1.1\n" + "Host: x\nX-A: b\n\n" + get},
	{"bare CR in line", "GET /echo HTTP/1.1\r\nHost: x\rX-A: b\r\n\r\n"},
	{"bare CR in value", "GET /echo HTTP/1.1\r\n" + host + "X-A: a\rb\r\n\r\n"},
	{"CR CR LF", "GET /echo HTTP/1.1\r\n" + host + "X-A: a\r\r\n\r\n"},
	{"NUL in value", "GET /echo HTTP/1.1\r\n" + host + "X-A: a\x00b\r\n\r\n"},
	{"NUL in name", "GET /echo HTTP/1.1\r\n" + host + "X\x00A: b\r\n\r\n"},
	{"NUL in target", "GET /ec\x00ho HTTP/1.1\r\n" + host + "\r\n"},
	{"DEL and obs-text in value", "GET /echo HTTP/1.1\r\n" + host + "X-A: \x7f\r\nX-B: caf\xc3\xa9\r\n\r\n"},
	{"empty name", "GET /echo HTTP/1.1\r\n" + host + ": b\r\n\r\n"},
	{"no colon", "GET /echo HTTP/1.1\r\n" + host + "X-A b\r\n\r\n"},
	{"repeated fields in order", "GET /echo HTTP/1.1\r\n" + host + "x-a: 1\r\nX-A: 2\r\nx-A:3\r\nAccept: */*\r\nX-Empty:\r\n\r\n"},
	{"Pragma no-cache", "GET /echo HTTP/1.1\r\n" + host + "Pragma: no-cache\r\n\r\n"},
	{"Trailer declared", "POST /echo HTTP/1.1\r\n" + host + "Trailer: X-Sum, X-Other\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nX-Sum: 9\r\n\r\n"},
	{"Trailer forbidden", "POST /echo HTTP/1.1\r\n" + host + "Trailer: Content-Length\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
	{"Connection tokens", "GET /echo HTTP/1.1\r\n" + host + "Connection: keep-alive, Close\r\n\r\n" + get},
	{"Connection twice", "GET /echo HTTP/1.1\r\n" + host + "Connection: x\r\nConnection: close\r\n\r\n" + get},
	{"Expect list", "POST /echo HTTP/1.1\r\n" + host + "Content-Length: 1\r\nExpect: 100-continue, foo\r\n\r\nx"},
	{"Expect unknown on HTTP/1.0", "POST /echo HTTP/1.0\r\nContent-Length: 1\r\nExpect: magic\r\n\r\nx"},
	{"Expect twice", "POST /echo HTTP/1.1\r\n" + host + "Content-Length: 1\r\nExpect: 100-continue\r\nExpect: 100-continue\r\n\r\nx"},
	{"Expect among words", "POST /echo HTTP/1.1\r\n" + host + "Content-Length: 1\r\nExpect: foo 100-Continue\r\n\r\nx"},
	{"Expect with a parameter", "POST /echo HTTP/1.1\r\n" + host + "Content-Length: 1\r\nExpect: 100-continue;x\r\n\r\nx"},
	{"Connection close among words", "GET /echo HTTP/1.1\r\n" + host + "Connection: x close\r\n\r\n" + get},
	{"Expect empty", "GET /echo HTTP/1.1\r\n" + host + "Expect:\r\n\r\n"},

	// Chunked bodies.
	{"chunk ext", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n5;a=b;c=\"d;e\"\r\nhello\r\n0;z\r\n\r\n" + get},
	{"chunk ext after space", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n5 ;a\r\nhello\r\n0\r\n\r\n"},
	{"chunk size with space", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n"},
	{"chunk longer than its size line", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n9\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n"},
	{"chunk shorter than its size line", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n"},
	{"chunk huge", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\nfffffffffffffff\r\nabc"},
	{"chunk size overflow", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n10000000000000003\r\nabc\r\n0\r\n\r\n"},
	{"chunk size negative", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n-1\r\nx\r\n0\r\n\r\n"},
	{"chunk size 0x", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n"},
	{"chunk leading zeros", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n0003\r\nabc\r\n000\r\n\r\n" + get},
	{"chunk bare LF", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n1\nx\n0\n\n"},
	{"chunk data bare LF", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n1\r\nx\n0\r\n\r\n"},
	{"last chunk bare LF end", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\n" + get},
	{"trailer bare LF", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n0\r\nX-T: 1\n\n" + get},
	{"trailer bare LF at the end", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n0\r\nX-T: 1\n\n"},
	{"trailer bare LF then CRLF CRLF past 4 KiB", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n0\r\n\nGET /echo HTTP/1.1\r\n" + host + "X-Pad: " + strings.Repeat("p", 4096) + "\r\n\r\n"},
	{"trailer with space before colon", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n0\r\nX-T : 1\r\n\r\n"},
	{"many small chunks", "POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n" + strings.Repeat("1\r\nz\r\n", 40) + "0\r\n\r\n" + get},

	// Host.
	{"Host with space", "GET /echo HTTP/1.1\r\nHost: a b\r\n\r\n"},
	{"Host with slash", "GET /echo HTTP/1.1\r\nHost: a/b\r\n\r\n"},
	{"Host empty", "GET /echo HTTP/1.1\r\nHost:\r\n\r\n" + get},
	{"Host blank", "GET /echo HTTP/1.1\r\nHost: \r\n\r\n"},
	{"Host missing", "GET /echo HTTP/1.1\r\n\r\n"},
	{"Host missing on HTTP/1.0", "GET /echo HTTP/1.0\r\n\r\n"},
	{"Host twice", "GET /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"},
	{"Host with port and IPv6", "GET /echo HTTP/1.1\r\nHost: [::1]:8000\r\n\r\n" + get},
	{"Host with underscore and percent", "GET /echo HTTP/1.1\r\nHost: a_b%41\r\n\r\n"},
	{"Host non-ASCII", "GET /echo HTTP/1.1\r\nHost: caf\xc3\xa9\r\n\r\n"},
	{"absolute form without Host", "GET http://x/echo HTTP/1.1\r\n\r\n"},
	{"absolute form with another Host", "GET http://x/echo?q HTTP/1.1\r\nHost: y\r\n\r\n" + get},

	// Request-target and request-line forms.
	{"asterisk form", "OPTIONS * HTTP/1.1\r\n" + host + "\r\n"},
	{"authority form", "CONNECT x:443 HTTP/1.1\r\n\r\n"},
	{"CONNECT with a path", "CONNECT /echo HTTP/1.1\r\n" + host + "\r\n"},
	{"target without slash", "GET echo HTTP/1.1\r\n" + host + "\r\n"},
	{"target with escapes", "GET /e%63ho/%2F?a=%zz&b HTTP/1.1\r\n" + host + "\r\n"},
	{"target with fragment", "GET /echo#frag HTTP/1.1\r\n" + host + "\r\n"},
	{"target with empty query", "GET /echo? HTTP/1.1\r\n" + host + "\r\n"},
	{"target non-ASCII", "GET /caf\xc3\xa9 HTTP/1.1\r\n" + host + "\r\n"},
	{"target double slash", "GET //x/y HTTP/1.1\r\n" + host + "\r\n"},
	{"empty target", "GET  HTTP/1.1\r\n" + host + "\r\n"},
	{"two spaces", "GET /echo  HTTP/1.1\r\n" + host + "\r\n"},
	{"tab separator", "GET\t/echo HTTP/1.1\r\n" + host + "\r\n"},
	{"lowercase method", "get /echo HTTP/1.1\r\n" + host + "\r\n"},
	{"odd method", "M-SEARCH /echo HTTP/1.1\r\n" + host + "\r\n"},
	{"bad method", "G@T /echo HTTP/1.1\r\n" + host + "\r\n"},
	{"HTTP/1.2", "GET /echo HTTP/1.2\r\n" + host + "\r\n"},
	{"HTTP/01.1", "GET /echo HTTP/01.1\r\n" + host + "\r\n"},
	{"lowercase version", "GET /echo http/1.1\r\n" + host + "\r\n"},
	{"HTTP/2.0", "GET /echo HTTP/2.0\r\n" + host + "\r\n"},
	{"PRI preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"},
	{"HTTP/0.9", "GET /echo\r\n\r\n"},
	{"HEAD with a body", "HEAD /echo HTTP/1.1\r\n" + host + "Content-Length: 3\r\n\r\nabcGET /a HTTP/1.1\r\n" + host + "\r\n"},
	{"garbage", "garbage\r\n\r\n"},
	{"CR before request line", "\rGET /echo HTTP/1.1\r\n" + host + "\r\n"},
}

// TestFramingSeeds runs each seed through the differential check, cut in
// two at every position, so that every boundary — inside a token, between
// CR and LF, inside a chunk-size line — is the end of one read.
//
// The server with NetHTTPParser gets each seed whole and cut in the middle:
// it differs from the default only in how a complete header block is
// parsed.
func TestFramingSeeds(t *testing.T) {
	ours := startServerWith(t, fuzzConfig, echoHandler)
	netHTTP := startServerWith(t, fuzzConfigNetHTTP, echoHandler)
	for _, seed := range framingSeeds {
		t.Run(seed.name, func(t *testing.T) {
			data := []byte(seed.data)
			ts := ours.with(t)
			checkFraming(ts, fuzzLimits, data, nil)
			for cut := 1; cut < len(data); cut++ {
				checkFraming(ts, fuzzLimits, data, []int{cut})
			}
			checkFraming(netHTTP.with(t), fuzzLimits, data, nil)
			checkFraming(netHTTP.with(t), fuzzLimits, data, []int{len(data) / 2})
		})
	}
}
