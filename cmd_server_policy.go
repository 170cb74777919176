package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/wire-mesh/wire/filter"
	"github.com/wire-mesh/wire/internal/cli"
	"github.com/wire-mesh/wire/policy"
	"github.com/wire-mesh/wire/server"
)

func policyCommand() *cli.Command {
	flags := withState()
	return &cli.Command{
		Name:  "policy",
		Usage: "manage the mesh's policy: who may reach whom, on which ports",
		Description: "The policy is a subset of Tailscale's policy file (HuJSON: groups, tagOwners, hosts,\n" +
			"acls, tests). Without one, every node may reach every other on every port.",
		Subcommands: []*cli.Command{
			{Name: "set", Usage: "check a policy file (- for stdin) and put it in force", ArgsUsage: "FILE", Flags: flags, Action: setPolicy},
			{Name: "get", Usage: "print the policy in force", Flags: flags, Action: noArgs(getPolicy)},
			{Name: "remove", Usage: "remove the policy: every node may reach every other again", Flags: flags, Action: noArgs(removePolicy)},
			{
				Name: "test", Usage: "say whether SRC may reach DST:PORT, and by which rule", ArgsUsage: "SRC DST:PORT",
				Flags:  append(flags, &cli.StringFlag{Name: "proto", Usage: "tcp, udp, icmp or a number", Value: "tcp"}),
				Action: testPolicy,
			},
		},
	}
}

func setPolicy(c *cli.Context) error {
	file, err := oneArg(c, "wire server policy set")
	if err != nil {
		return err
	}
	text, err := readPolicyFile(file)
	if err != nil {
		return err
	}
	if file == "-" {
		file = "stdin"
	}
	p, err := policy.Parse(text)
	if err != nil {
		return fmt.Errorf("%s: %w; the policy in force is unchanged", file, err)
	}
	store, err := openExistingStore(c)
	if err != nil {
		return err
	}
	defer store.Close()
	if err := store.SetPolicy(c.Context, string(text)); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "policy set from %s: a running server puts it in force within a second\n", file)
	return warnUndeclaredTags(c.Context, c.App.ErrWriter, store, p)
}

// maxPolicySize bounds a policy file: a mesh's rules, not a data set.
const maxPolicySize = 1 << 20

func readPolicyFile(file string) ([]byte, error) {
	var text []byte
	var err error
	if file == "-" {
		text, err = io.ReadAll(io.LimitReader(os.Stdin, maxPolicySize+1))
	} else {
		text, err = os.ReadFile(file)
	}
	switch {
	case err != nil:
		return nil, err
	case len(text) > maxPolicySize:
		return nil, fmt.Errorf("%s: %d bytes or more; a policy may have at most %d", file, len(text), maxPolicySize)
	case len(text) == 0:
		return nil, fmt.Errorf("%s is empty: to let every node reach every other, use wire server policy remove", file)
	}
	return text, nil
}

// warnUndeclaredTags says which nodes carry tags that p does not declare:
// no rule can name them.
func warnUndeclaredTags(ctx context.Context, w io.Writer, store *server.Store, p *policy.Policy) error {
	nodes, err := store.List(ctx, time.Now())
	if err != nil {
		return err
	}
	for _, n := range nodes {
		for _, t := range n.Tags {
			if !p.HasTag(t) {
				fmt.Fprintf(w, "warning: node %s has %s, which the policy does not declare in tagOwners\n", n.NodeName, t)
			}
		}
	}
	return nil
}

func getPolicy(c *cli.Context) error {
	store, err := openExistingStore(c)
	if err != nil {
		return err
	}
	defer store.Close()
	text, err := store.Policy(c.Context)
	if err != nil {
		return err
	}
	if text == "" {
		fmt.Fprintln(c.App.ErrWriter, "no policy: every node may reach every other on every port")
		return nil
	}
	_, err = io.WriteString(c.App.Writer, text)
	return err
}

func removePolicy(c *cli.Context) error {
	store, err := openExistingStore(c)
	if err != nil {
		return err
	}
	defer store.Close()
	if err := store.SetPolicy(c.Context, ""); err != nil {
		return err
	}
	fmt.Fprintln(c.App.Writer, "policy removed: every node may reach every other on every port")
	return nil
}

func testPolicy(c *cli.Context) error {
	if c.NArg() != 2 {
		return errors.New("usage: wire server policy test [--proto P] SRC DST:PORT (SRC and DST are node names or VPN addresses)")
	}
	proto, err := filter.ParseProto(c.String("proto"))
	if err != nil {
		return fmt.Errorf("--proto: %w", err)
	}
	dst, port, err := splitDstPort(c.Arg(1), proto)
	if err != nil {
		return err
	}
	store, err := openExistingStore(c)
	if err != nil {
		return err
	}
	defer store.Close()
	d, err := store.ExplainPolicy(c.Context, c.Arg(0), dst, proto, port)
	if errors.Is(err, server.ErrNotFound) {
		return fmt.Errorf("%w (see wire server nodes)", err)
	} else if err != nil {
		return err
	}
	if !d.Accept {
		return fmt.Errorf("deny: %s", d.Reason)
	}
	fmt.Fprintf(c.App.Writer, "accept: %s\n", d.Reason)
	return nil
}

// splitDstPort reads DST:PORT; ICMP needs no port.
func splitDstPort(s string, proto filter.Proto) (string, uint16, error) {
	host, p, err := net.SplitHostPort(s)
	if err != nil && proto == filter.ICMP {
		return s, 0, nil
	}
	if err != nil {
		return "", 0, fmt.Errorf("%q: want DST:PORT, such as n2:22", s)
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("%q: port %q is not a number from 0 to 65535", s, p)
	}
	return host, uint16(port), nil
}
