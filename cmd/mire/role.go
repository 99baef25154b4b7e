package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newRoleCommand(a *app) *cobra.Command {
	grant := &cobra.Command{
		Use:   "grant ROLE",
		Short: "Give ROLE what mire's runtime needs in the schema, and nothing that rewrites history",
		Long: `Give ROLE what the application needs in the schema: append, read, load, save,
snapshot, sequence and run subscriptions, but never update, delete or
truncate events, nor write the log or the sequencer's state. Run it as the
schema's owner, after 'mire migrate up'; later migrations grant what they add
to every role given it. It is idempotent. See docs/runtime-role.md.`,
		Args: exactArgs("ROLE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			es, err := a.store(cmd.Context())
			if err != nil {
				return err
			}
			if err := es.GrantRuntime(cmd.Context(), args[0]); err != nil {
				return err
			}
			return a.reportRole(es.Schema(), args[0], "granted")
		},
	}
	revoke := &cobra.Command{
		Use:   "revoke ROLE",
		Short: "Take back what 'role grant' gave ROLE",
		Args:  exactArgs("ROLE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			es, err := a.store(cmd.Context())
			if err != nil {
				return err
			}
			if err := es.RevokeRuntime(cmd.Context(), args[0]); err != nil {
				return err
			}
			return a.reportRole(es.Schema(), args[0], "revoked")
		},
	}
	return group("role", "Grant or revoke a runtime role's rights (grant, revoke)", grant, revoke)
}

func (a *app) reportRole(schema, role, action string) error {
	if a.json {
		return writeJSON(a.stdout, struct {
			Schema string `json:"schema"`
			Role   string `json:"role"`
			Action string `json:"action"`
		}{schema, role, action})
	}
	preposition := "to"
	if action == "revoked" {
		preposition = "from"
	}
	fmt.Fprintf(a.stdout, "schema %s: runtime rights %s %s %s\n", schema, action, preposition, role)
	return nil
}
