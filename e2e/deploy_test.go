package e2e

import (
	"bufio"
	"debug/elf"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"demo/childproc"
	"demo/internal/testkit"
)

// The files in deploy/ are checked by running what can run here: the
// systemd units through systemd's own tools, the Dockerfile's build line
// with the go command, every command line they hold with the real binary.
// Docker and a Kubernetes cluster cannot run here; the manifest is parsed
// and its numbers checked against its flags.

// unitFile is a systemd unit: section → key → values, in order.
type unitFile map[string]map[string][]string

func readUnit(t *testing.T, path string) unitFile {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unitFile{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[' && line[len(line)-1] == ']':
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s: not a unit line: %q", path, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

// one returns the single value of key in section, failing otherwise.
func (u unitFile) one(t *testing.T, section, key string) string {
	t.Helper()
	if v := u[section][key]; len(v) == 1 {
		return v[0]
	}
	t.Fatalf("[%s] %s: want exactly one value, got %q", section, key, u[section][key])
	return ""
}

// flagValue returns the value after --name in args ("" if absent).
func flagValue(args []string, name string) string {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

// localArgs rewrites a deployment's serve arguments to run here: the
// loopback address, free ports, a private control socket.
func localArgs(t *testing.T, args []string) []string {
	t.Helper()
	out := slices.Clone(args)
	for i := 0; i+1 < len(out); i++ {
		switch out[i] {
		case "--host":
			out[i+1] = "127.0.0.1"
		case "--port":
			out[i+1] = "0"
		case "--metrics":
			out[i+1] = "127.0.0.1:0"
		case "--control":
			out[i+1] = filepath.Join(t.TempDir(), "control.sock")
		}
	}
	return out
}

// serveSeconds is --timeout-graceful-shutdown in args, in seconds.
func serveSeconds(t *testing.T, args []string, flag string) float64 {
	t.Helper()
	d, err := time.ParseDuration(flagValue(args, flag))
	if err != nil {
		t.Fatalf("%s in %q: %v", flag, args, err)
	}
	return d.Seconds()
}

// TestSystemdUnits: the service and socket pair. systemd-analyze checks
// the units as systemd would load them; systemd-socket-activate passes a
// socket as demo.socket does (with the same name), and the service's
// command line serves on it, reloads with its ExecReload and stops as
// KillMode=mixed does, with SIGTERM to the master alone.
func TestSystemdUnits(t *testing.T) {
	t.Parallel()
	sock := readUnit(t, "../deploy/demo.socket")
	svc := readUnit(t, "../deploy/demo.service")
	fdName := sock.one(t, "Socket", "FileDescriptorName")
	if sock.one(t, "Socket", "ListenStream") == "" || fdName == "" {
		t.Errorf("demo.socket: want a ListenStream and a FileDescriptorName")
	}
	if !slices.Contains(strings.Fields(svc.one(t, "Unit", "Requires")), "demo.socket") {
		t.Errorf("demo.service does not require demo.socket")
	}
	exec0 := strings.Fields(svc.one(t, "Service", "ExecStart"))
	if len(exec0) < 2 || exec0[1] != "serve" {
		t.Fatalf("ExecStart %q: want demo serve", exec0)
	}
	args := exec0[1:]
	for _, ignored := range []string{"--host", "--port", "--uds", "--reuse-port"} {
		if flagValue(args, ignored) != "" || slices.Contains(args, ignored) {
			t.Errorf("ExecStart has %s, which socket activation ignores", ignored)
		}
	}
	if got := svc.one(t, "Service", "ExecReload"); got != "/bin/kill -HUP $MAINPID" {
		t.Errorf("ExecReload=%s, want SIGHUP to the master (a rolling restart)", got)
	}
	if got := svc.one(t, "Service", "KillMode"); got != "mixed" {
		t.Errorf("KillMode=%s, want mixed: SIGTERM to the master alone, which drains the workers", got)
	}
	stop, err := strconv.ParseFloat(strings.TrimSuffix(svc.one(t, "Service", "TimeoutStopSec"), "s"), 64)
	if grace := serveSeconds(t, args, "--timeout-graceful-shutdown"); err != nil || stop <= grace {
		t.Errorf("TimeoutStopSec=%v (%v) must exceed --timeout-graceful-shutdown %vs, or systemd kills the drain", stop, err, grace)
	}

	t.Run("systemd-analyze verify", func(t *testing.T) {
		analyze, err := exec.LookPath("systemd-analyze")
		if err != nil {
			t.Skip("systemd-analyze is not installed (apt-get install systemd)")
		}
		// The units as installed, with ExecStart pointing at this build.
		dir := t.TempDir()
		for _, name := range []string{"demo.socket", "demo.service"} {
			raw, err := os.ReadFile("../deploy/" + name)
			if err != nil {
				t.Fatal(err)
			}
			text := strings.Replace(string(raw), "ExecStart="+exec0[0], "ExecStart="+demoBin, 1)
			if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		out, err := exec.Command(analyze, "verify", "--man=no", filepath.Join(dir, "demo.socket"), filepath.Join(dir, "demo.service")).CombinedOutput()
		if err != nil || strings.Contains(string(out), "demo.") {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
	})

	t.Run("socket activation", func(t *testing.T) {
		activate, err := exec.LookPath("systemd-socket-activate")
		if err != nil {
			t.Skip("systemd-socket-activate is not installed (apt-get install systemd)")
		}
		// A unix socket stands in for ListenStream=8000: no fixed port in tests.
		path := filepath.Join(t.TempDir(), "demo.sock")
		argv := append([]string{"-l", path, "--fdname=" + fdName, demoBin}, localArgs(t, args)...)
		p := startSpec(t, childproc.Spec{Path: activate, Args: argv})
		p.waitLine(regexp.MustCompile(`Listening on `+regexp.QuoteMeta(path)), 0, 10*time.Second)
		// As systemd does, it starts the service at the first connection,
		// which waits in the socket's backlog meanwhile: none is refused.
		c := testkit.UnixClient(path)
		first := make(chan error, 1)
		go func() {
			code, err := getVia(c, "http://demo/healthcheck")
			if err == nil && code != 200 {
				err = fmt.Errorf("status %d", code)
			}
			first <- err
		}()
		at, _ := p.waitLine(regexp.MustCompile(`Using the socket systemd passed \(`+fdName+`\)`), 0, 10*time.Second)
		p.waitLine(regexp.MustCompile(`demo running on unix:`+regexp.QuoteMeta(path)), at, 10*time.Second)
		pid := p.pid() // systemd-socket-activate execs the service in place
		if err := <-first; err != nil {
			t.Fatalf("the connection that started the service: %v", err)
		}
		reload := strings.Fields(strings.ReplaceAll(svc.one(t, "Service", "ExecReload"), "$MAINPID", strconv.Itoa(pid)))
		if out, err := exec.Command(reload[0], reload[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("ExecReload %q: %v %s", reload, err, out)
		}
		p.waitLine(regexp.MustCompile(`Rolling restart done: 2 worker processes replaced`), at, 10*time.Second)
		if code, err := getVia(c, "http://demo/healthcheck"); err != nil || code != 200 {
			t.Fatalf("after the reload: %d %v", code, err)
		}
		kids := childPids(t, pid)
		p.signal(syscall.SIGTERM) // KillMode=mixed: the main process alone
		if code := p.wait(10 * time.Second); code != 0 {
			t.Errorf("exit %d after SIGTERM, want 0", code)
		}
		waitGone(t, kids, time.Second)
	})
}

// dockerfile is a Dockerfile's instructions, continuation lines joined.
func dockerfile(t *testing.T, path string) [][2]string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out [][2]string
	text := strings.ReplaceAll(string(raw), "\\\n", " ")
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		op, rest, _ := strings.Cut(line, " ")
		out = append(out, [2]string{strings.ToUpper(op), strings.TrimSpace(rest)})
	}
	return out
}

// TestDockerfileBuildsAStaticBinary runs the Dockerfile's go build line as
// it is, here, and checks that the binary needs no libc — the runtime base
// has none — and that the image's command line serves.
func TestDockerfileBuildsAStaticBinary(t *testing.T) {
	t.Parallel()
	ins := dockerfile(t, "../deploy/Dockerfile")
	var froms, runs []string
	var entrypoint, cmd []string
	copyTo := map[string]string{} // --from=build source → destination
	for _, in := range ins {
		switch in[0] {
		case "FROM":
			froms = append(froms, in[1])
		case "RUN":
			runs = append(runs, in[1])
		case "COPY":
			if f := strings.Fields(in[1]); len(f) == 3 && strings.HasPrefix(f[0], "--from=") {
				copyTo[f[1]] = f[2]
			}
		case "ENTRYPOINT", "CMD":
			var v []string
			if err := json.Unmarshal([]byte(in[1]), &v); err != nil {
				t.Fatalf("%s %s: want the exec form (JSON), so SIGTERM reaches demo: %v", in[0], in[1], err)
			}
			if in[0] == "CMD" {
				cmd = v
			} else {
				entrypoint = v
			}
		}
	}
	if len(froms) != 2 || !regexp.MustCompile(`^(gcr\.io/distroless/static\S*|scratch)$`).MatchString(froms[1]) {
		t.Errorf("stages %q: want a build stage and a distroless/static or scratch one, with no libc", froms)
	}
	var build string
	for _, r := range runs {
		if strings.Contains(r, "go build") {
			build = r
		}
	}
	// VAR=value words first, then go build ... -o OUT.
	m := regexp.MustCompile(`^((?:[A-Z_]+=\S*\s+)*)go build\s.*-o\s+(\S+)`).FindStringSubmatchIndex(build)
	if m == nil {
		t.Fatalf("build line %q: want [VAR=value ...] go build ... -o OUT", build)
	}
	if env := strings.Fields(build[m[2]:m[3]]); !slices.Contains(env, "CGO_ENABLED=0") {
		t.Errorf("the build sets %q, want CGO_ENABLED=0", env)
	}
	out := build[m[4]:m[5]]
	if dest := copyTo[out]; len(entrypoint) != 1 || entrypoint[0] != dest {
		t.Errorf("ENTRYPOINT %q, want the binary copied from %s to %q", entrypoint, out, dest)
	}
	// Docker runs a RUN line with /bin/sh -c, in the build context (the
	// module root); so does this test, with the binary written here.
	bin := filepath.Join(t.TempDir(), "demo")
	line := build[:m[4]] + bin + build[m[5]:]
	sh := exec.Command("/bin/sh", "-c", line)
	sh.Dir = ".."
	if msg, err := sh.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", line, err, msg)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	libs, _ := f.ImportedLibraries()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("the binary has a %v program header: it is dynamically linked (libraries %q)", p.Type, libs)
		}
	}
	if file, err := exec.LookPath("file"); err == nil {
		if desc, err := exec.Command(file, bin).Output(); err != nil || !strings.Contains(string(desc), "statically linked") {
			t.Errorf("file says: %s %v", desc, err)
		}
	}

	// The image's command, on this binary; its ports are the ones exposed.
	var exposed []string
	for _, in := range ins {
		if in[0] == "EXPOSE" {
			exposed = append(exposed, strings.Fields(in[1])...)
		}
	}
	_, metricsPort, _ := strings.Cut(flagValue(cmd, "--metrics"), ":")
	if port := flagValue(cmd, "--port"); !slices.Contains(exposed, "8000") || port != "" && port != "8000" || metricsPort != "" && !slices.Contains(exposed, metricsPort) {
		t.Errorf("EXPOSE %q does not match the command %q", exposed, cmd)
	}
	if flagValue(cmd, "--host") != "0.0.0.0" {
		t.Errorf("CMD %q: want --host 0.0.0.0, or nothing outside the container reaches it", cmd)
	}
	webConcurrency := ""
	for _, in := range ins {
		if name, value, ok := strings.Cut(in[1], "="); in[0] == "ENV" && ok && name == "WEB_CONCURRENCY" {
			webConcurrency = value
		}
	}
	workers := checkWebConcurrency(t, webConcurrency, cmd)
	serveAndStop(t, startSpec(t, childproc.Spec{Path: bin, Args: append(localArgs(t, cmd), "--port", "0"), Env: []string{"WEB_CONCURRENCY=" + webConcurrency}}), workers)
}

// serveAndStop waits for p (a demo serve) to start its workers and run,
// asks /healthcheck, and stops it as docker stop and the kubelet do:
// SIGTERM, exit 0.
func serveAndStop(t *testing.T, p *proc, workers int) {
	t.Helper()
	p.waitLine(regexp.MustCompile(fmt.Sprintf(`Started server process \[\d+\] \(worker %d/%d\)`, workers, workers)), 0, 10*time.Second)
	_, m := p.waitLine(serveRunning, 0, 10*time.Second)
	if r := get(m[1] + "/healthcheck"); r.err != nil || r.status != 200 {
		t.Errorf("/healthcheck: %d %v", r.status, r.err)
	}
	p.signal(syscall.SIGTERM)
	if code := p.wait(10 * time.Second); code != 0 {
		t.Errorf("exit %d after SIGTERM, want 0", code)
	}
}

// k8sProbe is the part of a Kubernetes probe the test reads.
type k8sProbe struct {
	HTTPGet struct {
		Path string
		Port any
	} `json:"httpGet"`
}

// TestKubernetesManifest parses the manifest (with Python's YAML parser;
// demo has no YAML dependency of its own) and checks that its numbers
// agree with its flags: the grace period covers preStop and the drain, the
// probes ask /healthcheck on the port demo serves, the metrics port is the
// one announced. Then its command line serves, with the container's
// WEB_CONCURRENCY in its environment, and starts that many workers.
func TestKubernetesManifest(t *testing.T) {
	t.Parallel()
	var docs []map[string]any
	for _, py := range []string{"python3", "/usr/bin/python3"} {
		out, err := exec.Command(py, "-c", "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))", "../deploy/kubernetes.yaml").Output()
		if err == nil {
			if err := json.Unmarshal(out, &docs); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	if docs == nil {
		t.Skip("no python3 with PyYAML to parse the manifest (apt-get install python3-yaml)")
	}
	var spec struct {
		Spec struct {
			Template struct {
				Metadata struct {
					Annotations map[string]string
				}
				Spec struct {
					TerminationGracePeriodSeconds float64
					Containers                    []struct {
						Args []string
						Env  []struct{ Name, Value string }
						Port []struct {
							Name          string
							ContainerPort int
						} `json:"ports"`
						ReadinessProbe, LivenessProbe *k8sProbe
						Lifecycle                     struct {
							PreStop struct {
								Sleep struct{ Seconds float64 }
							}
						}
					}
				}
			}
		}
	}
	var kinds []string
	var svcTarget any
	for _, d := range docs {
		kinds = append(kinds, fmt.Sprint(d["kind"]))
		raw, _ := json.Marshal(d)
		switch d["kind"] {
		case "Deployment":
			if err := json.Unmarshal(raw, &spec); err != nil {
				t.Fatal(err)
			}
		case "Service":
			var s struct {
				Spec struct{ Ports []struct{ TargetPort any } }
			}
			_ = json.Unmarshal(raw, &s)
			if len(s.Spec.Ports) == 1 {
				svcTarget = s.Spec.Ports[0].TargetPort
			}
		}
	}
	if !slices.Equal(kinds, []string{"Deployment", "Service"}) || len(spec.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("manifest has %q, want a Deployment of one container and a Service", kinds)
	}
	pod := spec.Spec.Template.Spec
	c := pod.Containers[0]
	ports := map[string]int{}
	for _, p := range c.Port {
		ports[p.Name] = p.ContainerPort
	}
	args := slices.Clone(c.Args)
	webConcurrency := ""
	for _, e := range c.Env {
		if e.Name == "WEB_CONCURRENCY" {
			webConcurrency = e.Value
		}
	}
	workers := checkWebConcurrency(t, webConcurrency, args)
	grace := serveSeconds(t, args, "--timeout-graceful-shutdown")
	preStop := c.Lifecycle.PreStop.Sleep.Seconds
	if pod.TerminationGracePeriodSeconds <= grace+preStop {
		t.Errorf("terminationGracePeriodSeconds %v must exceed preStop %vs + --timeout-graceful-shutdown %vs", pod.TerminationGracePeriodSeconds, preStop, grace)
	}
	servePort, _ := strconv.Atoi(flagValue(args, "--port"))
	for name, p := range map[string]*k8sProbe{"readinessProbe": c.ReadinessProbe, "livenessProbe": c.LivenessProbe} {
		if p == nil || p.HTTPGet.Path != "/healthcheck" || p.HTTPGet.Port != "http" {
			t.Errorf("%s: want GET /healthcheck on port http", name)
		}
	}
	if ports["http"] != servePort || servePort == 0 || svcTarget != "http" {
		t.Errorf("container port http %d, --port %d, Service targetPort %v: want them to agree", ports["http"], servePort, svcTarget)
	}
	_, metricsPort, _ := strings.Cut(flagValue(args, "--metrics"), ":")
	if mp, _ := strconv.Atoi(metricsPort); mp == 0 || ports["metrics"] != mp ||
		spec.Spec.Template.Metadata.Annotations["prometheus.io/port"] != metricsPort {
		t.Errorf("--metrics port %q, container port metrics %d, annotation %q: want them to agree", metricsPort, ports["metrics"], spec.Spec.Template.Metadata.Annotations["prometheus.io/port"])
	}
	if len(args) == 0 || args[0] != "serve" {
		t.Fatalf("args %q: want demo serve", args)
	}
	serveAndStop(t, startSpec(t, childproc.Spec{Args: localArgs(t, args), Env: []string{"WEB_CONCURRENCY=" + webConcurrency}}), workers)
}

// checkWebConcurrency: the deployment sets the worker count in
// WEB_CONCURRENCY, which demo serve reads, and leaves --workers out of the
// command line, where it would win over the variable.
func checkWebConcurrency(t *testing.T, value string, args []string) int {
	t.Helper()
	n, err := strconv.Atoi(value)
	if err != nil || n < 1 {
		t.Errorf("WEB_CONCURRENCY %q: want a count of workers", value)
	}
	for _, flag := range []string{"--workers", "-w"} {
		if flagValue(args, flag) != "" {
			t.Errorf("the command line %q sets %s: WEB_CONCURRENCY would be ignored", args, flag)
		}
	}
	return n
}
