// Command kumo is the whole of kumo in one binary: the server, and the CLI
// that drives it. This file wires them; nothing else does.
package main

import (
	"os"

	"github.com/kumocloud/kumo/internal/cli"
)

// version is set with -ldflags "-X main.version=..." by the Makefile.
var version = "dev"

func main() {
	cli.Version = version
	os.Exit(cli.Main(os.Args[1:], serverCommand, agentCommand))
}
