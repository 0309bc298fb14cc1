// Package e2e holds the end-to-end tests: they build the demo binary once
// and run it as users and tools do — `demo serve`, `demo external`,
// `demo experiment`, `demo bench`, `demo status` — on 127.0.0.1:0, with
// real signals and real clients, through package childproc. Tests of the
// command line's own code stay with package main.
//
// A test that judges time — a latency, a ratio, a deadline shorter than
// seconds — runs alone, as go test runs a test without t.Parallel: no other
// test of the package runs beside it. The others call t.Parallel: they use
// only processes, ports and files of their own.
package e2e
