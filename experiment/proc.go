package experiment

import (
	"time"

	"demo/childproc"
)

// startChild starts `demo <args>` with --log-format json among args:
// error messages quote a line's message.
func startChild(name, bin string, args ...string) (*childproc.Child, error) {
	return childproc.Start(childproc.Spec{
		Name: name,
		Path: bin,
		Args: args,
		Text: lineText,
	})
}

// startServer is startChild for `demo serve`, whose log tap reads the
// request starts and loop stalls as they are logged.
func startServer(bin string, tap *logTap, args ...string) (*childproc.Child, error) {
	return childproc.Start(childproc.Spec{
		Name: "demo serve",
		Path: bin,
		Args: args,
		Text: tap.text,
	})
}

// stopChild stops c and wants more than childproc does: exit status 0,
// which demo's commands promise on SIGTERM. Anything else means the run
// cannot be trusted.
func stopChild(c *childproc.Child, grace time.Duration) error {
	if err := c.Stop(grace); err != nil {
		return err
	}
	return c.ExitErr()
}
