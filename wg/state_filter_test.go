package wg

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/wire-mesh/wire/filter"
)

// TestSetFilter follows the filter through a series of Sets: what the
// engine is told to enforce at each step.
func TestSetFilter(t *testing.T) {
	var enforced []filter.Rules
	var fail error
	r := newRecorder()
	r.enforce = func(rules filter.Rules) error {
		enforced = append(enforced, rules)
		return fail
	}
	admin := netip.MustParseAddr("10.99.0.2")
	ssh := filter.Rules{admin: {{Proto: filter.TCP, Ports: filter.PortRange{First: 22, Last: 22}}}}
	reused := filter.Rules{admin: {{Proto: filter.TCP, Ports: filter.PortRange{First: 22, Last: 22}}}}
	steps := []struct {
		name   string
		filter filter.Rules
		edit   func() // before the Set
		fail   error
		want   []filter.Rules // nil: nothing enforced
	}{
		{name: "first, with no filter: clears what a crashed run left", want: []filter.Rules{nil}},
		{name: "no filter again"},
		{name: "rules", filter: ssh, want: []filter.Rules{ssh}},
		{name: "the same rules in another map", filter: reused},
		{name: "the caller changes its map", filter: reused, edit: func() { reused[admin][0].Ports.Last = 23 },
			want: []filter.Rules{{admin: {{Proto: filter.TCP, Ports: filter.PortRange{First: 22, Last: 23}}}}}},
		{name: "empty rules are not no filter", filter: filter.Rules{}, want: []filter.Rules{{}}},
		{name: "failing", filter: ssh, fail: errFake, want: []filter.Rules{ssh}},
		{name: "tried again after a failure", filter: ssh, want: []filter.Rules{ssh}},
		{name: "no filter", want: []filter.Rules{nil}},
	}
	for _, s := range steps {
		if s.edit != nil {
			s.edit()
		}
		enforced, fail = nil, s.fail
		cfg := clone(base)
		cfg.Filter = s.filter
		applied := len(r.applied)
		if err := r.set(cfg); !errors.Is(err, s.fail) {
			t.Errorf("%s: Set = %v, want %v", s.name, err, s.fail)
		}
		if d := cmp.Diff(s.want, enforced, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
			t.Errorf("%s: enforced (-want +got):\n%s", s.name, d)
		}
		if s.fail != nil && len(r.applied) != applied {
			t.Errorf("%s: peers configured although the filter failed", s.name)
		}
	}
}
