package cli

import (
	"fmt"
	"slices"
	"strings"
)

// helpText is cmd's help in urfave/cli's layout: NAME, USAGE, (VERSION),
// DESCRIPTION, COMMANDS and OPTIONS. name is the command as typed ("wire
// server key"); root says it is the program itself, whose version, if
// not "", is shown.
func helpText(cmd *Command, name string, root bool, version string) string {
	var b strings.Builder
	b.WriteString("NAME:\n   " + name)
	if cmd.Usage != "" {
		b.WriteString(" - " + cmd.Usage)
	}
	b.WriteString("\n\nUSAGE:\n   " + name)
	if root {
		b.WriteString(" [global options] command [command options]")
	} else {
		b.WriteString(" [command options]")
	}
	if cmd.ArgsUsage != "" {
		b.WriteString(" " + cmd.ArgsUsage)
	}
	b.WriteString("\n")
	if version != "" {
		b.WriteString("\nVERSION:\n   " + version + "\n")
	}
	if cmd.Description != "" {
		b.WriteString("\nDESCRIPTION:\n" + indent(cmd.Description) + "\n")
	}
	if len(cmd.Subcommands) > 0 {
		b.WriteString("\nCOMMANDS:\n")
		writeCommands(&b, append(slices.Clip(cmd.Subcommands), helpCommand))
	}
	if root {
		b.WriteString("\nGLOBAL OPTIONS:\n")
	} else {
		b.WriteString("\nOPTIONS:\n")
	}
	writeFlags(&b, flagsOf(cmd, root))
	return b.String()
}

// writeCommands lists cmds a line each: their names, then what each does.
func writeCommands(b *strings.Builder, cmds []*Command) {
	list := make([]string, len(cmds))
	for i, cmd := range cmds {
		list[i] = strings.Join(names(cmd.Name, cmd.Aliases), ", ")
	}
	writeColumns(b, list, func(i int) string { return cmds[i].Usage })
}

// writeFlags lists flags a line each: their names, then what each does,
// its default and the variables that set it.
func writeFlags(b *strings.Builder, flags []Flag) {
	list := make([]string, len(flags))
	for i, f := range flags {
		list[i] = flagNames(f)
	}
	writeColumns(b, list, func(i int) string { return flagUsage(flags[i]) })
}

// writeColumns writes "   NAME  TEXT" lines with the texts aligned.
func writeColumns(b *strings.Builder, names []string, text func(i int) string) {
	width := 0
	for _, n := range names {
		width = max(width, len(n))
	}
	for i, n := range names {
		fmt.Fprintf(b, "   %-*s%s\n", width+2, n, text(i))
	}
}

// flagNames is "--name value, -n value", or with " [ ... ]" repeated for
// an option that may be given again.
func flagNames(f Flag) string {
	s := f.spec()
	var list []string
	for _, n := range f.Names() {
		dash := "--"
		if len(n) == 1 {
			dash = "-"
		}
		if !s.isBool {
			n += " value"
		}
		list = append(list, dash+n)
	}
	joined := strings.Join(list, ", ")
	if s.isSlice {
		joined += " [ " + joined + " ]"
	}
	return joined
}

func flagUsage(f Flag) string {
	s := f.spec()
	usage := s.usage
	if s.defaultText != "" {
		usage = strings.TrimSpace(usage + " (default: " + s.defaultText + ")")
	}
	if len(s.env) > 0 {
		usage += " [$" + strings.Join(s.env, ", $") + "]"
	}
	return usage
}

// indent puts three spaces before each line of s that is not empty.
func indent(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = "   " + l
		}
	}
	return strings.Join(lines, "\n")
}
