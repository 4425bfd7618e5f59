// Command teeml is the single binary for attested federated machine
// learning. This package only parses flags and calls teeml's packages.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCmd().ExecuteContext(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "teeml: %v\n", err)
		os.Exit(1)
	}
}
