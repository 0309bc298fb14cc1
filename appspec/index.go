package appspec

import (
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// place is a 1-based line and column in the file.
type place struct{ line, col int }

// index knows where each key and value of a (syntactically valid) file is,
// by path: go-toml's decoder reports where it failed but keeps no
// positions for values it decoded fine, and a route or step that is wrong
// for this package's own reasons deserves a line and column too.
//
// A path is the key parts from the root; an array element's part is its
// 0-based index written by elem, so that no TOML key can look like it.
type index struct {
	p      unstable.Parser
	keys   map[string]place // path → where its key (or array element) starts
	vals   map[string]place // path → where its value starts, for scalars and inline tables
	at     map[place][]string
	arrays map[string]int // array-of-tables path → elements so far
}

// elem is the path part of array element i.
func elem(i int) string { return "\x00" + strconv.Itoa(i) }

// elemIndex is elem's inverse.
func elemIndex(part string) (int, bool) {
	if !strings.HasPrefix(part, "\x00") {
		return 0, false
	}
	i, err := strconv.Atoi(part[1:])
	return i, err == nil
}

func join(path []string) string { return strings.Join(path, "\x01") }

// newIndex walks doc's syntax tree. It stops quietly at a syntax error:
// go-toml's decoder reports those.
func newIndex(doc []byte) *index {
	ix := &index{keys: map[string]place{}, vals: map[string]place{}, at: map[place][]string{}, arrays: map[string]int{}}
	ix.p.Reset(doc)
	var table []string
	for ix.p.NextExpression() {
		e := ix.p.Expression()
		switch e.Kind {
		case unstable.Table:
			parts, places := ix.keyOf(e)
			table = ix.resolve(parts, places)
		case unstable.ArrayTable:
			parts, places := ix.keyOf(e)
			if len(parts) == 0 {
				continue
			}
			last := len(parts) - 1
			table = append(ix.resolve(parts[:last], places), parts[last])
			k := join(table)
			n := ix.arrays[k]
			ix.arrays[k] = n + 1
			ix.record(ix.keys, table, places[len(places)-1])
			table = append(table, elem(n))
			ix.record(ix.keys, table, places[len(places)-1])
		case unstable.KeyValue:
			ix.keyValue(table, e)
		}
	}
	return ix
}

// keyOf returns the parts of an expression's key and where each starts.
func (ix *index) keyOf(n *unstable.Node) ([]string, []place) {
	var parts []string
	var places []place
	it := n.Key()
	for it.Next() {
		k := it.Node()
		parts = append(parts, string(k.Data))
		places = append(places, ix.place(k.Raw))
	}
	return parts, places
}

// resolve maps a table header's key to a path, recording where each part
// appears: a part naming an array of tables means its last element, as
// TOML defines.
func (ix *index) resolve(parts []string, places []place) []string {
	var path []string
	for i, part := range parts {
		path = append(path, part)
		ix.record(ix.keys, path, places[i])
		if n, ok := ix.arrays[join(path)]; ok {
			path = append(path, elem(n-1))
		}
	}
	return path
}

// recordKeys records where each prefix of a dotted key appears, below base.
func (ix *index) recordKeys(base, parts []string, places []place) {
	path := append([]string(nil), base...)
	for i, part := range parts {
		path = append(path, part)
		ix.record(ix.keys, path, places[i])
	}
}

func (ix *index) keyValue(base []string, kv *unstable.Node) {
	parts, places := ix.keyOf(kv)
	ix.recordKeys(base, parts, places)
	path := append(append([]string(nil), base...), parts...)
	ix.value(path, kv.Value())
}

func (ix *index) value(path []string, v *unstable.Node) {
	if v.Raw.Length > 0 { // arrays carry no range of their own
		ix.record(ix.vals, path, ix.place(v.Raw))
	}
	switch v.Kind {
	case unstable.InlineTable:
		it := v.Children()
		for it.Next() {
			ix.keyValue(path, it.Node())
		}
	case unstable.Array:
		it := v.Children()
		for i := 0; it.Next(); i++ {
			el := append(append([]string(nil), path...), elem(i))
			if n := it.Node(); n.Raw.Length > 0 {
				ix.record(ix.keys, el, ix.place(n.Raw))
			}
			ix.value(el, it.Node())
		}
	}
}

// record keeps the first place seen for path: where it is defined.
func (ix *index) record(m map[string]place, path []string, at place) {
	k := join(path)
	if _, ok := m[k]; ok {
		return
	}
	m[k] = at
	if _, ok := ix.at[at]; !ok {
		ix.at[at] = append([]string(nil), path...)
	}
}

func (ix *index) place(r unstable.Range) place {
	sh := ix.p.Shape(r)
	return place{sh.Start.Line, sh.Start.Column}
}

// valueAt is where path's value starts, else its key, else its parent's.
func (ix *index) valueAt(path ...string) place {
	if at, ok := ix.vals[join(path)]; ok {
		return at
	}
	return ix.keyAt(path...)
}

// keyAt is where path's key starts, else its parent's, else 1:1.
func (ix *index) keyAt(path ...string) place {
	for n := len(path); n > 0; n-- {
		if at, ok := ix.keys[join(path[:n])]; ok {
			return at
		}
	}
	return place{1, 1}
}

// pathAt is the path whose key or value starts at line:col, if any.
func (ix *index) pathAt(line, col int) []string { return ix.at[place{line, col}] }
