package cli

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// A Flag is an option of a command: a *StringFlag, *BoolFlag, *IntFlag or
// *StringSliceFlag.
type Flag interface {
	// Names are the option's name, then its aliases. A name of one letter
	// is written -n in help, a longer one --name; either takes - or --.
	Names() []string
	spec() spec
	// parse is the option's value given s, after prev (its value so far,
	// or nil).
	parse(prev any, s string) (any, error)
}

// spec is what the layer needs to know of any flag.
type spec struct {
	usage       string
	defaultText string   // help's "(default: ...)", if not ""
	value       any      // the value when the option is not given
	env         []string // variables that give the value, the first one set wins
	required    bool
	isBool      bool // given alone: --json, or --json=false
	isSlice     bool // repeatable: --tag a --tag b,c
}

// A StringFlag is an option with a text value: --name VALUE.
type StringFlag struct {
	Name        string
	Aliases     []string
	Usage       string
	Value       string   // the default
	DefaultText string   // what help says the default is, instead of Value
	EnvVars     []string // variables that set it when the option is not given
	Required    bool
}

func (f *StringFlag) Names() []string { return names(f.Name, f.Aliases) }

func (f *StringFlag) spec() spec {
	def := f.DefaultText
	if def == "" && f.Value != "" {
		def = strconv.Quote(f.Value)
	}
	return spec{usage: f.Usage, defaultText: def, value: f.Value, env: f.EnvVars, required: f.Required}
}

func (f *StringFlag) parse(_ any, s string) (any, error) { return s, nil }

// A BoolFlag is an option that is given alone (--debug), or with
// true or false (--accept-dns=false).
type BoolFlag struct {
	Name      string
	Aliases   []string
	Usage     string
	Value     bool // the default
	noDefault bool // help does not say the default
}

func (f *BoolFlag) Names() []string { return names(f.Name, f.Aliases) }

func (f *BoolFlag) spec() spec {
	def := strconv.FormatBool(f.Value)
	if f.noDefault {
		def = ""
	}
	return spec{usage: f.Usage, defaultText: def, value: f.Value, isBool: true}
}

func (f *BoolFlag) parse(_ any, s string) (any, error) {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return nil, fmt.Errorf("%q: want true or false", s)
	}
	return b, nil
}

// An IntFlag is an option with a whole number: --count 3. A one-letter
// name may have the number attached, as ping writes it: -c3.
type IntFlag struct {
	Name    string
	Aliases []string
	Usage   string
	Value   int // the default
}

func (f *IntFlag) Names() []string { return names(f.Name, f.Aliases) }

func (f *IntFlag) spec() spec {
	return spec{usage: f.Usage, defaultText: strconv.Itoa(f.Value), value: f.Value}
}

func (f *IntFlag) parse(_ any, s string) (any, error) {
	n, err := strconv.ParseInt(s, 0, strconv.IntSize)
	if err != nil {
		return nil, fmt.Errorf("%q: want a whole number", s)
	}
	return int(n), nil
}

// A StringSliceFlag is an option that may be given again and again, each
// time with one value or several separated by commas: --tag a --tag b,c.
type StringSliceFlag struct {
	Name    string
	Aliases []string
	Usage   string
}

func (f *StringSliceFlag) Names() []string { return names(f.Name, f.Aliases) }

func (f *StringSliceFlag) spec() spec { return spec{usage: f.Usage, isSlice: true} }

func (f *StringSliceFlag) parse(prev any, s string) (any, error) {
	list, _ := prev.([]string)
	for _, v := range strings.Split(s, ",") {
		list = append(list, strings.TrimSpace(v))
	}
	return list, nil
}

func names(name string, aliases []string) []string {
	return append([]string{name}, aliases...)
}

var (
	helpFlag    = &BoolFlag{Name: "help", Aliases: []string{"h"}, Usage: "show help", noDefault: true}
	versionFlag = &BoolFlag{Name: "version", Aliases: []string{"v"}, Usage: "print the version", noDefault: true}
)

// flagsOf are cmd's options: its own, then help, and for the program the
// version.
func flagsOf(cmd *Command, root bool) []Flag {
	flags := append(slices.Clip(cmd.Flags), helpFlag)
	if root {
		flags = append(flags, versionFlag)
	}
	return flags
}

