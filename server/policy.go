package server

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/wire-mesh/wire/filter"
	"github.com/wire-mesh/wire/policy"
)

// ErrOpenPolicy refuses a policy in --open mode, whose nodes are not
// authenticated: the server cannot tell who asks, so cannot enforce it.
var ErrOpenPolicy = errors.New("a policy needs authenticated nodes, and --open has none: remove it (wire server policy remove) or run without --open")

// loadPolicy makes the store's policy the mesh's, if it changed. A policy
// that does not parse (written by another version of wire) is an error,
// and the policy in force stays.
func (s *Server) loadPolicy(ctx context.Context) error {
	text, err := s.store.Policy(ctx)
	if err != nil {
		return fmt.Errorf("reading the policy: %w", err)
	}
	cur := s.reg.currentPolicy()
	switch {
	case cur == nil && text == "":
		return nil
	case cur != nil && string(cur.Source()) == text:
		return nil
	case text == "":
		s.reg.setPolicy(nil)
		s.log.Warn("the mesh has no policy now: every node may reach every other")
		return nil
	case s.cfg.Open:
		return ErrOpenPolicy
	}
	p, err := policy.Parse([]byte(text))
	if err != nil {
		return fmt.Errorf("the stored policy is not valid (%w): set a valid one with wire server policy set", err)
	}
	s.reg.setPolicy(p)
	s.log.Info("policy in force", "bytes", len(text))
	return nil
}

// ParsedPolicy is the stored policy, nil if there is none.
func (s *Store) ParsedPolicy(ctx context.Context) (*policy.Policy, error) {
	text, err := s.Policy(ctx)
	if err != nil || text == "" {
		return nil, err
	}
	p, err := policy.Parse([]byte(text))
	if err != nil {
		return nil, fmt.Errorf("the stored policy is not valid: %w", err)
	}
	return p, nil
}

// PolicyNode is the node with the given name (in any case) or VPN address
// as the policy sees it.
func (s *Store) PolicyNode(ctx context.Context, nameOrIP string) (policy.Node, error) {
	recs, err := s.Nodes(ctx)
	if err != nil {
		return policy.Node{}, err
	}
	for _, r := range recs {
		if strings.EqualFold(r.NodeName, nameOrIP) || r.VPNIP == nameOrIP {
			ip, err := netip.ParseAddr(r.VPNIP)
			if err != nil {
				return policy.Node{}, fmt.Errorf("node %s: vpn_ip %q: %w", r.NodeName, r.VPNIP, err)
			}
			return policy.Node{Name: r.NodeName, IP: ip, Tags: r.Tags}, nil
		}
	}
	return policy.Node{}, fmt.Errorf("node %q: %w", nameOrIP, ErrNotFound)
}

// ExplainPolicy says whether src may send proto to dst's port under the
// store's policy, and why.
func (s *Store) ExplainPolicy(ctx context.Context, src, dst string, proto filter.Proto, port uint16) (policy.Decision, error) {
	p, err := s.ParsedPolicy(ctx)
	if err != nil {
		return policy.Decision{}, err
	}
	if p == nil {
		return policy.Decision{Accept: true, Rule: -1, Reason: "the mesh has no policy: every node may reach every other"}, nil
	}
	from, err := s.PolicyNode(ctx, src)
	if err != nil {
		return policy.Decision{}, err
	}
	to, err := s.PolicyNode(ctx, dst)
	if err != nil {
		return policy.Decision{}, err
	}
	return p.Explain(from, to, proto, port), nil
}
