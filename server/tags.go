package server

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Tags name what a node is (tag:server, tag:ci), for the policy's rules.
// The admin gives them: through the join key a node enrols with, or with
// `wire server node tag`.

var tagSyntax = regexp.MustCompile(`^tag:[a-z][a-z0-9-]{0,62}$`)

// ParseTags checks tags and returns them sorted, without duplicates.
func ParseTags(tags []string) ([]string, error) {
	out := make([]string, 0, len(tags))
	for _, t := range tags {
		if !tagSyntax.MatchString(t) {
			return nil, fmt.Errorf("tag %q: want tag:NAME, NAME of lowercase letters, digits and dashes, starting with a letter", t)
		}
		out = append(out, t)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// DeclaredTags checks tags' syntax, and that the policy in force (if
// any) declares them: a tag no rule can name is a typo. It returns them
// as ParseTags does.
func (s *Store) DeclaredTags(ctx context.Context, tags []string) ([]string, error) {
	tags, err := ParseTags(tags)
	if err != nil || len(tags) == 0 {
		return tags, err
	}
	p, err := s.ParsedPolicy(ctx)
	if err != nil || p == nil {
		return tags, err
	}
	for _, t := range tags {
		if !p.HasTag(t) {
			return nil, fmt.Errorf("%s is not declared in the policy's tagOwners: add it there first (wire server policy get)", t)
		}
	}
	return tags, nil
}

func joinTags(tags []string) string { return strings.Join(tags, " ") }

func splitTags(s string) []string { return strings.Fields(s) }

// SetNodeTags replaces the tags of the node with the given name (in any
// case) and returns its name as stored.
func (s *Store) SetNodeTags(ctx context.Context, name string, tags []string) (string, error) {
	var stored string
	err := s.write(ctx, func(b bound, rev int64) error {
		err := b.row(ctx, `UPDATE nodes SET tags = ?, revision = ? WHERE lower(node_name) = lower(?) RETURNING node_name`,
			joinTags(tags), rev, name).Scan(&stored)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("node %q: %w", name, ErrNotFound)
		}
		return err
	})
	return stored, err
}

// Policy returns the policy's text as it was set, "" if there is none.
func (s *Store) Policy(ctx context.Context) (string, error) { return s.Meta(ctx, "policy") }

// SetPolicy stores the policy's text; "" removes the policy. The caller
// has validated it.
func (s *Store) SetPolicy(ctx context.Context, text string) error {
	if text != "" {
		return s.SetMeta(ctx, "policy", text)
	}
	return s.write(ctx, func(b bound, _ int64) error {
		_, err := b.exec(ctx, `DELETE FROM meta WHERE key = 'policy'`)
		return err
	})
}
