package policy

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/tailscale/hujson"
)

// Error is a problem in a policy's text, at a line and column counted from
// 1 (the column in bytes, as hujson counts it).
type Error struct {
	Line, Column int
	Msg          string
}

func (e *Error) Error() string {
	return fmt.Sprintf("line %d, column %d: %s", e.Line, e.Column, e.Msg)
}

// decoder walks a policy's HuJSON tree and makes Errors that point into
// its text.
type decoder struct{ src []byte }

// parse reads the text's tree: nil, and no error, if the text holds only
// whitespace and comments. A last line comment needs no newline (hujson
// wants one); the text's own errors are reported.
func (d *decoder) parse() (*hujson.Value, error) {
	v, err := hujson.Parse(append(bytes.Clone(d.src), '\n'))
	switch {
	case err == nil:
		return &v, nil
	case onlyExtra(d.src):
		return nil, nil
	}
	if _, own := hujson.Parse(d.src); own != nil {
		err = own // at the text's own end, not past the newline
	}
	return nil, syntaxError(err)
}

// onlyExtra says whether b is nothing but whitespace and comments: then a
// value put after it is the first thing hujson finds. (The newline ends a
// last line comment.)
func onlyExtra(b []byte) bool {
	v, err := hujson.Parse(append(bytes.Clone(b), "\n0"...))
	return err == nil && v.StartOffset > len(b)
}

// syntaxError turns hujson's error, "hujson: line L, column C: MSG", into
// an Error.
func syntaxError(err error) *Error {
	s := err.Error()
	var e Error
	if _, serr := fmt.Sscanf(s, "hujson: line %d, column %d:", &e.Line, &e.Column); serr != nil {
		return &Error{Line: 1, Column: 1, Msg: "syntax error: " + s}
	}
	_, msg, _ := strings.Cut(strings.TrimPrefix(s, "hujson: "), ": ")
	e.Msg = "syntax error: " + msg
	return &e
}

// position is the line and column of offset off in src.
func position(src []byte, off int) (line, column int) {
	off = min(max(off, 0), len(src))
	line = 1 + bytes.Count(src[:off], []byte("\n"))
	column = off - bytes.LastIndexByte(src[:off], '\n')
	return line, column
}

// errorf is an Error at v.
func (d *decoder) errorf(v *hujson.Value, format string, args ...any) *Error {
	line, col := position(d.src, v.StartOffset)
	return &Error{Line: line, Column: col, Msg: fmt.Sprintf(format, args...)}
}

func (d *decoder) line(v *hujson.Value) int {
	line, _ := position(d.src, v.StartOffset)
	return line
}

// member is one name and value of an object.
type member struct {
	name       string
	key, value *hujson.Value
}

// object is v's members in order. It refuses anything but an object, and
// a name given twice (ignoring case).
func (d *decoder) object(v *hujson.Value, what string) ([]member, error) {
	obj, ok := v.Value.(*hujson.Object)
	if !ok {
		return nil, d.errorf(v, "%s must be an object {…}, not %s", what, kindName(v))
	}
	seen := make(map[string]*hujson.Value, len(obj.Members))
	ms := make([]member, 0, len(obj.Members))
	for i := range obj.Members {
		m := &obj.Members[i]
		name := m.Name.Value.(hujson.Literal).String()
		low := strings.ToLower(name)
		if first, dup := seen[low]; dup {
			return nil, d.errorf(&m.Name, "%s: %q is given twice (first on line %d)", what, name, d.line(first))
		}
		seen[low] = &m.Name
		ms = append(ms, member{name, &m.Name, &m.Value})
	}
	return ms, nil
}

// fields reads an object whose keys are known, matched ignoring case (as
// Tailscale's decoder does), by the known spelling. It refuses any other
// key, saying why with hint.
func (d *decoder) fields(v *hujson.Value, what string, known []string, hint string) (map[string]*hujson.Value, error) {
	ms, err := d.object(v, what)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*hujson.Value, len(ms))
	for _, m := range ms {
		k := knownKey(m.name, known)
		if k == "" {
			return nil, d.errorf(m.key, "%s: %q is not supported: %s", what, m.name, hint)
		}
		out[k] = m.value
	}
	return out, nil
}

func knownKey(name string, known []string) string {
	for _, k := range known {
		if strings.EqualFold(name, k) {
			return k
		}
	}
	return ""
}

// str is v's string.
func (d *decoder) str(v *hujson.Value, what string) (string, error) {
	lit, ok := v.Value.(hujson.Literal)
	if !ok || lit.Kind() != '"' {
		return "", d.errorf(v, "%s must be a string, not %s", what, kindName(v))
	}
	return lit.String(), nil
}

// item is one string of a list, with where it is.
type item struct {
	s string
	v *hujson.Value
}

// array is v's elements.
func (d *decoder) array(v *hujson.Value, what string) ([]*hujson.Value, error) {
	arr, ok := v.Value.(*hujson.Array)
	if !ok {
		return nil, d.errorf(v, "%s must be a list […], not %s", what, kindName(v))
	}
	out := make([]*hujson.Value, len(arr.Elements))
	for i := range arr.Elements {
		out[i] = &arr.Elements[i]
	}
	return out, nil
}

// strList is v's strings.
func (d *decoder) strList(v *hujson.Value, what string) ([]item, error) {
	elems, err := d.array(v, what)
	if err != nil {
		return nil, err
	}
	out := make([]item, len(elems))
	for i, e := range elems {
		s, err := d.str(e, fmt.Sprintf("%s[%d]", what, i))
		if err != nil {
			return nil, err
		}
		out[i] = item{s, e}
	}
	return out, nil
}

func kindName(v *hujson.Value) string {
	switch v.Value.Kind() {
	case 'n':
		return "null"
	case 't', 'f':
		return "a boolean"
	case '"':
		return "a string"
	case '0':
		return "a number"
	case '{':
		return "an object"
	case '[':
		return "a list"
	}
	return "that"
}
