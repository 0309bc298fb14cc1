// Package testkit holds what the tests of several packages need alike and
// no production code needs at all: a listening socket to hand a child, a
// raw TCP server, clients that talk HTTP over a unix socket or repeat one
// request as cheaply as a benchmark needs, a pseudo-terminal. Tests import
// it; nothing else does.
package testkit
