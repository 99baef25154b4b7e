package integration_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/integration/pgenv"
	"github.com/mire-go/mire/store"
)

func TestAppendReadLoad(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry()})

	committed, err := es.Append(ctx, "account-1", core.NoStream, core.Events(Opened{Owner: "ada"}, Deposited{Amount: 100})...)
	if err != nil {
		t.Fatalf("append: %v", err)
	}
	if committed.FromVersion != 1 || committed.ToVersion != 2 || len(committed.Events) != 2 {
		t.Fatalf("committed = %+v", committed)
	}
	if _, err := es.Append(ctx, "account-1", core.Exact(2), core.NewEvent(Withdrawn{Amount: 30})); err != nil {
		t.Fatalf("append exact: %v", err)
	}

	root, err := store.Load[Account](ctx, es, "1")
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if diff := cmp.Diff(&Account{Owner: "ada", Balance: 70, Applied: 3, IsOpened: true}, root.State()); diff != "" {
		t.Errorf("state (-want +got):\n%s", diff)
	}
	if root.Version() != 3 {
		t.Errorf("version = %d, want 3", root.Version())
	}

	events, err := es.ReadEvents(ctx, core.ReadAll())
	if err != nil {
		t.Fatalf("read all: %v", err)
	}
	var positions []int64
	for _, e := range events {
		positions = append(positions, e.GlobalPosition)
	}
	if diff := cmp.Diff([]int64{1, 2, 3}, positions); diff != "" {
		t.Errorf("positions (-want +got):\n%s", diff)
	}

	_, err = store.Load[Account](ctx, es, "missing")
	if !errors.Is(err, core.ErrStreamNotFound) {
		t.Errorf("load missing: err = %v, want ErrStreamNotFound", err)
	}
}
