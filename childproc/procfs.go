package childproc

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// What /proc says about a process: for callers that check what a child
// (a demo serve, say) did with its own children.

// Children lists the processes pid forked that still exist. Each thread
// lists the children it forked, so every thread is read: demo's master
// forks from a thread of its own.
func Children(pid int) ([]int, error) {
	files, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("children of %d: no such process", pid)
	}
	var pids []int
	for _, f := range files {
		raw, _ := os.ReadFile(f) // a thread may exit meanwhile
		for _, field := range strings.Fields(string(raw)) {
			n, err := strconv.Atoi(field)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
			pids = append(pids, n)
		}
	}
	return pids, nil
}

// Argv is pid's command line, as ps shows it.
func Argv(pid int) ([]string, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil, fmt.Errorf("argv of %d: %w", pid, err)
	}
	return strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00"), nil
}

// Alive reports whether pid exists and is not a zombie (which runs no code
// and holds no socket).
func Alive(pid int) bool {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name, which may itself
	// hold spaces and parentheses.
	s := string(raw)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
