package saga

import (
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"

	"github.com/mire-go/mire/core"
)

// Definition is a saga: a name, a version and a function of durable steps
// from an input I to a result R. Define it once, at start-up, and give it
// to New.
type Definition[I, R any] struct {
	name     string
	version  int
	fn       func(c *Context, input I) (R, error)
	receives []string
}

// DefineOption configures a Definition.
type DefineOption func(*defineOptions)

type defineOptions struct{ receives []string }

// Receives names the event types the saga awaits (Await, AwaitResponse):
// the saga-inbox subscription routes events of these types, when they carry
// a saga's correlation id, into that saga's journal. Pass zero values:
// Receives(StockReserved{}, StockUnavailable{}). Their Go types must be
// registered in the store's registry.
func Receives(events ...core.EventData) DefineOption {
	return func(o *defineOptions) {
		for _, e := range events {
			o.receives = append(o.receives, e.EventType())
		}
	}
}

var definitionName = regexp.MustCompile(`^[a-z][a-z0-9_.]{0,62}$`)

// Define returns the saga name at version. fn runs again from the start
// each time the saga is woken (after a reply, a timer, a crash), and each
// step already journaled returns its journaled result instead of running
// again: the code between steps must therefore be deterministic (no clock,
// randomness or I/O outside steps: use c.Now, c.UUID and Step). Change the
// steps a running saga takes only under a new version; a saga whose journal
// no longer matches its code is blocked, never corrupted.
//
// name is lowercase letters, digits, '_' and '.'; it panics on a bad name or
// version (a programming error found at start-up).
func Define[I, R any](name string, version int, fn func(c *Context, input I) (R, error), opts ...DefineOption) *Definition[I, R] {
	if !definitionName.MatchString(name) {
		panic(fmt.Sprintf("saga: definition name %q: want lowercase letters, digits, '_' and '.', starting with a letter", name))
	}
	if version < 1 {
		panic(fmt.Sprintf("saga: definition %q: version %d, want 1 or more", name, version))
	}
	var o defineOptions
	for _, opt := range opts {
		opt(&o)
	}
	return &Definition[I, R]{name: name, version: version, fn: fn, receives: o.receives}
}

// Name returns the definition's name.
func (d *Definition[I, R]) Name() string { return d.name }

// Version returns the definition's version.
func (d *Definition[I, R]) Version() int { return d.version }

// AnyDefinition is a Definition of any input and result types, as New
// takes them.
type AnyDefinition interface {
	info() definitionInfo
}

type definitionInfo struct {
	name     string
	version  int
	receives []string
	// run decodes the input, runs the function and encodes its result.
	run func(c *Context, input json.RawMessage) (json.RawMessage, error)
}

func (d *Definition[I, R]) info() definitionInfo {
	return definitionInfo{name: d.name, version: d.version, receives: d.receives,
		run: func(c *Context, raw json.RawMessage) (json.RawMessage, error) {
			var input I
			if err := json.Unmarshal(raw, &input); err != nil {
				return nil, c.block(fmt.Sprintf("the journaled input does not decode into %s: %v", reflect.TypeFor[I](), err))
			}
			result, err := d.fn(c, input)
			if err != nil {
				return nil, err
			}
			encoded, err := json.Marshal(result)
			if err != nil {
				return nil, c.block(fmt.Sprintf("the result does not encode: %v", err))
			}
			return encoded, nil
		}}
}
