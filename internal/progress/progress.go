// Package progress shows what a long command is doing on one line of a
// terminal, rewritten as it goes; to anything else (a pipe, a file, a
// terminal that says it is dumb) it writes nothing, so scripts and logs
// see only the command's output.
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"golang.org/x/term"
)

// Line is a progress line on a terminal, or nothing.
type Line struct {
	mu sync.Mutex
	w  io.Writer // nil: not a terminal
	on bool      // a line is shown
}

// On returns the progress line of w: a live one if w is a terminal.
func On(w io.Writer) *Line {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) || os.Getenv("TERM") == "dumb" {
		return &Line{}
	}
	return &Line{w: w}
}

// Live says whether the line shows on a terminal.
func (l *Line) Live() bool { return l != nil && l.w != nil }

// Show replaces the line with the message.
func (l *Line) Show(format string, args ...any) {
	if l == nil || l.w == nil {
		return
	}
	msg := strings.Map(printable, fmt.Sprintf(format, args...))
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, "\r\x1b[K%s", msg)
	l.on = true
}

// Clear removes the line, before the command prints what it has to say.
func (l *Line) Clear() {
	if l == nil || l.w == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.on {
		fmt.Fprint(l.w, "\r\x1b[K")
		l.on = false
	}
}

// printable keeps a message on its one line, and escape sequences out.
func printable(r rune) rune {
	if r < ' ' || r == 0x7f {
		return ' '
	}
	return r
}
