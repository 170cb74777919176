package cli

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// testApp is a program with a leaf command (run) and one with
// subcommands (admin). Each action records, in ran, its path and
// arguments.
func testApp(out *strings.Builder, ran *string) *App {
	record := func(c *Context) error {
		*ran = strings.Join(append([]string{c.Path()}, c.Args()...), " ")
		return nil
	}
	return &App{
		Name: "prog", Usage: "a program", Version: "1.2.3",
		Description: "First line.\n\nThird, after an empty one.",
		Commands: []*Command{{
			Name: "run", Usage: "run it", ArgsUsage: "THING",
			Flags: []Flag{
				&StringFlag{Name: "dir", Usage: "where", Value: "here", EnvVars: []string{"PROG_DIR"}},
				&StringFlag{Name: "listen", Usage: "address", Value: ":80", DefaultText: ":80, or :$PORT"},
				&BoolFlag{Name: "fast", Aliases: []string{"f"}, Usage: "hurry"},
			},
			Action: record,
		}, {
			Name: "admin", Usage: "administer", Description: "Admin's things.",
			Flags: []Flag{&StringFlag{Name: "dir", Usage: "where"}},
			Subcommands: []*Command{{
				Name: "add", Usage: "add one", ArgsUsage: "NAME",
				Flags: []Flag{
					&StringFlag{Name: "from", Usage: "the source", Required: true},
					&StringFlag{Name: "to", Usage: "the target", Required: true},
				},
				Action: record,
			}, {
				Name: "list-all", Usage: "list them",
				Flags: []Flag{
					&StringSliceFlag{Name: "tag", Usage: "a tag (repeatable)"},
					&IntFlag{Name: "limit", Aliases: []string{"n"}, Usage: "how many", Value: 20},
				},
				Action: record,
			}},
		}},
		Writer:    out,
		ErrWriter: out,
	}
}

func run(args ...string) (out, ran string, err error) {
	var b strings.Builder
	err = testApp(&b, &ran).Run(context.Background(), args)
	return b.String(), ran, err
}

const (
	rootHelp = `NAME:
   prog - a program

USAGE:
   prog [global options] command [command options]

VERSION:
   1.2.3

DESCRIPTION:
   First line.

   Third, after an empty one.

COMMANDS:
   run      run it
   admin    administer
   help, h  Shows a list of commands or help for one command

GLOBAL OPTIONS:
   --help, -h     show help
   --version, -v  print the version
`
	runHelp = `NAME:
   prog run - run it

USAGE:
   prog run [command options] THING

OPTIONS:
   --dir value     where (default: "here") [$PROG_DIR]
   --listen value  address (default: :80, or :$PORT)
   --fast, -f      hurry (default: false)
   --help, -h      show help
`
	adminHelp = `NAME:
   prog admin - administer

USAGE:
   prog admin [command options]

DESCRIPTION:
   Admin's things.

COMMANDS:
   add       add one
   list-all  list them
   help, h   Shows a list of commands or help for one command

OPTIONS:
   --dir value  where
   --help, -h   show help
`
	addHelp = `NAME:
   prog admin add - add one

USAGE:
   prog admin add [command options] NAME

OPTIONS:
   --from value  the source
   --to value    the target
   --help, -h    show help
`
	listHelp = `NAME:
   prog admin list-all - list them

USAGE:
   prog admin list-all [command options]

OPTIONS:
   --tag value [ --tag value ]  a tag (repeatable)
   --limit value, -n value      how many (default: 20)
   --help, -h                   show help
`
)

func TestHelp(t *testing.T) {
	for _, tt := range []struct {
		want string
		args [][]string
	}{
		{rootHelp, [][]string{nil, {"--help"}, {"-h"}, {"-help"}, {"help"}, {"h"}, {"help", "help"}, {"--version=false"}}},
		{runHelp, [][]string{{"run", "--help"}, {"run", "-h"}, {"help", "run"}, {"run", "help"}, {"run", "h"}, {"run", "--fast", "help"}, {"-h", "run"}, {"run", "-h", "extra"}, {"help", "run", "extra"}}},
		{adminHelp, [][]string{{"admin"}, {"admin", "--help"}, {"help", "admin"}, {"admin", "help"}, {"admin", "--dir", "d"}}},
		{addHelp, [][]string{{"admin", "add", "--help"}, {"help", "admin", "add"}, {"admin", "help", "add"}, {"admin", "h", "add"}, {"admin", "add", "help"}, {"admin", "-h", "add"}}},
		{listHelp, [][]string{{"admin", "list-all", "-h"}}},
	} {
		for _, args := range tt.args {
			out, ran, err := run(args...)
			if err != nil || ran != "" {
				t.Errorf("%q: ran %q, %v; want help", args, ran, err)
			}
			if diff := cmp.Diff(tt.want, out); diff != "" {
				t.Errorf("%q (-want +got):\n%s", args, diff)
			}
		}
	}
}

