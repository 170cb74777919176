//go:build linux

package vm

import (
	"bytes"
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ModuleFiles returns the files of the named modules of k and of every module
// they depend on, in an order insmod can take them: each after what it
// depends on. The machine has no modprobe, and no modules.dep: the
// dependencies are read from each module's .modinfo.
func (k Kernel) ModuleFiles(names ...string) ([]string, error) {
	files := map[string]string{} // by module name, '-' as '_'
	err := filepath.WalkDir(filepath.Join(k.Modules, "kernel"), func(path string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(path, ".ko") {
			files[moduleName(strings.TrimSuffix(d.Name(), ".ko"))] = path
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name string) error
	visit = func(name string) error {
		name = moduleName(name)
		switch state[name] {
		case 1:
			return fmt.Errorf("vm: modules depend on each other in a circle at %s", name)
		case 2:
			return nil
		}
		path, ok := files[name]
		if !ok {
			return nil // built into the kernel (modules.builtin), or not needed
		}
		state[name] = 1
		deps, err := moduleDepends(path)
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d); err != nil {
				return err
			}
		}
		state[name] = 2
		order = append(order, path)
		return nil
	}
	for _, n := range names {
		if _, ok := files[moduleName(n)]; !ok && !k.builtin(n) {
			return nil, fmt.Errorf("vm: kernel %s has no module %s", k.Version, n)
		}
		if err := visit(n); err != nil {
			return nil, err
		}
	}
	return order, nil
}

func moduleName(s string) string { return strings.ReplaceAll(s, "-", "_") }

// builtin says whether the kernel has name built in.
func (k Kernel) builtin(name string) bool {
	b, err := os.ReadFile(filepath.Join(k.Modules, "modules.builtin"))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if moduleName(strings.TrimSuffix(filepath.Base(line), ".ko")) == moduleName(name) {
			return true
		}
	}
	return false
}

// moduleDepends reads the depends= of a module's .modinfo section.
func moduleDepends(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("vm: %s: %w", path, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("vm: %s has no .modinfo", path)
	}
	info, err := sec.Data()
	if err != nil {
		return nil, err
	}
	for _, field := range bytes.Split(info, []byte{0}) {
		if deps, ok := bytes.CutPrefix(field, []byte("depends=")); ok {
			if len(deps) == 0 {
				return nil, nil
			}
			return strings.Split(string(deps), ","), nil
		}
	}
	return nil, nil
}
