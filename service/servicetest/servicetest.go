// Package servicetest checks what package service writes, as the service
// managers would read it: units with systemd-analyze, property lists with
// a parser of the plist types launchd uses.
package servicetest

import (
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Verify runs `systemd-analyze verify` on unit, saved as name, and fails
// the test if it prints anything at all: it exits 0 after mere warnings,
// such as an unknown key or an unresolvable specifier. Without
// systemd-analyze it logs so and returns false; under CI=true it fails.
func Verify(t testing.TB, name, unit string) bool {
	t.Helper()
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no systemd-analyze to verify %s with (CI=true: install the systemd package)", name)
		}
		t.Logf("no systemd-analyze: %s is not verified", name)
		return false
	}
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-analyze", "verify", path).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s\nof:\n%s", name, err, out, unit)
	}
	return true
}

// Plist parses a property list document, failing the test if it is not
// one; see ParsePlist.
func Plist(t testing.TB, doc string) any {
	t.Helper()
	v, err := ParsePlist(doc)
	if err != nil {
		t.Fatalf("not a property list: %v\n%s", err, doc)
	}
	return v
}

// ParsePlist parses a property list of the types launchd's daemons use:
// a dict becomes a map[string]any, an array []any, a string a string,
// true and false a bool, an integer an int64. Anything else, malformed
// XML, a duplicate key, or a document that is not one <plist> holding
// one value, is an error.
func ParsePlist(doc string) (any, error) {
	d := xml.NewDecoder(strings.NewReader(doc))
	tok, err := next(d)
	if err != nil {
		return nil, err
	}
	if start, ok := tok.(xml.StartElement); !ok || start.Name.Local != "plist" {
		return nil, fmt.Errorf("the document is not a <plist>: %v", tok)
	}
	if tok, err = next(d); err != nil {
		return nil, err
	}
	v, err := value(d, tok)
	if err != nil {
		return nil, err
	}
	if tok, err := next(d); err != nil || tok != (xml.EndElement{Name: xml.Name{Local: "plist"}}) {
		return nil, fmt.Errorf("want </plist> after one value, got %v %v", tok, err)
	}
	if tok, err := next(d); err != io.EOF {
		return nil, fmt.Errorf("content after </plist>: %v %v", tok, err)
	}
	return v, nil
}

// value reads the value that tok starts.
func value(d *xml.Decoder, tok xml.Token) (any, error) {
	start, ok := tok.(xml.StartElement)
	if !ok {
		return nil, fmt.Errorf("want a value, got %v", tok)
	}
	switch start.Name.Local {
	case "string":
		return text(d)
	case "integer":
		s, err := text(d)
		if err != nil {
			return nil, err
		}
		return strconv.ParseInt(s, 10, 64)
	case "true", "false":
		s, err := text(d)
		if err == nil && s != "" {
			err = fmt.Errorf("<%s/> with content %q", start.Name.Local, s)
		}
		return start.Name.Local == "true", err
	case "array":
		return array(d)
	case "dict":
		return dict(d)
	}
	return nil, fmt.Errorf("unknown plist element <%s>", start.Name.Local)
}

func array(d *xml.Decoder) ([]any, error) {
	a := []any{}
	for {
		tok, err := next(d)
		if err != nil {
			return nil, err
		}
		if _, end := tok.(xml.EndElement); end {
			return a, nil
		}
		v, err := value(d, tok)
		if err != nil {
			return nil, err
		}
		a = append(a, v)
	}
}

func dict(d *xml.Decoder) (map[string]any, error) {
	m := map[string]any{}
	for {
		tok, err := next(d)
		if err != nil {
			return nil, err
		}
		if _, end := tok.(xml.EndElement); end {
			return m, nil
		}
		if start, ok := tok.(xml.StartElement); !ok || start.Name.Local != "key" {
			return nil, fmt.Errorf("want a <key> in <dict>, got %v", tok)
		}
		k, err := text(d)
		if err != nil {
			return nil, err
		}
		if _, dup := m[k]; dup {
			return nil, fmt.Errorf("duplicate key %q", k)
		}
		if tok, err = next(d); err != nil {
			return nil, err
		}
		if m[k], err = value(d, tok); err != nil {
			return nil, fmt.Errorf("key %q: %w", k, err)
		}
	}
}

// text reads an element's character data up to its end.
func text(d *xml.Decoder) (string, error) {
	var b strings.Builder
	for {
		tok, err := d.Token()
		if err != nil {
			return "", err
		}
		switch tok := tok.(type) {
		case xml.CharData:
			b.Write(tok)
		case xml.EndElement:
			return b.String(), nil
		case xml.StartElement:
			return "", fmt.Errorf("<%s> inside a text element", tok.Name.Local)
		}
	}
}

// next is the next start or end of an element, skipping the whitespace,
// comments and declarations between elements.
func next(d *xml.Decoder) (xml.Token, error) {
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, err
		}
		switch tok := tok.(type) {
		case xml.CharData:
			if strings.TrimSpace(string(tok)) != "" {
				return nil, fmt.Errorf("text %q between elements", tok)
			}
		case xml.StartElement, xml.EndElement:
			return xml.CopyToken(tok), nil
		}
	}
}
