package pgenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/ory/dockertest/v3"
	"github.com/ory/dockertest/v3/docker"
)

// LocalURL is the server tried when no URL is configured.
const LocalURL = "postgres://postgres@localhost:5432/postgres?sslmode=disable"

// Help says how to give mire a database; it ends every "no database" error.
const Help = `mire needs PostgreSQL 14 or later. Do one of:
  - export DATABASE_URL=postgres://user:password@host:5432/dbname
  - run PostgreSQL on localhost:5432 with a passwordless "postgres" user
  - start Docker, so that a throwaway PostgreSQL container can be used`

// ErrNoDatabase means no PostgreSQL server could be found or started.
var ErrNoDatabase = errors.New("pgenv: no PostgreSQL server found")

// Env is a PostgreSQL server to use.
type Env struct {
	// URL is the connection string.
	URL string
	// Source says where URL came from, for logs: "DATABASE_URL",
	// "localhost:5432" or "dockertest".
	Source string

	close func()
}

// Close releases the server if pgenv started it.
func (e *Env) Close() {
	if e != nil && e.close != nil {
		e.close()
	}
}

// Find returns a server, in the order described in the package doc. Its
// error wraps ErrNoDatabase and includes Help when none is found.
func Find(ctx context.Context) (*Env, error) {
	return locate(ctx, true)
}

// Probe reports where [Find] would get a server without starting one:
// "DATABASE_URL", "localhost:5432", or "dockertest" when Docker answers.
func Probe(ctx context.Context) (string, error) {
	env, err := locate(ctx, false)
	if err != nil {
		return "", err
	}
	return env.Source, nil
}

func locate(ctx context.Context, startDocker bool) (*Env, error) {
	for _, name := range []string{"DATABASE_URL", "TEST_DATABASE_URL"} {
		if url := os.Getenv(name); url != "" {
			if err := ping(ctx, url); err != nil {
				return nil, fmt.Errorf("%w: %s is set, but %s", ErrNoDatabase, name, explainConnectError(err))
			}
			return &Env{URL: url, Source: name}, nil
		}
	}
	localErr := ping(ctx, LocalURL)
	if localErr == nil {
		return &Env{URL: LocalURL, Source: "localhost:5432"}, nil
	}
	var (
		env       = &Env{Source: "dockertest"}
		dockerErr error
	)
	if startDocker {
		env, dockerErr = startContainer(ctx)
	} else {
		dockerErr = dockerAvailable()
	}
	if dockerErr == nil {
		return env, nil
	}
	return nil, fmt.Errorf("%w (localhost:5432: %s; docker: %w)\n%s", ErrNoDatabase, explainConnectError(localErr), dockerErr, Help)
}

func dockerAvailable() error {
	pool, err := dockertest.NewPool("")
	if err != nil {
		return err
	}
	return pool.Client.Ping()
}

// explainConnectError says what failed when connecting, so that a typo in
// a URL, a missing role and a missing database each point at their own fix
// instead of all reading as "the server does not answer".
func explainConnectError(err error) string {
	var (
		parseErr *pgconn.ParseConfigError
		pgErr    *pgconn.PgError
		netErr   net.Error
	)
	switch {
	case errors.As(err, &parseErr):
		return fmt.Sprintf("it is not a valid connection string: %v", err)
	case errors.As(err, &pgErr) && pgErr.Code == "3D000": // invalid_catalog_name
		return fmt.Sprintf("the server answers and that database does not exist (create it, or name another): %v", err)
	case errors.As(err, &pgErr) && (pgErr.Code == "28000" || pgErr.Code == "28P01"): // invalid_authorization_specification, invalid_password
		return fmt.Sprintf("the server answers and refuses that role or password: %v", err)
	case errors.As(err, &pgErr):
		return fmt.Sprintf("the server answers and refuses the connection (SQLSTATE %s): %v", pgErr.Code, err)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Sprintf("nothing listens at that address (connection refused): %v", err)
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netErr) && netErr.Timeout():
		return fmt.Sprintf("the server did not answer in time: %v", err)
	}
	return fmt.Sprintf("connecting failed: %v", err)
}

func ping(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx)) //nolint:errcheck // a probe; Ping's error is the answer
	return conn.Ping(ctx)
}

func startContainer(ctx context.Context) (*Env, error) {
	if err := dockerAvailable(); err != nil {
		return nil, err
	}
	pool, err := dockertest.NewPool("")
	if err != nil {
		return nil, err
	}
	resource, err := pool.RunWithOptions(&dockertest.RunOptions{
		Repository: "postgres",
		Tag:        "16-alpine",
		Env:        []string{"POSTGRES_PASSWORD=mire", "POSTGRES_DB=mire"},
		Cmd:        []string{"postgres", "-c", "max_connections=200"},
	}, func(hc *docker.HostConfig) {
		hc.AutoRemove = true
		hc.RestartPolicy = docker.RestartPolicy{Name: "no"}
	})
	if err != nil {
		return nil, err
	}
	// A crashed test run must not leave the container behind for long.
	_ = resource.Expire(15 * 60)
	hostPort := resource.GetHostPort("5432/tcp")
	if i := strings.LastIndex(hostPort, ":"); i >= 0 && strings.HasPrefix(hostPort, "0.0.0.0") {
		hostPort = "localhost" + hostPort[i:]
	}
	url := fmt.Sprintf("postgres://postgres:mire@%s/mire?sslmode=disable", hostPort)
	pool.MaxWait = time.Minute
	if err := pool.Retry(func() error { return ping(ctx, url) }); err != nil {
		_ = pool.Purge(resource)
		return nil, fmt.Errorf("container did not become ready: %w", err)
	}
	return &Env{URL: url, Source: "dockertest", close: func() { _ = pool.Purge(resource) }}, nil
}
