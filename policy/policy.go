// Package policy reads wire's policy file, a subset of Tailscale's policy
// format in HuJSON, and says what traffic each node may send to each other.
//
// A policy has groups (of node names), tagOwners (which declare the tags),
// hosts (names for addresses and CIDRs), acls (the rules, all of which
// accept: what no rule accepts is denied) and tests (checked by Parse).
// Where Tailscale has users, wire has node names. Names, the policy's keys
// and host names are read ignoring case; tags and groups are written in
// lower case. A host hides a node of the same name from the rules.
package policy

import (
	"bytes"
	"net/netip"
	"strings"

	"github.com/tailscale/hujson"
)

// Policy is a parsed and validated policy. It is immutable and safe for
// concurrent use.
type Policy struct {
	src    []byte
	groups map[string]map[string]bool // group:NAME to its member names
	tags   map[string]bool            // declared in tagOwners
	hosts  map[string]netip.Prefix    // by lower-case name
	rules  []rule
}

// Node is a node as the policy sees it: its name, VPN address and tags.
type Node struct {
	Name string
	IP   netip.Addr
	Tags []string
}

// sections are the top-level keys wire reads, in the order it reads them:
// each may use what the ones before it define.
var sections = []string{"groups", "tagOwners", "hosts", "acls", "tests"}

const unsupportedSection = "wire's policy has groups, tagOwners, hosts, acls and tests; " +
	"the rest of Tailscale's format (grants, ssh, nodeAttrs, autoApprovers, …) " +
	"is not enforced by wire, so it is refused rather than ignored"

// Parse reads and validates a policy, then runs its tests. An empty text
// (or {}) is a policy that accepts nothing. Its errors are *Error.
func Parse(b []byte) (*Policy, error) {
	p := &Policy{src: bytes.Clone(b)}
	d := &decoder{src: p.src}
	root, err := d.parse()
	switch {
	case err != nil:
		return nil, err
	case root == nil:
		return p, nil // only whitespace and comments
	}
	fields, err := d.fields(root, "the policy", sections, unsupportedSection)
	if err != nil {
		return nil, err
	}
	steps := []func(*decoder, *hujson.Value) error{
		p.readGroups, p.readTagOwners, p.readHosts, p.readACLs, p.runTests,
	}
	for i, step := range steps {
		if v := fields[sections[i]]; v != nil {
			if err := step(d, v); err != nil {
				return nil, err
			}
		}
	}
	return p, nil
}

// Source is the policy's text as it was given to Parse.
func (p *Policy) Source() []byte { return bytes.Clone(p.src) }

// HasTag says whether tag is declared in the policy's tagOwners. Case is
// ignored, as it is in the tags of a Node.
func (p *Policy) HasTag(tag string) bool { return p.tags[strings.ToLower(tag)] }
