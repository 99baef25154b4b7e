package integration_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/integration/pgenv"
	"github.com/mire-go/mire/store"
)

// A store whose pool was closed reports connection errors, so that callers
// that handle connection loss (and DBErrorKind.Transient) see it as one.
func TestClosedPoolIsConnectionError(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgenv.NewPool(t, 2)
	es := pgenv.NewStore(t, pool, nil)
	pool.Close()

	_, err := es.Append(ctx, "account-1", core.Any, core.NewEvent(Deposited{Amount: 1}))
	assertDbKind(t, err, core.DBConnection)
	_, err = es.ReadEvents(ctx, core.ReadStream("account-1"))
	assertDbKind(t, err, core.DBConnection)
}

// A load does not know global positions, so its DecodeError does not claim
// one.
func TestLoadDecodeErrorNamesNoPosition(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})
	insertRawEvent(t, es, "account-5", "account.renamed", `{}`, nil)

	_, err := store.Load[Account](ctx, es, "5")
	if !errors.Is(err, core.ErrUnknownEventType) {
		t.Fatalf("err = %v, want ErrUnknownEventType", err)
	}
	if msg := err.Error(); strings.Contains(msg, "position") || !strings.Contains(msg, `"account-5" version 1`) {
		t.Errorf("err = %q, want it to name stream and version and no position", msg)
	}
}
