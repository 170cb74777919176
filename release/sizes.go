package main

import (
	"bytes"
	"cmp"
	"context"
	"debug/buildinfo"
	"debug/elf"
	"fmt"
	"io"
	"slices"
	"strings"
)

// sizes prints what each module adds to the linux/amd64 release binary:
// the bytes of its symbols in the file, read from an unstripped build.
// The rest of the file (symbol and line tables, which stripping does not
// remove from Go binaries) grows roughly in proportion.
func sizes(ctx context.Context, toolchain, version string, w io.Writer) error {
	stripped, err := build(ctx, toolchain, "linux", "amd64", version, true)
	if err != nil {
		return err
	}
	bin, err := build(ctx, toolchain, "linux", "amd64", version, false)
	if err != nil {
		return err
	}
	info, err := buildinfo.Read(bytes.NewReader(bin))
	if err != nil {
		return err
	}
	var modules []string
	for _, d := range info.Deps {
		modules = append(modules, d.Path)
	}
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		return err
	}
	syms, err := f.Symbols()
	if err != nil {
		return err
	}
	byModule := map[string]uint64{}
	var total uint64
	for _, s := range syms {
		if int(s.Section) >= len(f.Sections) || f.Sections[s.Section].Type == elf.SHT_NOBITS {
			continue // not in the file: undefined, absolute, or zero-filled
		}
		m := moduleOf(s.Name, info.Main.Path, modules)
		byModule[m] += s.Size
		total += s.Size
	}
	type row struct {
		module string
		size   uint64
	}
	var rows []row
	for m, n := range byModule {
		rows = append(rows, row{m, n})
	}
	slices.SortFunc(rows, func(a, b row) int { return cmp.Compare(b.size, a.size) })
	fmt.Fprintf(w, "wire %s linux/amd64: %.1f MB stripped; symbols by module:\n", version, mb(len(stripped)))
	for _, r := range rows {
		fmt.Fprintf(w, "%8.0f kB %5.1f%%  %s\n", float64(r.size)/1e3, 100*float64(r.size)/float64(total), r.module)
	}
	fmt.Fprintf(w, "%8.0f kB %5.1f%%  in all\n", float64(total)/1e3, 100.0)
	return nil
}

// moduleOf names the module a symbol comes from: the longest module path
// that prefixes it, the main module for package main, and otherwise the
// standard library, or the runtime's own tables and type descriptors.
func moduleOf(sym, main string, modules []string) string {
	if strings.HasPrefix(sym, "main.") {
		return main
	}
	if strings.HasPrefix(sym, "go:") || strings.HasPrefix(sym, "type:") || strings.HasPrefix(sym, "runtime.") {
		return "(runtime tables, types)"
	}
	best := ""
	for _, m := range append(modules, main) {
		if len(m) > len(best) && strings.HasPrefix(sym, m) && len(sym) > len(m) && (sym[len(m)] == '.' || sym[len(m)] == '/') {
			best = m
		}
	}
	if best == "" {
		return "(standard library)"
	}
	return best
}
