// compose-check validates a Compose file the way `docker compose config` does, without a
// Docker engine: the Compose Specification's own loader (compose-go), its JSON schema,
// interpolation from an env file (like compose's .env), normalization and consistency
// checks. It prints the resolved project as JSON on stdout, or the loader's errors on
// stderr and exits 1. Built and cached by scripts/install-compose-check.sh.
//
//	compose-check docker-compose.yml [ENV_FILE]
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	if len(os.Args) < 2 || len(os.Args) > 3 {
		fmt.Fprintln(os.Stderr, "usage: compose-check COMPOSE_FILE [ENV_FILE]")
		os.Exit(2)
	}
	file, err := filepath.Abs(os.Args[1])
	if err != nil {
		fail(err)
	}
	opts := []cli.ProjectOptionsFn{cli.WithWorkingDirectory(filepath.Dir(file))}
	if len(os.Args) == 3 {
		opts = append(opts, cli.WithEnvFiles(os.Args[2]))
	} else {
		opts = append(opts, cli.WithEnvFiles())
	}
	opts = append(opts, cli.WithDotEnv, cli.WithInterpolation(true), cli.WithResolvedPaths(true),
		cli.WithNormalization(true), cli.WithConsistency(true))
	options, err := cli.NewProjectOptions([]string{file}, opts...)
	if err != nil {
		fail(err)
	}
	project, err := options.LoadProject(context.Background())
	if err != nil {
		fail(err)
	}
	out, err := project.MarshalJSON()
	if err != nil {
		fail(err)
	}
	os.Stdout.Write(append(out, '\n'))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "compose-check:", err)
	os.Exit(1)
}