func find(flags []Flag, name string) Flag {
	for _, f := range flags {
		if slices.Contains(f.Names(), name) {
			return f
		}
	}
	return nil
}

// parse reads the options at the start of args, and returns the rest:
// from the first argument that is not an option ("-" is not), or after
// "--", which makes the rest arguments whatever they look like (literal).
// Variables in a flag's EnvVars count as the option given.
func (c *Context) parse(args []string) (rest []string, literal bool, err error) {
	c.flags = flagsOf(c.Command, c.Parent == nil)
	c.values = map[string]any{}
	for _, f := range c.flags {
		for _, env := range f.spec().env {
			if s, ok := os.LookupEnv(env); ok {
				if err := c.set(f, s); err != nil {
					return nil, false, fmt.Errorf("$%s %w", env, err)
				}
				break
			}
		}
	}
	for len(args) > 0 {
		arg := args[0]
		if arg == "--" {
			return args[1:], true, nil
		}
		if len(arg) < 2 || arg[0] != '-' {
			return args, false, nil
		}
		args = args[1:]
		opt, value, hasValue := strings.Cut(arg, "=")
		name := strings.TrimPrefix(opt[1:], "-")
		f := find(c.flags, name)
		if f == nil && !hasValue && opt[1] != '-' {
			f, opt, value, hasValue = c.attached(name)
		}
		switch {
		case f == nil && name == "":
			return nil, false, fmt.Errorf("unknown option %s", arg)
		case f == nil:
			return nil, false, fmt.Errorf("unknown option %s", opt)
		case !hasValue && f.spec().isBool:
			value = "true"
		case !hasValue && len(args) == 0:
			return nil, false, fmt.Errorf("%s needs a value", opt)
		case !hasValue:
			value, args = args[0], args[1:]
		}
		if err := c.set(f, value); err != nil {
			return nil, false, fmt.Errorf("%s %w", opt, err)
		}
	}
	return nil, false, nil
}

// attached reads name (of -name) as a one-letter number option with its
// number attached: -c3 as -c 3.
func (c *Context) attached(name string) (f Flag, opt, value string, ok bool) {
	short, number := name[:1], name[1:]
	n, isInt := find(c.flags, short).(*IntFlag)
	if !isInt || number == "" || strings.Trim(number, "0123456789") != "" {
		return nil, "-" + name, "", false
	}
	return n, "-" + short, number, true
}

func (c *Context) set(f Flag, s string) error {
	key := f.Names()[0]
	v, err := f.parse(c.values[key], s)
	if err == nil {
		c.values[key] = v
	}
	return err
}

// checkRequired says which of the options that must be given are not.
func (c *Context) checkRequired() error {
	var missing []string
	for _, f := range c.flags {
		if f.spec().required && !c.IsSet(f.Names()[0]) {
			missing = append(missing, "--"+f.Names()[0])
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing %s", strings.Join(missing, " and "))
	}
	return nil
}

// value is the named option's value, and whether it was given.
func (c *Context) value(name string) (any, bool) {
	f := find(c.flags, name)
	if f == nil {
		return nil, false
	}
	if v, ok := c.values[f.Names()[0]]; ok {
		return v, true
	}
	return f.spec().value, false
}

// IsSet says whether the option was given, on the command line or by its
// EnvVars.
func (c *Context) IsSet(name string) bool {
	_, set := c.value(name)
	return set
}

// String is the option's value as text, whatever its type; "" for an
// option the command does not have.
func (c *Context) String(name string) string {
	switch v, _ := c.value(name); v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	default:
		return fmt.Sprint(v)
	}
}

// Bool is a *BoolFlag's value.
func (c *Context) Bool(name string) bool {
	v, _ := c.value(name)
	b, _ := v.(bool)
	return b
}

// Int is an *IntFlag's value.
func (c *Context) Int(name string) int {
	v, _ := c.value(name)
	n, _ := v.(int)
	return n
}

// StringSlice is a *StringSliceFlag's values, in the order given.
func (c *Context) StringSlice(name string) []string {
	v, _ := c.value(name)
	list, _ := v.([]string)
	return list
}
