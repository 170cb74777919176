package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/wire-mesh/wire/agent"
	"github.com/wire-mesh/wire/event"
	"github.com/wire-mesh/wire/internal/cli"
	"github.com/wire-mesh/wire/node"
)

func sendCommand() *cli.Command {
	return &cli.Command{
		Name:      "send",
		Usage:     "sign a message as this node and deliver it to a peer",
		ArgsUsage: "PEER TEXT|-",
		Description: "The message is an event signed with this node's identity key; its body is\n" +
			`{"text": TEXT}, or with --json the JSON value given. "-" reads it from stdin.` + "\n" +
			"It is delivered at once if the peer is online, else queued here until it is.",
		Flags: []cli.Flag{
			nodeStateDirFlag(),
			&cli.StringFlag{Name: "kind", Usage: "the event's kind", Value: "message"},
			&cli.BoolFlag{Name: "json", Usage: "the body is JSON, not text"},
		},
		Action: runSend,
	}
}

func runSend(c *cli.Context) error {
	if c.NArg() != 2 {
		return fmt.Errorf("usage: wire send [options] PEER TEXT|- (options go before PEER)")
	}
	dir, err := nodeStateDir(c, true)
	if err != nil {
		return err
	}
	body, err := sendBody(c.Arg(1), c.App.Reader, c.Bool("json"))
	if err != nil {
		return err
	}
	res, err := node.NewClient(dir).Send(c.Context, node.SendRequest{Peer: c.Arg(0), Kind: c.String("kind"), Body: body})
	if err != nil {
		return err
	}
	switch res.Verdict {
	case agent.Delivered:
		fmt.Fprintf(c.App.Writer, "delivered to %s (event %s)\n", shown(res.Peer), res.EventID)
	case agent.Queued:
		fmt.Fprintf(c.App.Writer, "queued for %s: %s\n  (wire tail --sent shows when it is delivered)\n", shown(res.Peer), res.Reason)
	}
	return nil
}

// sendBody is the event body the arguments ask for.
func sendBody(arg string, stdin io.Reader, isJSON bool) (json.RawMessage, error) {
	text := arg
	if arg == "-" {
		b, err := io.ReadAll(io.LimitReader(stdin, event.MaxSize+1))
		if err != nil {
			return nil, err
		}
		text = string(b)
		if !isJSON {
			text = strings.TrimSuffix(text, "\n")
		}
	}
	if isJSON {
		if !json.Valid([]byte(text)) {
			return nil, errors.New("--json: the body is not valid JSON")
		}
		return json.RawMessage(text), nil
	}
	return json.Marshal(map[string]string{"text": text})
}
