package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/wire-mesh/wire/internal/cli"
	"github.com/wire-mesh/wire/server"
)

func nodesCommand() *cli.Command {
	return &cli.Command{
		Name:   "nodes",
		Usage:  "list the enrolled nodes",
		Flags:  withState(&cli.BoolFlag{Name: "json", Usage: "print JSON"}),
		Action: noArgs(listNodes),
	}
}

func listNodes(c *cli.Context) error {
	store, err := openExistingStore(c)
	if err != nil {
		return err
	}
	defer store.Close()
	nodes, err := store.List(c.Context, time.Now())
	if err != nil {
		return err
	}
	if c.Bool("json") {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		return enc.Encode(nodes)
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tVPN IP\tPUBLIC\tSTATUS\tLAST SEEN\tTAGS\tEXPIRES")
	for _, n := range nodes {
		expires := n.ExpiresAt
		if expires == "" {
			expires = "never"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", shown(n.NodeName), n.VPNIP, shown(endpoint(n.PublicIP, n.NATPort)), n.Status, ago(n.LastSeenAgo), tagColumn(n.Tags), expires)
	}
	return tw.Flush()
}

// openExistingStore opens the store without creating one: listing or
// removing nodes of a server that never ran is a mistake in --state-dir.
func openExistingStore(c *cli.Context) (*server.Store, error) {
	if store := c.String("store"); store != "" {
		return server.OpenStoreAt(c.Context, "", store)
	}
	dir, err := serverStateDir(c)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, server.StoreFile)); errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no wire server state in %s: has the server run there? (pass --state-dir, or --store)", dir)
	}
	return server.OpenStore(dir)
}

func endpoint(ip string, port int) string {
	if ip == "" {
		return "-"
	}
	if port == 0 {
		return ip
	}
	return net.JoinHostPort(ip, strconv.Itoa(port))
}

func ago(secs int64) string {
	d := time.Duration(secs) * time.Second
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", secs)
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

func nodeCommand() *cli.Command {
	return &cli.Command{
		Name:  "node",
		Usage: "manage one node",
		Subcommands: []*cli.Command{{
			Name:      "remove",
			Usage:     "remove a node: its key stops working and its address is freed",
			ArgsUsage: "NAME",
			Flags:     withState(),
			Action:    removeNode,
		}, {
			Name:      "rename",
			Usage:     "rename a node: it and its peers see the new name within a second",
			ArgsUsage: "NAME NEW-NAME",
			Flags:     withState(),
			Action:    renameNode,
		}, {
			Name:      "expire",
			Usage:     "expire a node's enrolment now: it leaves the mesh until it joins again with a key",
			ArgsUsage: "NAME",
			Flags:     withState(),
			Action:    expireNode,
		}, {
			Name:      "tag",
			Usage:     "replace a node's tags, for the policy (in force within a second)",
			ArgsUsage: "NAME TAG...",
			Flags:     withState(&cli.BoolFlag{Name: "clear", Usage: "remove all of the node's tags"}),
			Action:    tagNode,
		}},
	}
}

func removeNode(c *cli.Context) error {
	removed, err := onNode(c, "wire server node remove", func(store *server.Store, name string) (string, error) {
		return store.RemoveNode(c.Context, name)
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "removed %s\n", removed)
	return nil
}

// onNode runs an admin command on the one node its argument names: f
// changes it in the store and returns its name as stored.
func onNode(c *cli.Context, cmd string, f func(store *server.Store, name string) (string, error)) (string, error) {
	name, err := oneArg(c, cmd)
	if err != nil {
		return "", err
	}
	store, err := openExistingStore(c)
	if err != nil {
		return "", err
	}
	defer store.Close()
	stored, err := f(store, name)
	if errors.Is(err, server.ErrNotFound) {
		return "", fmt.Errorf("no node named %q (see wire server nodes)", name)
	}
	return stored, err
}

func renameNode(c *cli.Context) error {
	if c.NArg() != 2 {
		return errors.New("usage: wire server node rename [options] NAME NEW-NAME")
	}
	name, to := c.Arg(0), c.Arg(1)
	store, err := openExistingStore(c)
	if err != nil {
		return err
	}
	defer store.Close()
	was, err := store.RenameNode(c.Context, name, to)
	var conflict *server.ErrConflict
	switch {
	case errors.Is(err, server.ErrNotFound):
		return fmt.Errorf("no node named %q (see wire server nodes)", name)
	case errors.As(err, &conflict):
		return fmt.Errorf("another node is named %q (names are unique in any case)", to)
	case err != nil:
		return fmt.Errorf("renaming %s: %w", name, err)
	}
	fmt.Fprintf(c.App.Writer, "renamed %s to %s\n", was, to)
	return nil
}

func expireNode(c *cli.Context) error {
	stored, err := onNode(c, "wire server node expire", func(store *server.Store, name string) (string, error) {
		return store.ExpireNode(c.Context, name, time.Now())
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "expired %s: it is out of the mesh until it authenticates again (on the node: sudo wire up --join KEY)\n", stored)
	return nil
}

func tagNode(c *cli.Context) error {
	if c.NArg() == 0 {
		return errors.New("usage: wire server node tag NAME TAG... (or --clear NAME)")
	}
	name, tags := c.Arg(0), c.Args()[1:]
	switch {
	case len(tags) == 0 && !c.Bool("clear"):
		return fmt.Errorf("no tags for %s: name them (tag:server), or pass --clear to remove all", name)
	case len(tags) > 0 && c.Bool("clear"):
		return errors.New("--clear takes no tags")
	}
	store, err := openExistingStore(c)
	if err != nil {
		return err
	}
	defer store.Close()
	tags, err = store.DeclaredTags(c.Context, tags)
	if err != nil {
		return err
	}
	stored, err := store.SetNodeTags(c.Context, name, tags)
	if errors.Is(err, server.ErrNotFound) {
		return fmt.Errorf("no node named %q (see wire server nodes)", name)
	} else if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "%s: %s\n", stored, tagList(tags))
	return nil
}

func tagList(tags []string) string {
	if len(tags) == 0 {
		return "no tags"
	}
	return strings.Join(tags, ",")
}

func tagColumn(tags []string) string {
	if len(tags) == 0 {
		return "-"
	}
	return strings.Join(tags, ",")
}
