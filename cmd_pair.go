package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/wire-mesh/wire/agent"
	"github.com/wire-mesh/wire/internal/cli"
	"github.com/wire-mesh/wire/node"
)

func pairCommand() *cli.Command {
	return &cli.Command{
		Name:      "pair",
		Usage:     "make a peer verified: both people compare six digits, and each node pins the other's identity key",
		ArgsUsage: "PEER",
		Description: "wire pair PEER prints a code phrase: give it to the person at PEER, who runs\n" +
			"wire pair join CODE. Both then see six digits: read yours out, and type the\n" +
			"ones you hear. Different digits mean someone is in the middle: nothing is pinned.",
		Flags: []cli.Flag{nodeStateDirFlag()},
		Subcommands: []*cli.Command{{
			Name:      "join",
			Usage:     "join the pairing a code phrase names",
			ArgsUsage: "CODE",
			Flags:     []cli.Flag{nodeStateDirFlag()},
			Action: func(c *cli.Context) error {
				code, err := oneArg(c, "wire pair join")
				if err != nil {
					return err
				}
				return runPair(c, func(cl *node.Client) (agent.PairStatus, error) { return cl.PairJoin(c.Context, code) })
			},
		}},
		Action: func(c *cli.Context) error {
			peer, err := oneArg(c, "wire pair")
			if err != nil {
				return err
			}
			return runPair(c, func(cl *node.Client) (agent.PairStatus, error) { return cl.Pair(c.Context, peer) })
		},
	}
}

// runPair starts a session, then walks the person through it.
func runPair(c *cli.Context, start func(*node.Client) (agent.PairStatus, error)) error {
	dir, err := nodeStateDir(c, true)
	if err != nil {
		return err
	}
	cl := node.NewClient(dir)
	st, err := start(cl)
	if err != nil {
		return err
	}
	w := c.App.Writer
	if st.Code != "" {
		fmt.Fprintf(w, "Pairing with %s. Give this code to the person there (say it, or send it another way):\n\n    %s\n\n"+
			"They run: wire pair join %s\nWaiting for them to join...\n", shown(st.Peer), st.Code, st.Code)
	}
	if st, err = waitPair(c.Context, cl, st, agent.PairSASReady); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nRead these digits to the person at %s:   %s\n", shown(st.Peer), spaced(st.SAS))
	digits, err := prompt(w, c.App.Reader, "Type the digits they read to you: ")
	if err != nil {
		return err
	}
	if st, err = cl.PairConfirm(c.Context, st.SessionID, digits); err != nil {
		return err
	}
	if st.State == agent.PairConfirmed {
		fmt.Fprintf(w, "Confirmed here. Waiting for the person at %s to confirm...\n", shown(st.Peer))
	}
	if st, err = waitPair(c.Context, cl, st, agent.PairDone); err != nil {
		return err
	}
	fmt.Fprintf(w, "%s is verified: its identity key is pinned on both nodes.\n", shown(st.Peer))
	return nil
}

// waitPair polls a session until it reaches want, or ends otherwise.
func waitPair(ctx context.Context, cl *node.Client, st agent.PairStatus, want string) (agent.PairStatus, error) {
	for {
		switch st.State {
		case want, agent.PairDone:
			return st, nil
		case agent.PairAborted, agent.PairExpired:
			return st, fmt.Errorf("pairing %s: %s", st.State, st.Reason)
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
		var err error
		if st, err = cl.PairCheck(ctx, st.SessionID); err != nil {
			return st, err
		}
	}
}

func prompt(w io.Writer, r io.Reader, question string) (string, error) {
	fmt.Fprint(w, question)
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && line == "" {
		return "", errors.New("no digits typed: the pairing is left to expire, and nothing is pinned")
	}
	return strings.TrimSpace(line), nil
}

func spaced(sas string) string {
	if len(sas) != 6 {
		return sas
	}
	return sas[:3] + " " + sas[3:]
}
