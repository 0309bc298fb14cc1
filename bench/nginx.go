package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"demo/childproc"
)

// Row names of the nginx peer.
const (
	nginxName      = "nginx ×1"               // worker_processes 1, access_log off
	nginxLogOnName = "nginx ×1 access_log on" // the same, logging each request like demo serve's default
)

// nginxInstall is an nginx the bench found.
type nginxInstall struct {
	path    string
	version string          // "1.22.1"
	without map[string]bool // modules built out ("http_uwsgi"): their directives would be errors
	errFlag bool            // -e (the error log before the config is read) exists: 1.19.5 on
}

// findNginx looks for nginx under each candidate name or path, in order, and
// asks it for its version and how it was built. The second result says why
// none could be used.
func findNginx(ctx context.Context, candidates []string) (nginxInstall, string) {
	var broken []string
	for _, c := range candidates {
		c = strings.TrimSpace(c)
		if c == "" {
			continue
		}
		path, err := exec.LookPath(c)
		if err != nil {
			continue
		}
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		out, err := exec.CommandContext(ctx, path, "-V").CombinedOutput() // prints to stderr
		cancel()
		if err != nil {
			broken = append(broken, fmt.Sprintf("%s -V: %v", path, err))
			continue
		}
		n, err := parseNginxV(string(out))
		if err != nil {
			broken = append(broken, fmt.Sprintf("%s -V: %v", path, err))
			continue
		}
		n.path = path
		return n, ""
	}
	if len(broken) > 0 {
		return nginxInstall{}, strings.Join(broken, "; ")
	}
	return nginxInstall{}, fmt.Sprintf("not installed: no %s (apt-get install nginx)", strings.Join(candidates, " or "))
}

var (
	nginxVersionLine = regexp.MustCompile(`nginx version: nginx/(\d+)\.(\d+)\.(\d+)`)
	nginxWithout     = regexp.MustCompile(`--without-(http_[a-z0-9_]+)_module\b`)
)

// parseNginxV reads `nginx -V`: the version, and which of the modules whose
// directives the generated config uses were built out.
func parseNginxV(out string) (nginxInstall, error) {
	m := nginxVersionLine.FindStringSubmatch(out)
	if m == nil {
		return nginxInstall{}, errors.New("no 'nginx version: nginx/X.Y.Z' line")
	}
	v := [3]int{}
	for i := range v {
		v[i], _ = strconv.Atoi(m[i+1])
	}
	n := nginxInstall{version: m[1] + "." + m[2] + "." + m[3], without: map[string]bool{}}
	n.errFlag = v[0] > 1 || v[0] == 1 && (v[1] > 19 || v[1] == 19 && v[2] >= 5)
	for _, w := range nginxWithout.FindAllStringSubmatch(out, -1) {
		n.without[w[1]] = true
	}
	return n, nil
}

// nginxConfig is what the generated nginx.conf depends on.
type nginxConfig struct {
	dir         string // the prefix: pid file, temp paths; inside the bench's scratch
	port        int    // the inherited socket's port on 127.0.0.1
	connections int    // the load's connections, to size worker_connections
	accessLog   bool   // log every request to standard error, buffered like demo's
	without     map[string]bool
}

// nginxConf writes the config the bench runs nginx with: one worker
// process under a master (nginx as it is deployed, and the same shape as
// `demo serve --workers 1`; the CPU of both is counted, as for demo), in
// the foreground, every path it writes inside dir so that it runs as any
// user, answering GET /healthcheck with demo's body and Content-Type.
//
// Otherwise nginx's defaults, but for keepalive_requests: nginx closes a
// keep-alive connection after 1,000 requests by default, and demo never
// does, so a default nginx would pay for reconnections demo does not.
func nginxConf(c nginxConfig) string {
	p := func(name string) string { return strconv.Quote(filepath.Join(c.dir, name)) }
	var b strings.Builder
	fmt.Fprintf(&b, `# written by demo bench
worker_processes 1;
master_process on;
daemon off;
pid %s;
error_log stderr notice;
events {
    worker_connections %d;
}
http {
    server_tokens off;
    keepalive_requests 1000000000;
`, p("nginx.pid"), max(1024, 2*c.connections+64))
	if c.accessLog {
		// demo's worker writes its access lines in batches, at most 50 ms
		// after the first one: the same here.
		b.WriteString("    access_log /dev/stderr combined buffer=64k flush=50ms;\n")
	} else {
		b.WriteString("    access_log off;\n")
	}
	// Temp paths default to system directories only root may write to, and
	// nginx creates them at start even when unused.
	fmt.Fprintf(&b, "    client_body_temp_path %s;\n", p("client_body_temp"))
	for _, mod := range []string{"proxy", "fastcgi", "uwsgi", "scgi"} {
		if !c.without["http_"+mod] {
			fmt.Fprintf(&b, "    %s_temp_path %s;\n", mod, p(mod+"_temp"))
		}
	}
	fmt.Fprintf(&b, `    server {
        listen 127.0.0.1:%d;
        default_type application/json;
        location = /healthcheck {
            return 200 '%s';
        }
        location / {
            return 404 '%s';
        }
    }
}
`, c.port, baselineHealthy, baselineNotFound)
	return b.String()
}

// nginxStarted is the line after which nginx's output is only drained.
var nginxStarted = regexp.MustCompile(`start worker process`)

// startNginx writes a config into a directory of its own under scratch and
// runs nginx with it. The bench binds the socket and hands it over the way
// nginx hands sockets to a new binary on upgrade (fd 3, named in the NGINX
// environment variable), so the port is known without a race. It is ready
// once it answers GET /healthcheck with demo's body.
func startNginx(ctx context.Context, n nginxInstall, scratch, name string, connections int, accessLog bool) (*server, error) {
	dir, err := os.MkdirTemp(scratch, "nginx-")
	if err != nil {
		return nil, fmt.Errorf("nginx: %w", err)
	}
	ls, err := listenInherited()
	if err != nil {
		return nil, fmt.Errorf("nginx: %w", err)
	}
	defer ls.Close()
	conf := filepath.Join(dir, "nginx.conf")
	text := nginxConf(nginxConfig{dir: dir, port: ls.port, connections: connections, accessLog: accessLog, without: n.without})
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		return nil, fmt.Errorf("nginx: %w", err)
	}
	args := []string{"-p", dir, "-c", conf}
	if n.errFlag {
		// Else nginx opens its built-in error log path before reading the
		// config: only root may write there.
		args = append(args, "-e", "stderr")
	}
	p, err := childproc.Start(childproc.Spec{
		Name: name, Path: n.path, Args: args, Dir: dir,
		ExtraFiles: []*os.File{ls.file}, Env: []string{"NGINX=3;"},
		DrainAfter: nginxStarted,
	})
	if err != nil {
		return nil, err
	}
	s, err := newServer(name, "nginx", p, ls.url, true)
	if err != nil {
		return nil, err
	}
	if err := waitHealthy(ctx, s, startTimeout); err != nil {
		_ = s.stop()
		return nil, err
	}
	s.noteWorkers()
	return s, nil
}