func TestRun(t *testing.T) {
	for _, tt := range []struct {
		args    []string
		ran     string
		out     string
		err     string
		noCmd   bool // the error is ErrNoCommand
		setsDir bool
	}{
		{args: []string{"run", "x", "y"}, ran: "run x y"},
		{args: []string{"run", "--fast", "x"}, ran: "run x"},
		{args: []string{"run", "--help=false", "x"}, ran: "run x"},
		{args: []string{"run", "--", "help"}, ran: "run help"},
		{args: []string{"run", "--", "--fast", "-x"}, ran: "run --fast -x"},
		{args: []string{"admin", "--dir", "d", "add", "--from", "a", "--to=b", "n"}, ran: "admin add n"},
		{args: []string{"admin", "list-all", "-n5"}, ran: "admin list-all"},
		{args: []string{"--version"}, out: "prog version 1.2.3\n"},
		{args: []string{"-v"}, out: "prog version 1.2.3\n"},
		{args: []string{"admin", "add", "n"}, err: "admin add: missing --from and --to (see prog admin add --help)"},
		{args: []string{"admin", "add", "--to", "b"}, err: "admin add: missing --from (see prog admin add --help)"},
		{args: []string{"run", "--version"}, err: "run: unknown option --version (see prog run --help)"},
		{args: []string{"--dir", "d"}, err: "unknown option --dir (see prog --help)"},
		{args: []string{"admin", "list-all", "-n"}, err: "admin list-all: -n needs a value (see prog admin list-all --help)"},
		{args: []string{"bogus"}, err: "bogus: no such command (see prog --help)", noCmd: true},
		{args: []string{"admin", "bogus"}, err: "bogus: no such command (see prog admin --help)", noCmd: true},
		{args: []string{"help", "bogus"}, err: "bogus: no such command (see prog --help)", noCmd: true},
		{args: []string{"admin", "help", "bogus"}, err: "bogus: no such command (see prog admin --help)", noCmd: true},
		{args: []string{"--help", "admin", "bogus"}, err: "bogus: no such command (see prog admin --help)", noCmd: true},
	} {
		out, ran, err := run(tt.args...)
		switch {
		case tt.err == "" && err != nil:
			t.Errorf("%q: %v", tt.args, err)
		case tt.err != "" && (err == nil || err.Error() != tt.err):
			t.Errorf("%q: error %v, want %s", tt.args, err, tt.err)
		case errors.Is(err, ErrNoCommand) != tt.noCmd:
			t.Errorf("%q: %v is ErrNoCommand: %t, want %t", tt.args, err, !tt.noCmd, tt.noCmd)
		case ran != tt.ran || out != tt.out:
			t.Errorf("%q: ran %q and printed %q, want %q and %q", tt.args, ran, out, tt.ran, tt.out)
		}
	}
}

// TestSubcommandSeesItsOwnFlags: a subcommand's context has its own
// options; the command's are its parent's.
func TestSubcommandSeesItsOwnFlags(t *testing.T) {
	var own, parents, path string
	var set bool
	app := testApp(new(strings.Builder), new(string))
	app.Commands[1].Subcommands[0].Action = func(c *Context) error {
		own, parents, set, path = c.String("dir"), c.Parent.String("dir"), c.Parent.IsSet("dir"), c.Path()
		return nil
	}
	if err := app.Run(context.Background(), []string{"admin", "--dir", "d", "add", "--from", "a", "--to", "b"}); err != nil {
		t.Fatal(err)
	}
	if own != "" || parents != "d" || !set || path != "admin add" {
		t.Errorf(`add sees --dir %q, its parent %q (set: %t), at path %q; want "", "d", true, "admin add"`, own, parents, set, path)
	}
}

func TestArgs(t *testing.T) {
	var got []string
	var n int
	app := testApp(new(strings.Builder), new(string))
	app.Commands[0].Action = func(c *Context) error {
		got, n = []string{c.Arg(0), c.Arg(1), c.Arg(2)}, c.NArg()
		return nil
	}
	if err := app.Run(context.Background(), []string{"run", "a", "b"}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"a", "b", ""}; !cmp.Equal(got, want) || n != 2 {
		t.Errorf("Arg(0..2) = %q, NArg %d; want %q, 2", got, n, want)
	}
}
