package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/mire-go/mire/runner"
	"github.com/mire-go/mire/saga"
	"github.com/mire-go/mire/store"
)

func newStatusCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the log's head, the sequencer's backlog and every subscription partition",
		Long: `Show the log's head, the events committed but not yet numbered (and how old
the oldest is), and every subscription partition: its leader, fence token,
lease expiry, checkpoint, lag, state, parked streams and last error.

The backlog reads the sequencer's own table, which only the schema's owner
may: as the runtime role it shows as unknown.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			es, err := a.store(cmd.Context())
			if err != nil {
				return err
			}
			report, err := collectStatus(cmd.Context(), es)
			if err != nil {
				return err
			}
			if a.json {
				return writeJSON(a.stdout, report)
			}
			return printStatus(a.stdout, report)
		},
	}
}

// statusReport is `mire status`. Each section has a field here and an
// entry in statusSections.
type statusReport struct {
	Schema string `json:"schema"`
	// Now is the database's clock, which relative times are from.
	Now           time.Time         `json:"now"`
	Log           logStatus         `json:"log"`
	Subscriptions []partitionStatus `json:"subscriptions"`
	// Sagas counts the sagas in each status, every status listed.
	Sagas map[saga.Status]int64 `json:"sagas"`
}

type logStatus struct {
	Head int64 `json:"head"`
	// Unsequenced counts the events committed and not yet numbered, and
	// OldestUnsequencedAt is when the oldest of them was recorded. Both
	// are null when the role may not read the sequencer's state
	// (UnsequencedError says why).
	Unsequenced         *int64     `json:"unsequenced"`
	OldestUnsequencedAt *time.Time `json:"oldest_unsequenced_at"`
	UnsequencedError    string     `json:"unsequenced_error,omitempty"`
}

type partitionStatus struct {
	Subscription   string     `json:"subscription"`
	Partition      int        `json:"partition"`
	Partitions     int        `json:"partitions"`
	Leader         string     `json:"leader"`
	LeaseExpiresAt *time.Time `json:"lease_expires_at"`
	FenceToken     int64      `json:"fence_token"`
	Checkpoint     int64      `json:"checkpoint"`
	Lag            int64      `json:"lag"`
	State          string     `json:"state"`
	Attempts       int        `json:"attempts"`
	ParkedStreams  int        `json:"parked_streams"`
	LastError      string     `json:"last_error"`
	ErrorPosition  int64      `json:"error_position"`
	UpdatedAt      time.Time  `json:"updated_at"`
}

// statusSection is one part of the report: collect fills it in, print
// shows it.
type statusSection struct {
	collect func(ctx context.Context, es *store.EventStore, r *statusReport) error
	print   func(w io.Writer, r *statusReport) error
}

// statusSections are the report's parts, in order.
var statusSections = []statusSection{
	{collectLog, printLog},
	{collectSubscriptions, printSubscriptions},
	{collectSagas, printSagas},
}

func collectStatus(ctx context.Context, es *store.EventStore) (*statusReport, error) {
	r := &statusReport{Schema: es.Schema(), Now: time.Now().UTC(), Subscriptions: []partitionStatus{}}
	for _, s := range statusSections {
		if err := s.collect(ctx, es, r); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func printStatus(w io.Writer, r *statusReport) error {
	for i, s := range statusSections {
		if i > 0 {
			fmt.Fprintln(w)
		}
		if err := s.print(w, r); err != nil {
			return err
		}
	}
	return nil
}

func collectLog(ctx context.Context, es *store.EventStore, r *statusReport) error {
	head, err := es.Head(ctx)
	if err != nil {
		return err
	}
	r.Log.Head = head
	b, err := newDB(es).backlog(ctx)
	switch {
	case isPermissionDenied(err):
		r.Log.UnsequencedError = "the role may not read the sequencer's state (the owner may)"
		return nil
	case err != nil:
		return err
	}
	r.Now = b.now
	r.Log.Unsequenced = &b.events
	if b.events > 0 {
		r.Log.OldestUnsequencedAt = &b.oldest
	}
	return nil
}

func printLog(w io.Writer, r *statusReport) error {
	fmt.Fprintf(w, "schema %s: head %s\n", r.Schema, count(r.Log.Head))
	switch {
	case r.Log.Unsequenced == nil:
		fmt.Fprintf(w, "unsequenced: unknown: %s\n", r.Log.UnsequencedError)
	case *r.Log.Unsequenced == 0:
		fmt.Fprintln(w, "unsequenced: none")
	default:
		fmt.Fprintf(w, "unsequenced: %s events, the oldest recorded %s\n",
			count(*r.Log.Unsequenced), relative(r.Now, *r.Log.OldestUnsequencedAt))
	}
	return nil
}

func collectSubscriptions(ctx context.Context, es *store.EventStore, r *statusReport) error {
	statuses, err := runner.NewControl(es).Status(ctx, "")
	if err != nil {
		return err
	}
	for _, s := range statuses {
		p := partitionStatus{Subscription: s.Subscription, Partition: s.Partition, Partitions: s.Partitions,
			Leader: s.Worker, FenceToken: s.FenceToken, Checkpoint: s.Checkpoint, Lag: s.Lag, State: string(s.State),
			Attempts: s.Attempts, ParkedStreams: s.ParkedStreams, LastError: s.LastError, ErrorPosition: s.ErrorPosition,
			UpdatedAt: s.UpdatedAt.UTC()}
		if s.Worker != "" && !s.LeaseExpiresAt.IsZero() {
			expires := s.LeaseExpiresAt.UTC()
			p.LeaseExpiresAt = &expires
		}
		r.Subscriptions = append(r.Subscriptions, p)
	}
	return nil
}

func printSubscriptions(w io.Writer, r *statusReport) error {
	if len(r.Subscriptions) == 0 {
		fmt.Fprintln(w, "subscriptions: none")
		return nil
	}
	t := newTable(w)
	fmt.Fprintln(t, "SUBSCRIPTION\tPARTITION\tSTATE\tLEADER\tFENCE\tLEASE EXPIRES\tCHECKPOINT\tLAG\tPARKED\tLAST ERROR")
	for _, p := range r.Subscriptions {
		expires := "-"
		if p.LeaseExpiresAt != nil {
			expires = relative(r.Now, *p.LeaseExpiresAt)
		}
		lastError := "-"
		if p.LastError != "" {
			lastError = fmt.Sprintf("at %d: %s", p.ErrorPosition, oneLine(p.LastError, 60))
		}
		fmt.Fprintf(t, "%s\t%d/%d\t%s\t%s\t%d\t%s\t%s\t%s\t%d\t%s\n", p.Subscription, p.Partition, p.Partitions, p.State,
			orDash(p.Leader), p.FenceToken, expires, count(p.Checkpoint), count(p.Lag), p.ParkedStreams, lastError)
	}
	return t.Flush()
}
