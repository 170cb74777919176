package progress

import (
	"bytes"
	"os"
	"testing"
)

// To anything but a terminal, nothing is written.
func TestNothingOffATerminal(t *testing.T) {
	var buf bytes.Buffer
	l := On(&buf)
	l.Show("joining %s", "https://example:8787")
	l.Clear()
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	On(f).Show("a file is not a terminal")
	if st, _ := f.Stat(); buf.Len() != 0 || st.Size() != 0 {
		t.Errorf("wrote %q to a buffer and %d bytes to a file", buf.String(), st.Size())
	}
}

// On a terminal the line is rewritten in place, and a message cannot
// break out of it.
func TestOneLineRewritten(t *testing.T) {
	var buf bytes.Buffer
	l := &Line{w: &buf}
	l.Show("step %d", 1)
	l.Show("evil\n\x1b]0;title\a")
	l.Clear()
	l.Clear() // once cleared, nothing more
	want := "\r\x1b[Kstep 1\r\x1b[Kevil  ]0;title \r\x1b[K"
	if buf.String() != want {
		t.Errorf("wrote %q, want %q", buf.String(), want)
	}
}
