// Command mire-pgenv says which PostgreSQL server mire's tests, demo and
// benchmarks will use, without starting anything: DATABASE_URL (or
// TEST_DATABASE_URL), else a server on localhost:5432, else a dockertest
// container if Docker answers. With none it explains what to do and exits
// with status 1.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/mire-go/mire/integration/pgenv"
)

func main() {
	source, err := pgenv.Probe(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("PostgreSQL: %s\n", source)
}
