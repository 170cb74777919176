package cli

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// testFlags are one flag of each type, with aliases and defaults.
func testFlags() []Flag {
	return []Flag{
		&StringFlag{Name: "name", Aliases: []string{"n"}, Usage: "a name", Value: "anon", EnvVars: []string{"CLI_TEST_NAME"}},
		&BoolFlag{Name: "json", Usage: "print JSON"},
		&BoolFlag{Name: "dns", Usage: "use DNS", Value: true},
		&IntFlag{Name: "count", Aliases: []string{"c"}, Usage: "how many", Value: 3},
		&StringSliceFlag{Name: "tag", Aliases: []string{"t"}, Usage: "a tag"},
	}
}

// parsed is what a command saw of its options and arguments.
type parsed struct {
	Name  string
	JSON  bool
	DNS   bool
	Count int
	Tags  []string
	Set   []string // the options given
	Args  []string
}

// parseTest runs a command with testFlags on args and returns what it saw.
func parseTest(args ...string) (parsed, error) {
	var got parsed
	cmd := &Command{Name: "cmd", Flags: testFlags(), Action: func(c *Context) error {
		got = parsed{Name: c.String("name"), JSON: c.Bool("json"), DNS: c.Bool("dns"), Count: c.Int("count"), Tags: c.StringSlice("tag"), Args: c.Args()}
		for _, n := range []string{"name", "json", "dns", "count", "tag"} {
			if c.IsSet(n) {
				got.Set = append(got.Set, n)
			}
		}
		return nil
	}}
	app := &App{Name: "prog", Commands: []*Command{cmd}, Writer: new(strings.Builder), ErrWriter: new(strings.Builder)}
	err := app.Run(context.Background(), append([]string{"cmd"}, args...))
	return got, err
}

func TestParse(t *testing.T) {
	defaults := parsed{Name: "anon", DNS: true, Count: 3}
	with := func(f func(*parsed)) parsed {
		p := defaults
		f(&p)
		return p
	}
	tests := []struct {
		name string
		args []string
		want parsed
	}{
		{"nothing", nil, defaults},
		{"--flag value", []string{"--name", "x"}, with(func(p *parsed) { p.Name, p.Set = "x", []string{"name"} })},
		{"-flag value", []string{"-name", "x"}, with(func(p *parsed) { p.Name, p.Set = "x", []string{"name"} })},
		{"--flag=value", []string{"--name=x=y"}, with(func(p *parsed) { p.Name, p.Set = "x=y", []string{"name"} })},
		{"an alias", []string{"-n", "x"}, with(func(p *parsed) { p.Name, p.Set = "x", []string{"name"} })},
		{"--alias", []string{"--n", "x"}, with(func(p *parsed) { p.Name, p.Set = "x", []string{"name"} })},
		{"a value that looks like an option", []string{"--name", "-c"}, with(func(p *parsed) { p.Name, p.Set = "-c", []string{"name"} })},
		{"the last of a repeated option wins", []string{"-n", "x", "--name", "y"}, with(func(p *parsed) { p.Name, p.Set = "y", []string{"name"} })},
		{"a bool alone", []string{"--json"}, with(func(p *parsed) { p.JSON, p.Set = true, []string{"json"} })},
		{"a bool =false", []string{"--dns=false"}, with(func(p *parsed) { p.DNS, p.Set = false, []string{"dns"} })},
		{"a bool takes no separate value", []string{"--json", "false"}, with(func(p *parsed) { p.JSON, p.Set, p.Args = true, []string{"json"}, []string{"false"} })},
		{"an int", []string{"--count", "7"}, with(func(p *parsed) { p.Count, p.Set = 7, []string{"count"} })},
		{"a negative int", []string{"-c", "-1"}, with(func(p *parsed) { p.Count, p.Set = -1, []string{"count"} })},
		{"a short int attached", []string{"-c1"}, with(func(p *parsed) { p.Count, p.Set = 1, []string{"count"} })},
		{"a long short int attached", []string{"-c51821"}, with(func(p *parsed) { p.Count, p.Set = 51821, []string{"count"} })},
		{"a slice, repeated and with commas", []string{"-t", "a,b", "--tag", " c ", "--tag=d"}, with(func(p *parsed) { p.Tags, p.Set = []string{"a", "b", "c", "d"}, []string{"tag"} })},
		{"options stop at the first argument", []string{"--json", "arg", "--name", "x"}, with(func(p *parsed) { p.JSON, p.Set, p.Args = true, []string{"json"}, []string{"arg", "--name", "x"} })},
		{"-- ends the options", []string{"--json", "--", "--name", "x"}, with(func(p *parsed) { p.JSON, p.Set, p.Args = true, []string{"json"}, []string{"--name", "x"} })},
		{"- is an argument", []string{"-", "--json"}, with(func(p *parsed) { p.Args = []string{"-", "--json"} })},
	}
	for _, tt := range tests {
		got, err := parseTest(tt.args...)
		if err != nil {
			t.Errorf("%s: %q: %v", tt.name, tt.args, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s: %q (-want +got):\n%s", tt.name, tt.args, diff)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--bogus"}, "cmd: unknown option --bogus (see prog cmd --help)"},
		{[]string{"-x=1"}, "cmd: unknown option -x (see prog cmd --help)"},
		{[]string{"---name", "x"}, "cmd: unknown option ---name (see prog cmd --help)"},
		{[]string{"-=x"}, "cmd: unknown option -=x (see prog cmd --help)"},
		{[]string{"--name"}, "cmd: --name needs a value (see prog cmd --help)"},
		{[]string{"-c"}, "cmd: -c needs a value (see prog cmd --help)"},
		{[]string{"--count", "many"}, `cmd: --count "many": want a whole number (see prog cmd --help)`},
		{[]string{"--json=maybe"}, `cmd: --json "maybe": want true or false (see prog cmd --help)`},
		// Only a number attaches, and only to a one-letter int option.
		{[]string{"-c1x"}, "cmd: unknown option -c1x (see prog cmd --help)"},
		{[]string{"-nx"}, "cmd: unknown option -nx (see prog cmd --help)"},
		{[]string{"--c1"}, "cmd: unknown option --c1 (see prog cmd --help)"},
	} {
		_, err := parseTest(tt.args...)
		if err == nil || err.Error() != tt.want {
			t.Errorf("%q: %v, want %s", tt.args, err, tt.want)
		}
	}
}

