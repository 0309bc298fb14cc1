package worker

import "strings"

// appendTarget appends a request target to an access line the way uvicorn
// prints it — urllib.parse.quote(unquote(path)), then `?` and the query
// as sent — so a `"` in the target cannot end the quoted request early and
// forge the fields after it (`GET /x" 200 "... HTTP/1.1`). Uvicorn prints
// the query raw, `"` included; here a `"` in the query is %22 too. A
// target that is not a path (`*`, absolute-form) is printed as sent, but
// for `"`. Allocation-free: it runs once per request.
func appendTarget(b []byte, target string) []byte {
	path, query := target, ""
	if i := strings.IndexByte(target, '?'); i >= 0 {
		path, query = target[:i], target[i+1:]
	}
	if !strings.HasPrefix(path, "/") {
		return appendQuoteEscaped(b, target)
	}
	if plain(path) {
		b = append(b, path...) // as most requests send it: in one piece
	} else {
		b = appendQuotedPath(b, path)
	}
	if query != "" { // uvicorn leaves out an empty query, `?` too
		b = append(b, '?')
		b = appendQuoteEscaped(b, query)
	}
	return b
}

// appendQuotedPath appends urllib.parse.quote(unquote(path)).
func appendQuotedPath(b []byte, path string) []byte {
	for i := 0; i < len(path); i++ {
		c := path[i]
		if c == '%' && i+2 < len(path) && isHex(path[i+1]) && isHex(path[i+2]) {
			c = unhex(path[i+1])<<4 | unhex(path[i+2])
			i += 2
		}
		if quoteSafe(c) {
			b = append(b, c)
		} else {
			b = append(b, '%', upperHex[c>>4], upperHex[c&15])
		}
	}
	return b
}

const upperHex = "0123456789ABCDEF"

// quoteSafe reports whether urllib.parse.quote leaves c as is: letters,
// digits, `_.-~` and (its default safe set) `/`.
func quoteSafe(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '_' || c == '.' || c == '-' || c == '~' || c == '/'
}

// plain reports whether quote(unquote(path)) is path itself: no escape, no
// byte to escape.
func plain(path string) bool {
	for i := 0; i < len(path); i++ {
		if !quoteSafe(path[i]) {
			return false
		}
	}
	return true
}

func appendQuoteEscaped(b []byte, s string) []byte {
	for {
		i := strings.IndexByte(s, '"')
		if i < 0 {
			return append(b, s...)
		}
		b = append(append(b, s[:i]...), "%22"...)
		s = s[i+1:]
	}
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}
