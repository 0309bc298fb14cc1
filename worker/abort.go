package worker

import (
	"encoding/json"
	"errors"
	"os"
	"os/signal"
	"syscall"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"demo/contract"
	"demo/eventloop"
)

// abortFrames bounds the stack a worker sends when aborted: with its header
// and file:line under each frame, about 30 lines in the master's log.
const abortFrames = 12

// watchAbort answers SIGABRT, which the master sends when the loop has
// been blocked longer than --timeout, until stop is closed. Left to the Go
// runtime, SIGABRT dumps every goroutine's stack — hundreds of lines per
// worker, interleaved with the other processes' lines. Instead the worker
// sends the master the one stack that says why: the loop goroutine's,
// trimmed to the stuck callback (contract.Stack); the master logs it as one
// entry. Then the worker ends itself: its loop is blocked, so nothing could
// unwind it (the master sends SIGKILL too, in case it cannot).
func watchAbort(loop *eventloop.Loop, status *statusPipe, log *zap.Logger, stop <-chan struct{}) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGABRT)
	defer signal.Stop(sigs)
	select {
	case <-stop:
		return
	case <-sigs:
	}
	if err := status.send(stackMsg(loop)); err != nil && !errors.Is(err, errPipeFull) {
		log.Debug("send the loop's stack", zap.Error(err))
	}
	// What the process logged so far (the detector's warning) goes out
	// before it dies; Sync gives up quickly on a reader that stopped.
	_ = log.Sync()
	_ = unix.Kill(os.Getpid(), unix.SIGKILL)
}

// stackMsg is what the loop runs and its stack as a contract.Stack
// message, with as many frames as fit in one.
func stackMsg(loop *eventloop.Loop) contract.Msg {
	label := loop.Label()
	for frames := abortFrames; ; frames-- {
		text, _ := json.Marshal(contract.AbortReport{Label: label, Stack: loop.LoopStack(frames)})
		// Encode would cut a longer text, and a cut JSON string is no
		// string at all: drop frames instead.
		if len(text)+len(contract.Stack)+8 < contract.MaxMsg || frames <= 1 {
			return contract.Msg{Kind: contract.Stack, Text: string(text)}
		}
	}
}
