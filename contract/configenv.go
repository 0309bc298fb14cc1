package contract

import "strings"

// ConfigEnvPrefix starts the names of the environment variables `demo
// serve` reads its flags from: DEMO_WORKERS for --workers.
const ConfigEnvPrefix = "DEMO_"

// ConfigEnvAlso are the other variables `demo serve` reads, Uvicorn's and
// Gunicorn's: WEB_CONCURRENCY (--workers) and FORWARDED_ALLOW_IPS
// (--forwarded-allow-ips). Uvicorn reads them too.
var ConfigEnvAlso = []string{"WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS"}

// WithoutConfigEnv returns env ("NAME=value" entries) without the
// variables that configure a server (ConfigEnvPrefix, ConfigEnvAlso). The
// tools give the servers they measure every setting on the command line;
// a variable the user exported for their own `demo serve` must not change
// what the tools measure.
func WithoutConfigEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, ConfigEnvPrefix) || isAlso(name) {
			continue
		}
		out = append(out, kv)
	}
	return out
}

func isAlso(name string) bool {
	for _, n := range ConfigEnvAlso {
		if n == name {
			return true
		}
	}
	return false
}
