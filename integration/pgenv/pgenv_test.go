package pgenv

import (
	"context"
	"net"
	"net/url"
	"os"
	"strings"
	"testing"
)

func TestMain(m *testing.M) { os.Exit(RunTests(m)) }

// Each way a connection can fail gets its own explanation, so that a
// missing role or database is not reported as a server that does not
// answer.
func TestExplainConnectError(t *testing.T) {
	t.Parallel()
	withURL := func(change func(u *url.URL)) string {
		u, err := url.Parse(URL(t))
		if err != nil {
			t.Fatal(err)
		}
		change(u)
		return u.String()
	}
	// A port that was just free: nothing listens on it.
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := listener.Addr().String()
	if err := listener.Close(); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name, url, want string
	}{
		{"unparseable", "postgres://postgres@localhost:5432/test?sslmode=bogus", "not a valid connection string"},
		{"refused", "postgres://postgres@" + closedPort + "/test?sslmode=disable", "connection refused"},
		{"missing role", withURL(func(u *url.URL) { u.User = url.User("mire_no_such_role") }), "refuses that role or password"},
		{"missing database", withURL(func(u *url.URL) { u.Path = "/mire_no_such_database" }), "that database does not exist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := ping(context.Background(), tt.url)
			if err == nil {
				t.Fatalf("ping(%q) succeeded, want an error", tt.url)
			}
			if got := explainConnectError(err); !strings.Contains(got, tt.want) {
				t.Errorf("explainConnectError() = %q, want it to say %q", got, tt.want)
			}
		})
	}
}
