package core_test

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/mire-go/mire/core"
)

type MoneyDeposited struct {
	Amount int64 `json:"amount"`
}

func (MoneyDeposited) EventType() string { return "wallet.money-deposited" }

type Wallet struct{ Balance int64 }

func (*Wallet) Category() string { return "wallet" }

func (a *Wallet) Apply(event core.EventData) {
	if e, ok := event.(MoneyDeposited); ok {
		a.Balance += e.Amount
	}
}

// A Root records events on an aggregate; a store saves them.
func ExampleRoot() {
	root := core.NewRoot("42", &Wallet{})
	root.Record(MoneyDeposited{Amount: 100})
	root.Record(MoneyDeposited{Amount: 20})
	fmt.Println(root.StreamID(), root.State().Balance, root.Version(), len(root.Pending()))
	// Output: wallet-42 120 0 2
}

// The registry decodes stored events back into their Go types.
func ExampleRegistry_Decode() {
	registry := core.NewRegistry()
	core.Register[MoneyDeposited](registry)

	data, _ := registry.Encode(MoneyDeposited{Amount: 5})
	event, err := registry.Decode(&core.RecordedEvent{EventType: "wallet.money-deposited", Data: data})
	fmt.Printf("%#v %v\n", event, err)

	_, err = registry.Decode(&core.RecordedEvent{StreamID: "wallet-1", StreamVersion: 3, EventType: "wallet.closed"})
	fmt.Println(errors.Is(err, core.ErrUnknownEventType))
	// Output:
	// core_test.MoneyDeposited{Amount:5} <nil>
	// true
}

// Upcasters bring old events up to date on every read; stored events are
// never rewritten.
func ExampleRegistry_AddUpcaster() {
	registry := core.NewRegistry()
	core.Register[MoneyDeposited](registry)
	// Version 1 was called "wallet.credited" and stored cents as "cents".
	_ = registry.AddUpcaster("wallet.credited", "wallet.money-deposited", func(data json.RawMessage) (string, json.RawMessage, error) {
		var old struct {
			Cents int64 `json:"cents"`
		}
		if err := json.Unmarshal(data, &old); err != nil {
			return "", nil, err
		}
		upcast, err := json.Marshal(MoneyDeposited{Amount: old.Cents / 100})
		return "wallet.money-deposited", upcast, err
	})
	event, err := registry.Decode(&core.RecordedEvent{EventType: "wallet.credited", Data: json.RawMessage(`{"cents": 1500}`)})
	fmt.Println(event, err, registry.StoredTypes("wallet.money-deposited"))
	// Output: {15} <nil> [wallet.money-deposited wallet.credited]
}

func ExampleEventTypeOf() {
	fmt.Println(core.EventTypeOf[MoneyDeposited]())
	// Output: wallet.money-deposited
}

func ExampleExact() {
	expected := core.Exact(3)
	fmt.Println(expected, expected.Satisfied(3), expected.Satisfied(4), core.Exact(0) == core.NoStream)
	// Output: exact(3) true false true
}
