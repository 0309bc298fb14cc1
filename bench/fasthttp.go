package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"demo/childproc"
)

// fasthttpName is the fasthttp peer's row.
const fasthttpName = "fasthttp GOMAXPROCS=1"

// FasthttpDir is where the fasthttp peer's module lives in demo's source
// tree. It is a Go module of its own, so demo's go.mod does not grow by a
// dependency only a measurement uses; the bench builds it with the go
// command when asked to compare.
const FasthttpDir = "bench/peers/fasthttp"

// fasthttpSources are the files the peer is built from, and what its cached
// binary is keyed on.
var fasthttpSources = []string{"go.mod", "go.sum", "main.go"}

// fasthttpBuildTimeout bounds the build: the first one downloads fasthttp
// and its dependencies through the module proxy.
const fasthttpBuildTimeout = 3 * time.Minute

// findFasthttpSource picks the peer's module directory: the one given, or
// FasthttpDir under the working directory or beside the demo binary (a
// checkout where `go build -o demo .` was run). The second result says why
// none was found.
func findFasthttpSource(given, bin string) (string, string) {
	candidates := []string{given}
	if given == "" {
		candidates = []string{FasthttpDir}
		if bin != "" {
			candidates = append(candidates, filepath.Join(filepath.Dir(bin), FasthttpDir))
		}
	}
	for _, dir := range candidates {
		ok := true
		for _, f := range fasthttpSources {
			if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
				ok = false
			}
		}
		if ok {
			abs, err := filepath.Abs(dir)
			if err != nil {
				return "", err.Error()
			}
			return abs, ""
		}
	}
	if given != "" {
		return "", fmt.Sprintf("source not found: %s lacks one of %s", given, strings.Join(fasthttpSources, ", "))
	}
	return "", fmt.Sprintf("source not found: no %s in the working directory or beside the demo binary (run demo bench in a checkout, or --fasthttp-src DIR)", FasthttpDir)
}

// fasthttpBuild is the go command's part in building the peer: a seam so
// the caching and skipping logic can be tested without a toolchain.
type fasthttpBuild struct {
	// run runs the go command in dir with env added and returns its
	// standard output; its error carries the first line of what it said.
	run func(ctx context.Context, dir string, env []string, args ...string) ([]byte, error)
}

func goBuilder() fasthttpBuild {
	return fasthttpBuild{run: func(ctx context.Context, dir string, env []string, args ...string) ([]byte, error) {
		path, err := exec.LookPath("go")
		if err != nil {
			return nil, errors.New("the go command is not on PATH")
		}
		cmd := exec.CommandContext(ctx, path, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), env...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("go %s: did not finish in time (downloading modules?)", args[0])
			}
			if msg := firstLine(stderr.String()); msg != "" {
				return nil, errors.New(msg)
			}
			return nil, fmt.Errorf("go %s: %w", args[0], err)
		}
		return stdout.Bytes(), nil
	}}
}

// build builds the peer from src into cacheDir (reusing a binary built
// from the same sources by the same go command) or, when cacheDir is empty
// or unusable, into scratch.
func (b fasthttpBuild) build(ctx context.Context, src, cacheDir, scratch string) (string, error) {
	key, err := fasthttpKey(ctx, b, src)
	if err != nil {
		return "", err
	}
	if cacheDir != "" {
		bin := filepath.Join(cacheDir, "fasthttp-peer-"+key)
		if fi, err := os.Stat(bin); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return bin, nil
		}
		if err := os.MkdirAll(cacheDir, 0o755); err == nil {
			if err := b.compile(ctx, src, bin); err == nil {
				pruneBuilds(cacheDir, bin)
				return bin, nil
			} else if !errors.Is(err, errUnwritable) {
				return "", err
			}
		}
	}
	bin := filepath.Join(scratch, "fasthttp-peer")
	if err := b.compile(ctx, src, bin); err != nil {
		return "", err
	}
	return bin, nil
}

var errUnwritable = errors.New("cannot write the binary there")

// pruneBuilds removes the peer's binaries built from other sources or by
// another go command: the cache keeps one.
func pruneBuilds(cacheDir, keep string) {
	old, _ := filepath.Glob(filepath.Join(cacheDir, "fasthttp-peer-*"))
	for _, f := range old {
		if f != keep {
			_ = os.Remove(f) // a bench running it keeps its copy open
		}
	}
}

// compile runs go build into a temporary directory beside bin and renames
// the result into place, so that a concurrent bench never runs half a
// binary.
func (b fasthttpBuild) compile(ctx context.Context, src, bin string) error {
	tmp, err := os.MkdirTemp(filepath.Dir(bin), ".build-")
	if err != nil {
		return fmt.Errorf("%w: %v", errUnwritable, err)
	}
	defer os.RemoveAll(tmp)
	out := filepath.Join(tmp, filepath.Base(bin))
	ctx, cancel := context.WithTimeout(ctx, fasthttpBuildTimeout)
	defer cancel()
	// GOWORK=off: a go.work around the checkout must not pull demo's own
	// module (or anything else) into the peer's build.
	if _, err := b.run(ctx, src, []string{"GOWORK=off"}, "build", "-trimpath", "-buildvcs=false", "-o", out, "."); err != nil {
		return fmt.Errorf("build failed: %w", err)
	}
	if err := os.Rename(out, bin); err != nil {
		return fmt.Errorf("%w: %v", errUnwritable, err)
	}
	return nil
}

// fasthttpKey names a build: a hash of the peer's sources and of the go
// command's version, so an edit or a new toolchain builds it anew.
func fasthttpKey(ctx context.Context, b fasthttpBuild, src string) (string, error) {
	h := sha256.New()
	for _, f := range fasthttpSources {
		raw, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d\n", f, len(raw))
		h.Write(raw)
	}
	version, err := goVersion(ctx, b)
	if err != nil {
		return "", fmt.Errorf("cannot build it: %w", err)
	}
	h.Write([]byte(version))
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// goVersion asks the go command its version, which is also the first
// thing that fails when there is no go command.
func goVersion(ctx context.Context, b fasthttpBuild) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := b.run(ctx, "", nil, "env", "GOVERSION")
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
}

// fasthttpRunning is the peer's ready line: its URL and versions.
var fasthttpRunning = regexp.MustCompile(`fasthttp peer running on (http://\S+) \(fasthttp (\S+), (go\S+), GOMAXPROCS=(\d+)\)`)

// startFasthttp runs the built peer with GOMAXPROCS=1 on a socket the bench
// binds and hands over as fd 3.
func startFasthttp(ctx context.Context, bin string) (*server, string, error) {
	ls, err := listenInherited()
	if err != nil {
		return nil, "", fmt.Errorf("fasthttp: %w", err)
	}
	defer ls.Close()
	p, m, err := startReady(ctx, childproc.Spec{
		Name: fasthttpName, Path: bin, Args: []string{"-fd", "3"},
		ExtraFiles: []*os.File{ls.file}, Env: []string{"GOMAXPROCS=1"},
	}, fasthttpRunning)
	if err != nil {
		return nil, "", err
	}
	if m.Groups[4] != "1" {
		_ = p.Stop(time.Second)
		return nil, "", fmt.Errorf("fasthttp: runs with GOMAXPROCS=%s, want 1", m.Groups[4])
	}
	s, err := newServer(fasthttpName, "fasthttp", p, ls.url, false)
	if err != nil {
		return nil, "", err
	}
	return s, fmt.Sprintf("fasthttp %s (%s, GOMAXPROCS=1)", m.Groups[2], m.Groups[3]), nil
}
