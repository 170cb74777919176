// Package cli is wire's command layer: commands with subcommands, their
// options, and help in the layout of urfave/cli, which it replaces. It
// renders help with fmt rather than text/template, whose method lookups by
// name keep every exported method of the binary in it.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// ErrNoCommand is returned, wrapped, for a command name that is not one.
var ErrNoCommand = errors.New("no such command")

// An App is a program: its commands, and where they read and write.
type App struct {
	Name        string
	Usage       string
	Description string
	Version     string // printed by --version
	Commands    []*Command
	Reader      io.Reader
	Writer      io.Writer // help and the commands' output
	ErrWriter   io.Writer
}

// A Command is one of the program's commands, or a subcommand of one.
type Command struct {
	Name        string
	Aliases     []string
	Usage       string // one line, for the list of commands
	ArgsUsage   string // what follows the options: "PEER", "NAME NEW-NAME"
	Description string
	Flags       []Flag
	Subcommands []*Command
	// Action runs the command. Without one, the command only holds
	// subcommands, and run alone prints its help.
	Action ActionFunc
}

// An ActionFunc runs a command.
type ActionFunc func(*Context) error

// helpCommand is the help that every command takes as its first argument.
var helpCommand = &Command{Name: "help", Aliases: []string{"h"}, Usage: "Shows a list of commands or help for one command"}

// Run runs the command that args, without the program's name, ask for.
// Options come before a command's arguments: they are read up to the
// first argument, or up to "--". A first argument that names a
// subcommand runs it, with the rest; "help" (or "h") prints the help.
// After "--" neither is looked for. Help and the version go to
// a.Writer; errors are returned, to be printed once by the caller.
func (a *App) Run(ctx context.Context, args []string) error {
	root := &Command{Name: a.Name, Usage: a.Usage, Description: a.Description, Subcommands: a.Commands}
	return root.run(&Context{Context: ctx, App: a}, args)
}

func (cmd *Command) run(c *Context, args []string) error {
	c.Command = cmd
	rest, literal, err := c.parse(args)
	if err != nil {
		return c.usageError(err)
	}
	switch {
	case c.Bool("help"):
		return c.help(rest)
	case c.Parent == nil && c.Bool("version"):
		_, err := fmt.Fprintf(c.App.Writer, "%s version %s\n", c.App.Name, c.App.Version)
		return err
	case !literal && len(rest) > 0 && helpCommand.hasName(rest[0]):
		return c.help(rest[1:])
	}
	if !literal && len(rest) > 0 {
		if sub := cmd.subcommand(rest[0]); sub != nil {
			return sub.run(&Context{Context: c.Context, App: c.App, Parent: c}, rest[1:])
		}
	}
	if cmd.Action == nil {
		if len(rest) == 0 {
			return c.help(nil)
		}
		return fmt.Errorf("%s: %w (see %s --help)", rest[0], ErrNoCommand, c.fullName())
	}
	if err := c.checkRequired(); err != nil {
		return c.usageError(err)
	}
	c.args = rest
	return cmd.Action(c)
}

func (cmd *Command) hasName(name string) bool {
	return cmd.Name == name || slices.Contains(cmd.Aliases, name)
}

func (cmd *Command) subcommand(name string) *Command {
	for _, sub := range cmd.Subcommands {
		if sub.hasName(name) {
			return sub
		}
	}
	return nil
}

// A Context is one command as it runs: the values of its options, and its
// arguments. A command sees its own options only, not those of the
// command it is a subcommand of: those are its Parent's.
type Context struct {
	Context context.Context
	App     *App
	Command *Command
	Parent  *Context // nil for the program itself
	flags   []Flag
	values  map[string]any // the options given, by their flag's Name
	args    []string
}

// Args are the command's arguments.
func (c *Context) Args() []string { return c.args }

// NArg is the number of the command's arguments.
func (c *Context) NArg() int { return len(c.args) }

// Arg is the command's argument i, or "" if it has fewer.
func (c *Context) Arg(i int) string {
	if i < len(c.args) {
		return c.args[i]
	}
	return ""
}

// Path is the command as typed after the program's name: "server key
// create"; "" for the program itself.
func (c *Context) Path() string {
	var names []string
	for x := c; x.Parent != nil; x = x.Parent {
		names = append([]string{x.Command.Name}, names...)
	}
	return strings.Join(names, " ")
}

// fullName is the command with the program's name: "wire server key create".
func (c *Context) fullName() string { return strings.TrimSpace(c.App.Name + " " + c.Path()) }

// usageError is err in the command's terms, with where to read more.
func (c *Context) usageError(err error) error {
	if c.Parent == nil {
		return fmt.Errorf("%w (see %s --help)", err, c.fullName())
	}
	return fmt.Errorf("%s: %w (see %s --help)", c.Path(), err, c.fullName())
}

// help prints the help of the command that path names, from this one:
// "help server key" as much as "server key --help". A leaf command's help
// ignores the rest of the path; a command with subcommands refuses a name
// that is not one of them.
func (c *Context) help(path []string) error {
	cmd, name := c.Command, c.fullName()
	root := c.Parent == nil
	for _, p := range path {
		if helpCommand.hasName(p) {
			continue
		}
		sub := cmd.subcommand(p)
		if sub == nil && len(cmd.Subcommands) > 0 {
			return fmt.Errorf("%s: %w (see %s --help)", p, ErrNoCommand, name)
		}
		if sub == nil {
			break
		}
		cmd, name, root = sub, name+" "+sub.Name, false
	}
	version := ""
	if root {
		version = c.App.Version
	}
	_, err := io.WriteString(c.App.Writer, helpText(cmd, name, root, version))
	return err
}
