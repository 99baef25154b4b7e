package core

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"sync"
)

// Registry maps stored event types to Go types, so that stored events can
// be decoded, and holds the upcasters that bring old events up to date.
// Event data is JSON (encoding/json), stored as jsonb.
//
// A Registry is safe for concurrent use. Register types at start-up, before
// events are read.
type Registry struct {
	mu        sync.RWMutex
	types     map[string]reflect.Type
	upcasters map[string]Upcaster
	// formerNames maps an event type to the older types upcast into it, so
	// that a read filtered by the new type also finds events stored under
	// the old one.
	formerNames map[string][]string
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{
		types:       make(map[string]reflect.Type),
		upcasters:   make(map[string]Upcaster),
		formerNames: make(map[string][]string),
	}
}

// Register adds E to r under E's event type. It panics if E's event type is
// invalid or already registered for another Go type: both are programming
// errors found at start-up. Use [Registry.Add] to get an error instead.
func Register[E EventData](r *Registry) {
	var zero E
	if err := r.Add(zero); err != nil {
		panic(err)
	}
}

// Add registers the Go type of each example under its event type. Pass zero
// values: Add(Deposited{}, Withdrawn{}). Registering the same type twice is
// harmless; registering another Go type under a taken event type is an
// error.
func (r *Registry) Add(examples ...EventData) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, example := range examples {
		if example == nil {
			return &InvalidInputError{Field: "event type", Reason: "cannot register a nil EventData"}
		}
		eventType := example.EventType()
		if err := ValidateEventType(eventType); err != nil {
			return err
		}
		goType := reflect.TypeOf(example)
		if existing, ok := r.types[eventType]; ok && existing != goType {
			return &InvalidInputError{Field: "event type", Value: eventType,
				Reason: fmt.Sprintf("already registered for %s, cannot register %s", existing, goType)}
		}
		r.types[eventType] = goType
	}
	return nil
}

// Known reports whether eventType is registered or is upcast into a
// registered type.
func (r *Registry) Known(eventType string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, ok := r.types[eventType]
	_, up := r.upcasters[eventType]
	return ok || up
}

// EventTypes returns the registered event types, sorted.
func (r *Registry) EventTypes() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	types := make([]string, 0, len(r.types))
	for t := range r.types {
		types = append(types, t)
	}
	slices.Sort(types)
	return types
}

// Encode serializes event data as JSON.
func (r *Registry) Encode(data EventData) ([]byte, error) {
	if data == nil {
		return nil, &EncodeError{Err: fmt.Errorf("event data is nil")}
	}
	encoded, err := json.Marshal(data)
	if err != nil {
		return nil, &EncodeError{EventType: data.EventType(), Err: err}
	}
	return encoded, nil
}

// Decode upcasts a recorded event if an upcaster applies and it is not
// [RecordedEvent.Upcasted] yet (events from the store's reads are), and decodes
// its data into the registered Go type. Errors are [DecodeError]s naming the event;
// an unregistered type wraps [ErrUnknownEventType].
func (r *Registry) Decode(recorded *RecordedEvent) (EventData, error) {
	upcast, err := r.Upcast(recorded)
	if err != nil {
		return nil, err
	}
	r.mu.RLock()
	goType, ok := r.types[upcast.EventType]
	r.mu.RUnlock()
	if !ok {
		return nil, decodeError(upcast, ErrUnknownEventType)
	}
	return decodeInto(goType, upcast)
}

func decodeInto(goType reflect.Type, recorded *RecordedEvent) (EventData, error) {
	isPointer := goType.Kind() == reflect.Pointer
	target := goType
	if isPointer {
		target = goType.Elem()
	}
	value := reflect.New(target)
	if err := json.Unmarshal(recorded.Data, value.Interface()); err != nil {
		return nil, decodeError(recorded, err)
	}
	if !isPointer {
		value = value.Elem()
	}
	data, ok := value.Interface().(EventData)
	if !ok {
		return nil, decodeError(recorded, fmt.Errorf("%s does not implement EventData", goType))
	}
	return data, nil
}

func decodeError(recorded *RecordedEvent, err error) *DecodeError {
	return &DecodeError{
		StreamID:       recorded.StreamID,
		StreamVersion:  recorded.StreamVersion,
		GlobalPosition: recorded.GlobalPosition,
		EventType:      recorded.EventType,
		Err:            err,
	}
}
