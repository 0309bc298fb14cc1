package contract

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

func TestMessagesRoundTrip(t *testing.T) {
	msgs := []Msg{
		{Kind: Ready},
		{Kind: Beat, Value: 1764236400123456789, Text: `{"requests":3}`},
		{Kind: Alive, Value: -1},
		{Kind: Retire, Value: 1000, Text: "with\nnewline"},
	}
	var pipe bytes.Buffer
	for _, m := range msgs {
		pipe.Write(m.Encode())
	}
	r := NewReader(&pipe)
	for _, want := range msgs {
		want.Text = strings.ReplaceAll(want.Text, "\n", " ")
		got, err := r.Next()
		if err != nil || got != want {
			t.Fatalf("got %+v, %v; want %+v", got, err, want)
		}
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("after the last message: %v, want EOF", err)
	}
}

func TestEncodeStaysAtomic(t *testing.T) {
	m := Msg{Kind: Beat, Value: 1, Text: strings.Repeat("x", 10000)}
	if n := len(m.Encode()); n > MaxMsg {
		t.Fatalf("encoded %d bytes, over MaxMsg %d", n, MaxMsg)
	}
}

func TestBadLineIsAnError(t *testing.T) {
	if _, err := NewReader(strings.NewReader("beat soon\n")).Next(); err == nil {
		t.Fatal("a non-numeric value was accepted")
	}
}

func TestParseMode(t *testing.T) {
	for _, m := range Modes {
		if got, err := ParseMode(string(m)); got != m || err != nil {
			t.Errorf("ParseMode(%q) = %q, %v", m, got, err)
		}
	}
	_, err := ParseMode("sync")
	if err == nil || err.Error() != `"sync": want one of mixed, async, threadpool` {
		t.Errorf("ParseMode(sync): %v", err)
	}
}