func TestParseEnv(t *testing.T) {
	t.Setenv("CLI_TEST_NAME", "from-env")
	got, err := parseTest()
	if err != nil || got.Name != "from-env" || !cmp.Equal(got.Set, []string{"name"}) {
		t.Errorf("with $CLI_TEST_NAME: %+v, %v; want the name from it, and set", got, err)
	}
	got, err = parseTest("--name", "flag")
	if err != nil || got.Name != "flag" {
		t.Errorf("with $CLI_TEST_NAME and --name: %+v, %v; want the flag's", got, err)
	}
	t.Setenv("CLI_TEST_NAME", "")
	if got, _ := parseTest(); got.Name != "" || !cmp.Equal(got.Set, []string{"name"}) {
		t.Errorf("with $CLI_TEST_NAME empty: %+v; want it set, to nothing", got)
	}
}

func TestStringOfAnyType(t *testing.T) {
	var got []string
	cmd := &Command{Name: "cmd", Flags: testFlags(), Action: func(c *Context) error {
		got = []string{c.String("count"), c.String("dns"), c.String("tag"), c.String("missing")}
		return nil
	}}
	app := &App{Name: "prog", Commands: []*Command{cmd}, Writer: new(strings.Builder)}
	if err := app.Run(context.Background(), []string{"cmd", "-c5", "-t", "a,b"}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"5", "true", "[a b]", ""}; !cmp.Equal(got, want) {
		t.Errorf("String of an int, a bool, a slice, no such flag = %q, want %q", got, want)
	}
}

func FuzzParse(f *testing.F) {
	for _, seed := range []string{"--name x", "-c1 --json=false a", "-t a,b -- -x", "-c", "-=", "---", "-c99999999999999999999"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, line string) {
		args := strings.Fields(line)
		got, err := parseTest(args...)
		if err == nil && len(got.Args) > len(args) {
			t.Errorf("%q: more arguments than given: %q", args, got.Args)
		}
	})
}
