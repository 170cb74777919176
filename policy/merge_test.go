package policy

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/wire-mesh/wire/filter"
)

// allows reads Allows as filter.ParseAllow does.
func allows(t testing.TB, ss ...string) []filter.Allow {
	t.Helper()
	var out []filter.Allow
	for _, s := range ss {
		a, err := filter.ParseAllow(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, a)
	}
	return out
}

func TestMerge(t *testing.T) {
	tests := []struct {
		name     string
		in, want []string
	}{
		{"none", nil, nil},
		{"one", []string{"tcp:22"}, []string{"tcp:22"}},
		{"adjacent", []string{"tcp:23", "tcp:22"}, []string{"tcp:22-23"}},
		{"overlap", []string{"udp:10-20", "udp:15-30", "udp:31", "udp:40"}, []string{"udp:10-31", "udp:40"}},
		{"duplicates", []string{"tcp:22", "tcp:22", "icmp", "icmp"}, []string{"icmp", "tcp:22"}},
		{"sorted by proto", []string{"udp:53", "tcp:22", "*:443", "47:*"}, []string{"*:443", "tcp:22", "udp:53", "47:*"}},
		{"any absorbs tcp", []string{"tcp:22", "*:1-100"}, []string{"*:1-100"}},
		{"any trims tcp", []string{"tcp:50-200", "*:1-100", "udp:90-110"}, []string{"*:1-100", "tcp:101-200", "udp:101-110"}},
		{"any splits tcp", []string{"tcp:*", "*:22", "*:80"}, []string{"*:22", "*:80", "tcp:0-21", "tcp:23-79", "tcp:81-65535"}},
		{"any absorbs icmp", []string{"icmp", "*:22"}, []string{"*:22"}},
		{"any leaves other protos", []string{"47:22", "*:*"}, []string{"*:*", "47:22"}},
		{"top port", []string{"tcp:65535", "tcp:65534", "*:65535"}, []string{"*:65535", "tcp:65534"}},
		{"everything", []string{"*:*", "tcp:*", "udp:1", "icmp"}, []string{"*:*"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := merge(allows(t, tt.in...))
			if diff := cmp.Diff(allows(t, tt.want...), got); diff != "" {
				t.Errorf("merge(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}
