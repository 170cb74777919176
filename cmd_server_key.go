package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/wire-mesh/wire/api"
	"github.com/wire-mesh/wire/internal/cli"
	"github.com/wire-mesh/wire/server"
)

func keyCommand() *cli.Command {
	return &cli.Command{
		Name:  "key",
		Usage: "manage join keys",
		Subcommands: []*cli.Command{{
			Name:  "create",
			Usage: "create a join key; it is printed once, as the last line",
			Flags: []cli.Flag{
				stateDirFlag(),
				storeFlag(),
				&cli.BoolFlag{Name: "reusable", Usage: "admit any number of nodes until it expires, not just one"},
				&cli.StringFlag{Name: "ttl", Usage: "how long the key is valid: 30m, 24h, 7d (1m to 365d)", Value: "24h"},
				&cli.StringSliceFlag{Name: "tag", Usage: "give the nodes it enrols this tag, for the policy: tag:server (repeatable)"},
				&cli.StringFlag{Name: "expire", Usage: "the nodes it enrols must authenticate again after this long: 90d, 720h (default: never)"},
			},
			Action: noArgs(createKey),
		}, {
			Name:   "list",
			Usage:  "list the join keys (never their secrets) and what became of them",
			Flags:  withState(&cli.BoolFlag{Name: "json", Usage: "print JSON"}),
			Action: noArgs(listKeys),
		}, {
			Name:      "revoke",
			Usage:     "revoke a join key: it admits no more nodes (those it admitted stay)",
			ArgsUsage: "ID",
			Flags:     withState(),
			Action:    revokeKey,
		}},
	}
}

// parseTTL reads --ttl: a Go duration (90m, 24h) or whole days (7d), from
// minTTL to maxTTL.
func parseTTL(s string) (time.Duration, error) { return parseSpan("ttl", s, maxTTL) }

// parseSpan reads the duration flag named flag: a Go duration (90m, 24h)
// or whole days (7d), from a minute to most (a whole number of days).
func parseSpan(flag, s string, most time.Duration) (time.Duration, error) {
	var d time.Duration
	var err error
	if days, ok := strings.CutSuffix(s, "d"); ok {
		var n int
		n, err = strconv.Atoi(days)
		d = time.Duration(n) * 24 * time.Hour
		if n > 100*365 {
			d = most + 1
		}
	} else {
		d, err = time.ParseDuration(s)
	}
	if err != nil {
		return 0, fmt.Errorf("--%s %q: want a duration such as 30m, 24h or 7d", flag, s)
	}
	if d < time.Minute || d > most {
		return 0, fmt.Errorf("--%s %s: want a duration from 1m to %dd", flag, s, most/(24*time.Hour))
	}
	return d, nil
}

// A key lives long enough to be copied to a node, and is never forever
// in all but name; the nodes it admits may be given up to ten years.
const (
	maxTTL    = 365 * 24 * time.Hour
	maxExpire = 10 * 365 * 24 * time.Hour
)

func createKey(c *cli.Context) error {
	ttl, err := parseTTL(c.String("ttl"))
	if err != nil {
		return err
	}
	var nodeTTL time.Duration
	if c.IsSet("expire") {
		if nodeTTL, err = parseSpan("expire", c.String("expire"), maxExpire); err != nil {
			return err
		}
	}
	store, pin, err := openKeyStore(c)
	if err != nil {
		return err
	}
	defer store.Close()
	tags, err := store.DeclaredTags(c.Context, c.StringSlice("tag"))
	if err != nil {
		return err
	}
	expires := time.Now().Add(ttl).UTC().Truncate(time.Second)
	key, err := store.CreateKey(c.Context, pin, server.KeyOptions{Reusable: c.Bool("reusable"), Expires: expires, Tags: tags, NodeTTL: nodeTTL})
	if err != nil {
		return err
	}
	kind := "single-use"
	if c.Bool("reusable") {
		kind = "reusable"
	}
	if len(tags) > 0 {
		kind += " " + tagList(tags)
	}
	nodes := ""
	if nodeTTL > 0 {
		nodes = " (the nodes it enrols expire after " + span(nodeTTL) + ")"
	}
	fmt.Fprintf(c.App.Writer, "%s join key %s%s, valid until %s (shown only now):\n%s\n", kind, key.ID, nodes, expires.Format(time.RFC3339), key)
	return nil
}

// keyListing is one key as `wire server key list --json` prints it.
type keyListing struct {
	server.KeyInfo
	State string `json:"state"`
}

func listKeys(c *cli.Context) error {
	store, err := openExistingStore(c)
	if err != nil {
		return err
	}
	defer store.Close()
	keys, err := store.Keys(c.Context)
	if err != nil {
		return err
	}
	now := time.Now()
	if c.Bool("json") {
		out := make([]keyListing, len(keys))
		for i, k := range keys {
			out[i] = keyListing{k, k.State(now)}
		}
		return printJSON(c.App.Writer, out)
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tKIND\tSTATE\tUSES\tCREATED\tEXPIRES\tNODES EXPIRE\tTAGS")
	for _, k := range keys {
		kind := "single-use"
		if k.Reusable {
			kind = "reusable"
		}
		nodes := "never"
		if k.NodeTTL > 0 {
			nodes = "after " + span(time.Duration(k.NodeTTL)*time.Second)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", k.ID, kind, k.State(now), k.Uses,
			k.Created.Format(time.RFC3339), k.Expires.Format(time.RFC3339), nodes, tagColumn(k.Tags))
	}
	return tw.Flush()
}

func revokeKey(c *cli.Context) error {
	id, err := oneArg(c, "wire server key revoke")
	if err != nil {
		return err
	}
	if k, err := api.ParseJoinKey(id); err == nil { // the whole key, pasted
		id = k.ID
	}
	store, err := openExistingStore(c)
	if err != nil {
		return err
	}
	defer store.Close()
	if err := store.RevokeKey(c.Context, strings.ToLower(id)); errors.Is(err, server.ErrNotFound) {
		return fmt.Errorf("no join key with id %q (see wire server key list)", id)
	} else if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "revoked join key %s\n", strings.ToLower(id))
	return nil
}

// openKeyStore opens the store that a join key is created in, and returns
// the pin of the servers the key is for: the state dir's TLS key (made on
// first use, before the server first runs), or for a shared store the pin
// its servers recorded, so that an admin needs no server's state dir.
func openKeyStore(c *cli.Context) (*server.Store, api.Pin, error) {
	dir, err := serverStateDir(c)
	if err != nil {
		return nil, api.Pin{}, err
	}
	store, err := server.OpenStoreAt(c.Context, dir, c.String("store"))
	if err != nil {
		return nil, api.Pin{}, err
	}
	if !store.Shared() {
		id, err := server.LoadIdentity(dir)
		if err != nil {
			store.Close()
			return nil, api.Pin{}, err
		}
		return store, id.Pin, nil
	}
	pin, err := store.ServerPin(c.Context)
	if err != nil {
		store.Close()
		return nil, api.Pin{}, err
	}
	return store, pin, nil
}

// span is d as --ttl and --expire take it: whole days if it is, else Go's
// form (90m0s).
func span(d time.Duration) string {
	if day := 24 * time.Hour; d%day == 0 {
		return fmt.Sprintf("%dd", d/day)
	}
	return d.String()
}
