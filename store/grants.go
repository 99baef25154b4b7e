package store

import (
	"context"

	"github.com/mire-go/mire/core"
)

// GrantRuntime gives role what mire's runtime needs in the store's schema:
// appending, reading, loading, saving, snapshotting and sequencing, and
// nothing that could rewrite or hide history. The role may insert only the
// columns an append sets, never update, delete or truncate events, and
// never write the global log or the sequencer's state: sequencing runs with
// the owner's rights (a SECURITY DEFINER function). It is idempotent, and
// later migrations grant what they add to every role given it.
//
// Run it as the schema's owner, the role that runs [EventStore.Migrate];
// the application then connects as role. The SQL function it calls,
// <schema>.grant_runtime(role), can be run from psql instead.
func (s *EventStore) GrantRuntime(ctx context.Context, role string) error {
	if role == "" {
		return &core.InvalidInputError{Field: "role", Reason: "is empty"}
	}
	return s.interpretError("grant runtime rights to "+role, s.grantRuntime(ctx, role))
}

// RevokeRuntime takes back what [EventStore.GrantRuntime] gave role.
func (s *EventStore) RevokeRuntime(ctx context.Context, role string) error {
	if role == "" {
		return &core.InvalidInputError{Field: "role", Reason: "is empty"}
	}
	return s.interpretError("revoke runtime rights from "+role, s.revokeRuntime(ctx, role))
}
