package main

import (
	"testing"

	"golang.org/x/time/rate"
)

func TestParseBitRate(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want rate.Limit
	}{
		{"2G", 2e9},
		{"500M", 5e8},
		{"1.5G", 1.5e9},
		{"64k", 64e3},
		{"1T", 1e12},
		{"1000000", 1e6},
		{"unlimited", rate.Inf},
	} {
		if got, err := parseBitRate(tt.in); err != nil || got != tt.want {
			t.Errorf("parseBitRate(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "0", "-1G", "G", "2g", "2Gbit", "fast", "Inf", "NaN", "1e999", "2 G"} {
		if got, err := parseBitRate(bad); err == nil {
			t.Errorf("parseBitRate(%q) = %v, want an error", bad, got)
		}
	}
}
