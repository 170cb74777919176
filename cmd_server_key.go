package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"github.com/wire-mesh/wire/api"
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
			},
			Action: noArgs(createKey),
		}},
	}
}

// parseTTL reads --ttl: a Go duration (90m, 24h) or whole days (7d), from
// minTTL to maxTTL.
func parseTTL(s string) (time.Duration, error) {
	var ttl time.Duration
	var err error
	if days, ok := strings.CutSuffix(s, "d"); ok {
		var n int
		n, err = strconv.Atoi(days)
		ttl = time.Duration(n) * 24 * time.Hour
		if n > 10*365 {
			ttl = maxTTL + 1
		}
	} else {
		ttl, err = time.ParseDuration(s)
	}
	if err != nil {
		return 0, fmt.Errorf("--ttl %q: want a duration such as 30m, 24h or 7d", s)
	}
	if ttl < minTTL || ttl > maxTTL {
		return 0, fmt.Errorf("--ttl %s: want a duration from 1m to 365d", s)
	}
	return ttl, nil
}

// A key lives long enough to be copied to a node, and is never forever
// in all but name.
const (
	minTTL = time.Minute
	maxTTL = 365 * 24 * time.Hour
)

func createKey(c *cli.Context) error {
	ttl, err := parseTTL(c.String("ttl"))
	if err != nil {
		return err
	}
	store, pin, err := openKeyStore(c)
	if err != nil {
		return err
	}
	defer store.Close()
	tags, err := declaredTags(c.Context, store, c.StringSlice("tag"))
	if err != nil {
		return err
	}
	expires := time.Now().Add(ttl).UTC().Truncate(time.Second)
	key, err := store.CreateKey(c.Context, pin, c.Bool("reusable"), expires, tags)
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
	fmt.Fprintf(c.App.Writer, "%s join key, valid until %s (shown only now):\n%s\n", kind, expires.Format(time.RFC3339), key)
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
