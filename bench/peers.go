package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// The peers are the servers demo is compared with: net/http (the baseline,
// always run), nginx, fasthttp and Uvicorn, each run only when it is
// available. A peer that cannot run is listed in the report with the
// reason, never silently left out.

// peerMiss is a peer the bench could not run, and why.
type peerMiss struct {
	peer, why string
}

// missPeer records that peer could not run. The report has one line per
// peer: why's first line and, when why quotes the peer's output after it,
// that output's last line, which is where a server says what went wrong.
func (r *runner) missPeer(peer, why string) {
	r.missing = append(r.missing, peerMiss{peer: peer, why: summary(why)})
}

func summary(s string) string {
	first := firstLine(s)
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if last := strings.TrimSpace(lines[len(lines)-1]); len(lines) > 1 && last != "" {
		return first + " … " + last
	}
	return first
}

// firstLine is s up to its first line break, trimmed.
func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if l, _, ok := strings.Cut(s, "\n"); ok {
		return strings.TrimSpace(l)
	}
	return s
}

// inherited is a listening socket the bench binds and hands to a peer as
// its fd 3: the port is known before the peer starts, without a race.
type inherited struct {
	ln   *net.TCPListener
	file *os.File // a duplicate for ExtraFiles
	port int
	url  string
}

func listenInherited() (*inherited, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	tl := ln.(*net.TCPListener)
	file, err := tl.File()
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("listening socket: %w", err)
	}
	port := tl.Addr().(*net.TCPAddr).Port
	return &inherited{ln: tl, file: file, port: port, url: "http://" + tl.Addr().String()}, nil
}

// Close closes the bench's copies; a started child keeps its own.
func (l *inherited) Close() {
	l.file.Close()
	l.ln.Close()
}

// waitHealthy waits until s answers GET /healthcheck with demo's body, for
// a peer that prints no line when it is ready. Its socket already listens,
// so the first request waits in the backlog until the server accepts it.
func waitHealthy(ctx context.Context, s *server, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	defer client.CloseIdleConnections()
	var last error
	for {
		last = checkHealthy(ctx, client, s.url)
		if last == nil {
			return nil
		}
		select {
		case <-s.proc.Exited():
			if err := s.proc.ExitErr(); err != nil {
				return err
			}
			return fmt.Errorf("%s exited%s", s.name, s.lastLines())
		case <-ctx.Done():
			if err := context.Cause(ctx); !errors.Is(err, context.DeadlineExceeded) {
				return err
			}
			return fmt.Errorf("%s: not answering GET /healthcheck within %v: %v%s", s.name, timeout, last, s.lastLines())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func checkHealthy(ctx context.Context, client *http.Client, base string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/healthcheck", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || string(body) != string(baselineHealthy) || resp.Header.Get("Content-Type") != "application/json" {
		return fmt.Errorf("GET /healthcheck: %s, Content-Type %q, body %q; want 200, application/json, %s",
			resp.Status, resp.Header.Get("Content-Type"), body, baselineHealthy)
	}
	return nil
}

// responseBytes is the size on the wire of s's answer to a keep-alive GET
// /healthcheck, status line and headers included: the servers do not send
// the same headers, and the report says how much that differs.
func responseBytes(ctx context.Context, base string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	// The load generators' request, near enough: wrk sends Host only.
	if _, err := io.WriteString(conn, "GET /healthcheck HTTP/1.1\r\nHost: "+strings.TrimPrefix(base, "http://")+"\r\n\r\n"); err != nil {
		return 0, err
	}
	cr := &countingReader{r: conn}
	br := bufio.NewReader(cr)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, err
	}
	return cr.n - br.Buffered(), nil
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// nginxLookup is the answer of findNginx, asked once per run.
type nginxLookup struct {
	install nginxInstall
	ok      bool
}

// findNginx finds nginx the first time it is asked, recording it among the
// peers that could not run when it cannot.
func (r *runner) findNginx(ctx context.Context) (nginxInstall, bool) {
	if r.nginx == nil {
		r.nginx = &nginxLookup{}
		if !r.cfg.Nginx {
			r.missPeer("nginx", "not asked for (--nginx=false)")
		} else if n, why := findNginx(ctx, r.cfg.NginxBins); why != "" {
			r.missPeer("nginx", why)
		} else {
			r.nginx.install, r.nginx.ok = n, true
			r.versions[nginxName] = "nginx " + n.version + " (worker_processes 1 under its master, access_log off)"
		}
	}
	return r.nginx.install, r.nginx.ok
}

// fasthttpLookup is the fasthttp peer's build, made once per run.
type fasthttpLookup struct {
	bin string
	ok  bool
}

// findFasthttp builds the fasthttp peer the first time it is asked,
// recording it among the peers that could not run when it cannot. The
// error is the context's: the build was cut short.
func (r *runner) findFasthttp(ctx context.Context) (bin string, ok bool, err error) {
	if r.fasthttp == nil {
		c := &r.cfg
		look := &fasthttpLookup{}
		if !c.Fasthttp {
			r.missPeer("fasthttp", "not asked for (--fasthttp=false)")
		} else if src, why := findFasthttpSource(c.FasthttpSrc, c.Bin); why != "" {
			r.missPeer("fasthttp", why)
		} else {
			r.log("building the fasthttp peer (go build in %s)", src)
			bin, err := goBuilder().build(ctx, src, c.CacheDir, r.scratch)
			if ctx.Err() != nil {
				return "", false, ctx.Err()
			}
			if err != nil {
				r.missPeer("fasthttp", err.Error())
			} else {
				look.bin, look.ok = bin, true
			}
		}
		r.fasthttp = look
	}
	return r.fasthttp.bin, r.fasthttp.ok, nil
}

// startFasthttp starts the built fasthttp peer, noting its versions.
func (r *runner) startFasthttp(ctx context.Context, bin string) (*server, error) {
	s, version, err := startFasthttp(ctx, bin)
	if err == nil {
		r.versions[fasthttpName] = version
	}
	return s, err
}

// peerTargets finds (or builds) the peers and returns them as targets,
// recording each one that cannot run. Peers take part in the keep-alive and
// pipelined scenarios (nginx and fasthttp in costs too: see runCosts).
func (r *runner) peerTargets(ctx context.Context) ([]target, error) {
	c := &r.cfg
	keep, pipe := c.has(Throughput), c.has(Pipelined)
	if !keep && !pipe {
		return nil, nil
	}
	var ts []target

	if n, ok := r.findNginx(ctx); ok {
		ts = append(ts, target{name: nginxName, keepAlive: keep, pipelined: pipe, optional: true,
			start: func(ctx context.Context) (*server, error) {
				return startNginx(ctx, n, r.scratch, nginxName, c.Connections, false)
			}})
	}

	if bin, ok, err := r.findFasthttp(ctx); err != nil {
		return nil, err
	} else if ok {
		ts = append(ts, target{name: fasthttpName, keepAlive: keep, pipelined: pipe, optional: true,
			start: func(ctx context.Context) (*server, error) { return r.startFasthttp(ctx, bin) }})
	}

	if !c.Uvicorn {
		r.missPeer("uvicorn", "not asked for (--uvicorn=false)")
	} else if f, why := findUvicorn(ctx, c.Pythons); why != "" {
		r.missPeer("uvicorn", why)
	} else {
		r.versions[f.name()] = f.versions + " (" + f.loop + ", " + f.http + ")"
		ts = append(ts, target{name: f.name(), start: func(ctx context.Context) (*server, error) { return startUvicorn(ctx, f, r.scratch) },
			keepAlive: keep, pipelined: pipe, optional: true})
	}
	return ts, nil
}
