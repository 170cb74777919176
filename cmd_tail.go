package main

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/wire-mesh/wire/agent"
	"github.com/wire-mesh/wire/internal/cli"
	"github.com/wire-mesh/wire/node"
)

func tailCommand() *cli.Command {
	return &cli.Command{
		Name:      "tail",
		Usage:     "show the messages this node received (from one peer, or all)",
		ArgsUsage: "[PEER]",
		Flags: []cli.Flag{
			nodeStateDirFlag(),
			&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "keep printing new messages as they arrive"},
			&cli.BoolFlag{Name: "sent", Usage: "also show the messages this node sent, with their delivery state"},
			&cli.IntFlag{Name: "limit", Aliases: []string{"n"}, Usage: "how many recent messages", Value: 20},
			&cli.BoolFlag{Name: "json", Usage: "print a JSON object per event"},
		},
		Action: runTail,
	}
}

func runTail(c *cli.Context) error {
	if c.NArg() > 1 {
		return fmt.Errorf("usage: wire tail [options] [PEER]")
	}
	dir, err := nodeStateDir(c, true)
	if err != nil {
		return err
	}
	client := node.NewClient(dir)
	q := agent.TailQuery{Peer: c.Arg(0), Limit: c.Int("limit"), Sent: c.Bool("sent")}
	for {
		res, err := client.Tail(c.Context, q)
		if err != nil {
			return err
		}
		for _, e := range res.Events {
			printEntry(c.App.Writer, e, c.Bool("json"))
		}
		if !c.Bool("follow") {
			return nil
		}
		q.Since, q.Limit = res.Last, 1000
		select {
		case <-c.Context.Done():
			return nil
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func printEntry(w io.Writer, e agent.Entry, asJSON bool) {
	if asJSON {
		b, _ := json.Marshal(e)
		fmt.Fprintf(w, "%s\n", b)
		return
	}
	mark := "verified"
	if !e.Verified {
		mark = "NOT VERIFIED (" + e.Problem + ")"
	}
	who := "from " + shown(e.Peer)
	state := ""
	if e.Direction == "out" {
		who, state = "to "+shown(e.Peer), "  ["+e.Status+"]"
		if e.Reason != "" && e.Status != agent.Delivered {
			state = "  [" + e.Status + ": " + shown(e.Reason) + "]"
		}
	}
	fmt.Fprintf(w, "%s  %s (%s)  %s  %s%s  %s\n", e.Time, who, e.Tier, e.Kind, mark, state, shown(bodyText(e.Body)))
}

// bodyText is a body as a person reads it: the text of {"text": ...},
// else the JSON.
func bodyText(b json.RawMessage) string {
	var m struct {
		Text *string `json:"text"`
	}
	if json.Unmarshal(b, &m) == nil && m.Text != nil {
		var all map[string]any
		if json.Unmarshal(b, &all) == nil && len(all) == 1 {
			return *m.Text
		}
	}
	return string(b)
}
