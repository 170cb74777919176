package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/wire-mesh/wire/agent"
	"github.com/wire-mesh/wire/event"
	"github.com/wire-mesh/wire/internal/cli"
	"github.com/wire-mesh/wire/node"
)

func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "verify a signed event (as wire tail --json prints it): its signature, and whose key signed it",
		ArgsUsage: "FILE|-",
		Flags:     []cli.Flag{nodeStateDirFlag(), &cli.BoolFlag{Name: "json", Usage: "print JSON"}},
		Action:    runVerify,
	}
}

func runVerify(c *cli.Context) error {
	file, err := oneArg(c, "wire verify")
	if err != nil {
		return err
	}
	dir, err := nodeStateDir(c, true)
	if err != nil {
		return err
	}
	raw, err := readEvent(file, c.App.Reader)
	if err != nil {
		return err
	}
	v, err := node.NewClient(dir).Verify(c.Context, raw)
	if errors.Is(err, node.ErrNotRunning) {
		v, err = verifyAlone(raw), nil // the signature needs no daemon; only who holds the key does
	}
	if err != nil {
		return err
	}
	if c.Bool("json") {
		if err := printJSON(c.App.Writer, v); err != nil {
			return err
		}
	} else if v.Valid {
		who := "a key this node does not know"
		if v.Signer == "" && !v.Known && v.Tier == "" && v.From != "" {
			who = shown(v.From) + " (the daemon is not running, so whose key it is is not known)"
		}
		if v.Known {
			who = fmt.Sprintf("%s (%s)", shown(v.Signer), v.Tier)
		}
		fmt.Fprintf(c.App.Writer, "valid: event %s, signed by %s\n", v.EventID, who)
	}
	if !v.Valid {
		return fmt.Errorf("invalid event: %s", v.Error)
	}
	return nil
}

// verifyAlone checks an event's id and signature without the daemon.
func verifyAlone(raw []byte) agent.Verification {
	e, err := event.Parse(raw)
	if err == nil {
		err = e.Verify()
	}
	v := agent.Verification{Valid: err == nil, EventID: e.EventID, From: e.From}
	if err != nil {
		v.Error = err.Error()
	}
	return v
}

// readEvent reads an event from a file or stdin: the event itself, or an
// entry of wire tail --json, which holds it.
func readEvent(file string, stdin io.Reader) (json.RawMessage, error) {
	var b []byte
	var err error
	if file == "-" {
		b, err = io.ReadAll(io.LimitReader(stdin, 2*event.MaxSize))
	} else {
		b, err = os.ReadFile(file)
	}
	if err != nil {
		return nil, err
	}
	var entry struct {
		Event json.RawMessage `json:"event"`
	}
	if !json.Valid(b) {
		return nil, errors.New("not JSON: give the event as wire tail --json prints it")
	}
	if json.Unmarshal(b, &entry) == nil && len(entry.Event) > 0 {
		return entry.Event, nil
	}
	return b, nil
}
