// Command fasthttp is one of the peers `demo bench` measures demo against:
// github.com/valyala/fasthttp serving GET /healthcheck with the body and
// Content-Type demo's worker answers with. It is a module of its own so that
// demo's go.mod does not grow by a dependency only a measurement uses; the
// bench builds it on demand with the go command.
//
// It serves on an inherited listening socket (-fd 3, what the bench passes,
// so the port is known without a race) or on -addr, prints one line naming
// its URL and versions once serving, and exits on SIGTERM or SIGINT. Run it
// with GOMAXPROCS=1 to compare it with one demo worker, as the bench does.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// The bodies demo's worker answers with, byte for byte.
var (
	healthy  = []byte(`{"status":"ok"}`)
	notFound = []byte(`{"detail":"Not Found"}`)
)

// handle does what demo's /healthcheck does and nothing else: no routing
// library, no middleware, so the figure is fasthttp's own.
func handle(ctx *fasthttp.RequestCtx) {
	ctx.SetContentType("application/json")
	if string(ctx.Path()) == "/healthcheck" && (ctx.IsGet() || ctx.IsHead()) {
		ctx.SetBody(healthy)
		return
	}
	ctx.SetStatusCode(fasthttp.StatusNotFound)
	ctx.SetBody(notFound)
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "fasthttp peer:", err)
		os.Exit(1)
	}
}

func run() error {
	fd := flag.Int("fd", -1, "serve on this inherited listening socket instead of -addr")
	addr := flag.String("addr", "127.0.0.1:0", "address to listen on")
	flag.Parse()

	ln, err := listen(*fd, *addr)
	if err != nil {
		return err
	}
	// Subscribed before the ready line: a SIGTERM sent right after it
	// must stop the server cleanly, not kill it.
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)

	srv := &fasthttp.Server{Handler: handle}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	// The bench waits for this line; it also records the versions.
	fmt.Fprintf(os.Stderr, "fasthttp peer running on http://%s (fasthttp %s, %s, GOMAXPROCS=%d)\n",
		ln.Addr(), fasthttpVersion(), runtime.Version(), runtime.GOMAXPROCS(0))
	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-stop:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.ShutdownWithContext(ctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-served; err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

func listen(fd int, addr string) (net.Listener, error) {
	if fd < 0 {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("listen: %w", err)
		}
		return ln, nil
	}
	f := os.NewFile(uintptr(fd), "inherited listener")
	if f == nil {
		return nil, fmt.Errorf("-fd %d: not an open file", fd)
	}
	defer f.Close() // FileListener holds a duplicate
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("-fd %d: %w", fd, err)
	}
	return ln, nil
}

// fasthttpVersion is the version of fasthttp this binary was built with.
func fasthttpVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/valyala/fasthttp" {
				if d.Replace != nil {
					return d.Replace.Version + " (replaced)"
				}
				return d.Version
			}
		}
	}
	return "(unknown version)"
}
