package supervisor

import (
	"fmt"
)

// spawn starts a process for sl (index sl.index of the current total)
// through s.start, and records it in the table as Starting. It neither
// puts it in sl nor logs: the caller decides what the new process is for.
func (s *supervisor) spawn(sl *slot) (*child, error) {
	index, total := sl.index, len(s.slots)
	argv := s.cfg.WorkerArgs(index, total)
	if len(argv) == 0 {
		return nil, fmt.Errorf("start worker %d/%d: WorkerArgs returned no argv", index, total)
	}
	c := &child{
		slot:  sl,
		index: index,
		total: total,
		gen:   s.gen,
		state: Starting,
	}
	c.started = s.now()
	c.bootFrom = c.started
	p, err := s.start(c, argv)
	if err != nil {
		return nil, fmt.Errorf("start worker %d/%d: %w", index, total, err)
	}
	c.proc, c.pid = p, p.pid()
	s.children = append(s.children, c)
	return c, nil
}
