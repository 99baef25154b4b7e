package integration_test

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/integration/pgenv"
	"github.com/mire-go/mire/store"
)

// Config.ReadPageSize is bounded by MaxReadPageSize, and the largest page
// size reads and loads like any other.
func TestReadPageSizeBounds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, size := range []int{store.MaxReadPageSize + 1, 1 << 31, 1 << 32, 1<<32 + 1} {
		es, err := store.New(pgenv.Pool(t), &store.Config{ReadPageSize: size})
		if es != nil {
			t.Errorf("New with ReadPageSize %d returned a store", size)
		}
		assertInvalidInput(t, err, "Config.ReadPageSize")
	}

	es := pgenv.NewStore(t, nil, &store.Config{Registry: bankRegistry(), ReadPageSize: store.MaxReadPageSize})
	if _, err := es.Append(ctx, "account-1", core.NoStream,
		core.Events(Opened{Owner: "ada"}, Deposited{Amount: 2}, Deposited{Amount: 3})...); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		query core.StreamQuery
		want  []int64 // versions
	}{
		{core.ReadStream("account-1"), []int64{1, 2, 3}},
		{core.StreamQuery{StreamID: "account-1", Direction: core.Backward}, []int64{3, 2, 1}},
		{core.StreamQuery{StreamID: "account-1", Limit: 2}, []int64{1, 2}},
		{core.StreamQuery{Category: "account"}, []int64{1, 2, 3}},
		{core.StreamQuery{Direction: core.Backward}, []int64{3, 2, 1}},
	} {
		events, err := es.ReadEvents(ctx, tt.query)
		if err != nil {
			t.Fatalf("read %+v: %v", tt.query, err)
		}
		var got []int64
		for _, e := range events {
			got = append(got, e.StreamVersion)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("read %+v: versions (-want +got):\n%s", tt.query, diff)
		}
	}
	root, err := store.Load[Account](ctx, es, "1")
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if root.Version() != 3 || root.State().Balance != 5 {
		t.Errorf("loaded version %d balance %d, want 3 and 5", root.Version(), root.State().Balance)
	}
}
