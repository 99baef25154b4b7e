package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/mire-go/mire/store"
)

// sequenceReportDefault is how often `mire sequence` says how far the log
// has got.
const sequenceReportDefault = time.Minute

func newSequenceCommand(a *app) *cobra.Command {
	var once bool
	var interval, report time.Duration
	cmd := &cobra.Command{
		Use:   "sequence",
		Short: "Number committed events: once, or continuously until interrupted",
		Long: `Give global positions to the events committed since the last sweep: once with
--once, or continuously every --interval until interrupted, for deployments
that host the sequencer apart from their runners (set
runner.Config.NoSequencer there). Any number of sequencers may run against
one schema: their sweeps take turns.

Running continuously it reports the head every --report-interval when it
moved, and failures (with backoff) on stderr.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Flags().Changed("interval") && once {
				return usageErrorf("--once and --interval exclude each other")
			}
			if interval < 0 || report < 0 {
				return usageErrorf("--interval and --report-interval must not be negative")
			}
			es, err := a.store(cmd.Context())
			if err != nil {
				return err
			}
			if once {
				return sequenceOnce(cmd.Context(), a, es)
			}
			return sequenceContinuously(cmd.Context(), a, es, interval, report)
		},
	}
	cmd.Flags().BoolVar(&once, "once", false, "sweep once and exit")
	cmd.Flags().DurationVar(&interval, "interval", store.SequencerIntervalDefault, "pause between sweeps")
	cmd.Flags().DurationVar(&report, "report-interval", sequenceReportDefault, "print the head this often when it moved (0: never)")
	return cmd
}

type sequenceResult struct {
	Schema   string `json:"schema"`
	Assigned int64  `json:"assigned"`
	Head     int64  `json:"head"`
}

func sequenceOnce(ctx context.Context, a *app, es *store.EventStore) error {
	assigned, err := es.Sequence(ctx)
	if err != nil {
		return err
	}
	head, err := es.Head(ctx)
	if err != nil {
		return err
	}
	if a.json {
		return writeJSON(a.stdout, sequenceResult{Schema: es.Schema(), Assigned: assigned, Head: head})
	}
	fmt.Fprintf(a.stdout, "schema %s: numbered %s events; head %s\n", es.Schema(), count(assigned), count(head))
	return nil
}

func sequenceContinuously(ctx context.Context, a *app, es *store.EventStore, interval, report time.Duration) error {
	// Fail at once on a wrong URL or schema, rather than in the background.
	head, err := es.Head(ctx)
	if err != nil {
		return err
	}
	seq, err := store.NewSequencer(es, &store.SequencerConfig{Interval: interval})
	if err != nil {
		return err
	}
	if err := seq.Start(ctx); err != nil {
		return err
	}
	fmt.Fprintf(a.stderr, "sequencing schema %s every %s from head %s (Ctrl-C stops)\n", es.Schema(), interval, count(head))
	var tick <-chan time.Time
	if report > 0 {
		ticker := time.NewTicker(report)
		defer ticker.Stop()
		tick = ticker.C
	}
	started := head
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-tick:
			now, err := es.Head(ctx)
			if err != nil {
				continue // the sequencer logs its own failures
			}
			if now != head {
				fmt.Fprintf(a.stderr, "head %s (+%s)\n", count(now), count(now-head))
				head = now
			}
		}
	}
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := seq.Stop(stopCtx); err != nil {
		return err
	}
	final, err := es.Head(stopCtx)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stderr, "stopped; head %s (+%s since start)\n", count(final), count(final-started))
	return nil
}
