package main

import "testing"

func TestStateDirFor(t *testing.T) {
	none := func(string) bool { return false }
	mine := func(dir string) bool { return dir == "/home/u/.wire" }
	for _, tt := range []struct {
		name      string
		flag      string
		euid      int
		reading   bool
		hasSocket func(string) bool
		want      string
	}{
		{"the flag", "/srv/n1", 1000, false, none, "/srv/n1"},
		{"root", "", 0, false, none, "/etc/wire"},
		{"a user joining", "", 1000, false, none, "/home/u/.wire"},
		{"a user's wire status, no daemon of theirs", "", 1000, true, none, "/etc/wire"},
		{"a user's wire status, their own daemon", "", 1000, true, mine, "/home/u/.wire"},
	} {
		if got := stateDirFor(tt.flag, tt.euid, "/home/u", tt.reading, tt.hasSocket); got != tt.want {
			t.Errorf("%s: %s, want %s", tt.name, got, tt.want)
		}
	}
}
