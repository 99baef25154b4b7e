package core

import (
	"encoding/json"
	"fmt"
)

// Upcaster turns the data of an event stored under an old type or shape into
// the current one. It returns the event type to continue with (the same type
// for a shape change, a new one for a rename) and the new data. Stored events
// are never rewritten: upcasters run on every read.
type Upcaster func(data json.RawMessage) (eventType string, upcast json.RawMessage, err error)

// maxUpcastChain bounds how many upcasters one event passes through, so a
// cycle (a → b → a) is an error rather than a hang.
const maxUpcastChain = 32

// AddUpcaster registers fn for events stored as fromType. When fn returns
// another type, that type's upcaster (if any) runs next, so versions chain:
// v1 → v2 → v3. toType is the type fn produces, declared so that reads
// filtered by toType also find events stored as fromType.
func (r *Registry) AddUpcaster(fromType, toType string, fn Upcaster) error {
	if err := ValidateEventType(fromType); err != nil {
		return err
	}
	if err := ValidateEventType(toType); err != nil {
		return err
	}
	if fn == nil {
		return &InvalidInputError{Field: "upcaster", Value: fromType, Reason: "is nil"}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.upcasters[fromType]; ok {
		return &InvalidInputError{Field: "upcaster", Value: fromType, Reason: "an upcaster for this type is already registered"}
	}
	r.upcasters[fromType] = fn
	if fromType != toType {
		r.formerNames[toType] = append(r.formerNames[toType], fromType)
	}
	return nil
}

// RenameEventType registers an upcaster that renames events stored as
// oldType to newType without touching their data.
func (r *Registry) RenameEventType(oldType, newType string) error {
	return r.AddUpcaster(oldType, newType, func(data json.RawMessage) (string, json.RawMessage, error) {
		return newType, data, nil
	})
}

// Upcast returns recorded brought up to date by the registered upcasters:
// recorded itself when none applies or it is already [RecordedEvent.Upcasted],
// otherwise a copy with the new type and data, marked Upcasted. A failing
// upcaster yields a [DecodeError] naming the event.
func (r *Registry) Upcast(recorded *RecordedEvent) (*RecordedEvent, error) {
	if recorded.Upcasted {
		return recorded, nil
	}
	r.mu.RLock()
	fn, ok := r.upcasters[recorded.EventType]
	r.mu.RUnlock()
	if !ok {
		return recorded, nil
	}
	current := *recorded
	for range maxUpcastChain {
		eventType, data, err := fn(current.Data)
		if err != nil {
			return nil, decodeError(recorded, fmt.Errorf("upcasting %q: %w", current.EventType, err))
		}
		if eventType == "" {
			return nil, decodeError(recorded, fmt.Errorf("upcasting %q: upcaster returned an empty event type", current.EventType))
		}
		sameType := eventType == current.EventType
		current.EventType, current.Data, current.Upcasted = eventType, data, true
		if sameType {
			return &current, nil
		}
		r.mu.RLock()
		fn, ok = r.upcasters[eventType]
		r.mu.RUnlock()
		if !ok {
			return &current, nil
		}
	}
	return nil, decodeError(recorded, fmt.Errorf("upcasting %q: more than %d upcasters in a chain (a cycle?)", recorded.EventType, maxUpcastChain))
}

// StoredTypes returns eventType and every older type upcast into it,
// directly or through a chain, for filtering stored events by type.
func (r *Registry) StoredTypes(eventType string) []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	seen := map[string]bool{eventType: true}
	types := []string{eventType}
	for i := 0; i < len(types); i++ {
		for _, former := range r.formerNames[types[i]] {
			if !seen[former] {
				seen[former] = true
				types = append(types, former)
			}
		}
	}
	return types
}
