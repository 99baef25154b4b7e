package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/runner"
	"github.com/mire-go/mire/store"
)

// Rebuild progress: how often the status is read (more often if lines are
// printed more often), how often a line is printed when stderr is not a
// terminal, and how long a partition may go without a leader before the
// command says so.
const (
	rebuildPollInterval     = 250 * time.Millisecond
	rebuildProgressDefault  = 5 * time.Second
	rebuildLeaderlessWarnAt = 5 * time.Second
)

func newSubscriptionCommand(a *app) *cobra.Command {
	var partition int
	partitionFlag := func(cmd *cobra.Command) {
		cmd.Flags().IntVar(&partition, "partition", -1, "only `partition` (default: every partition)")
	}
	partitions := func(cmd *cobra.Command) []int {
		if cmd.Flags().Changed("partition") {
			return []int{partition}
		}
		return nil
	}

	pause := &cobra.Command{
		Use:   "pause NAME",
		Short: "Stop dispatching a subscription's events until resumed; leaders keep their leases",
		Args:  exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, err := a.control(cmd.Context())
			if err != nil {
				return err
			}
			if err := c.Pause(cmd.Context(), args[0], partitions(cmd)...); err != nil {
				return err
			}
			return a.reportAction(args[0], "paused", partitions(cmd))
		},
	}
	resume := &cobra.Command{
		Use:   "resume NAME",
		Short: "Dispatch a paused or failed subscription again (a failed event is tried again)",
		Args:  exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, err := a.control(cmd.Context())
			if err != nil {
				return err
			}
			if err := c.Resume(cmd.Context(), args[0], partitions(cmd)...); err != nil {
				return err
			}
			return a.reportAction(args[0], "resumed", partitions(cmd))
		},
	}

	var to int64
	var truncate []string
	reset := &cobra.Command{
		Use:   "reset NAME --to POSITION",
		Short: "Move a subscription's checkpoint to POSITION; it goes on from the next one",
		Long: `Move a subscription's checkpoint to POSITION (0: the start of the log). Its
leaders are fenced and their batches in flight roll back; the subscription
goes on from POSITION+1 with the next leader. A failed partition runs again,
a paused one stays paused, parked streams are released.

--truncate empties read model tables in the reset's transaction, while no
batch of the subscription can commit (needs TRUNCATE on them). Without it
the handler sees the events after POSITION again on top of what it wrote.`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("to") {
				return usageErrorf("reset needs --to POSITION (0 rebuilds from the start)")
			}
			c, es, err := a.control(cmd.Context())
			if err != nil {
				return err
			}
			if err := resetSubscription(cmd.Context(), c, es, args[0], to, partitions(cmd), truncate); err != nil {
				return err
			}
			return a.reportAction(args[0], fmt.Sprintf("reset to %d", to), partitions(cmd))
		},
	}
	reset.Flags().Int64Var(&to, "to", 0, "the new checkpoint `position`")

	var rw rebuildOptions
	rebuild := &cobra.Command{
		Use:   "rebuild NAME",
		Short: "Reset a subscription to 0 and show its replay's progress (with --wait)",
		Long: `Reset a subscription to the start of the log, so that its handler sees every
event again. A rebuild makes progress only while a runner runs the
subscription somewhere (its service, or any process with a runner for it):
this command moves the checkpoint and watches, it handles nothing itself.

Give --truncate the read model's tables to empty them in the reset's
transaction (see 'mire subscription reset --help'); otherwise the handler
must tolerate seeing events again.

Without --wait the command returns after the reset. With --wait it shows
the replay's progress on stderr (events/s and an ETA, redrawn on a terminal,
a line every --progress-interval otherwise) until every partition reaches
the head the log had at the reset, then prints a summary. It fails if a
partition fails meanwhile. 'mire subscription wait NAME' watches a rebuild
already under way.`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, es, err := a.control(cmd.Context())
			if err != nil {
				return err
			}
			head, err := es.Head(cmd.Context())
			if err != nil {
				return err
			}
			if err := resetSubscription(cmd.Context(), c, es, args[0], 0, partitions(cmd), truncate); err != nil {
				return err
			}
			if ps := partitions(cmd); len(ps) == 1 {
				rw.partition = &ps[0]
			}
			if !rw.wait {
				if a.json {
					return writeJSON(a.stdout, rebuildStarted{Subscription: args[0], Action: "reset to 0",
						Partition: rw.partition, Target: head})
				}
				fmt.Fprintf(a.stdout, "reset %s to 0: its runners replay the log up to position %s\n"+
					"(watch it with: mire subscription wait %s)\n", args[0], count(head), args[0])
				return nil
			}
			rw.from = 0
			return waitForSubscription(cmd.Context(), a, c, args[0], head, rw)
		},
	}
	rebuild.Flags().BoolVar(&rw.wait, "wait", false, "wait for the rebuild to finish, showing its progress")
	for _, c := range []*cobra.Command{reset, rebuild} {
		c.Flags().StringSliceVar(&truncate, "truncate", nil, "empty read model `table` in the reset's transaction (repeat or separate with commas)")
	}

	var waitTo int64
	wait := &cobra.Command{
		Use:   "wait NAME",
		Short: "Show a subscription's progress until it reaches a position (default: the head)",
		Args:  exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, es, err := a.control(cmd.Context())
			if err != nil {
				return err
			}
			target := waitTo
			if !cmd.Flags().Changed("to") {
				if target, err = es.Head(cmd.Context()); err != nil {
					return err
				}
			}
			rw.wait, rw.from = true, -1
			if ps := partitions(cmd); len(ps) == 1 {
				rw.partition = &ps[0]
			}
			return waitForSubscription(cmd.Context(), a, c, args[0], target, rw)
		},
	}
	wait.Flags().Int64Var(&waitTo, "to", 0, "the `position` to wait for (default: the head now)")
	for _, c := range []*cobra.Command{rebuild, wait} {
		c.Flags().DurationVar(&rw.progressInterval, "progress-interval", rebuildProgressDefault,
			"print progress this often when stderr is not a terminal")
		c.PreRunE = func(*cobra.Command, []string) error {
			if rw.progressInterval <= 0 {
				return usageErrorf("--progress-interval must be positive")
			}
			return nil
		}
	}
	for _, c := range []*cobra.Command{pause, resume, reset, rebuild, wait} {
		partitionFlag(c)
	}
	return group("subscription", "Operate subscriptions (pause, resume, reset, rebuild, wait)", pause, resume, reset, rebuild, wait)
}

// actionResult is what a subscription or parked-stream command did.
type actionResult struct {
	Subscription string `json:"subscription"`
	Action       string `json:"action"`
	Partition    *int   `json:"partition"`
	StreamID     string `json:"stream_id,omitempty"`
}

func (a *app) reportAction(subscription, action string, partitions []int) error {
	r := actionResult{Subscription: subscription, Action: action}
	if len(partitions) == 1 {
		r.Partition = &partitions[0]
	}
	if a.json {
		return writeJSON(a.stdout, r)
	}
	which := "every partition"
	if r.Partition != nil {
		which = fmt.Sprintf("partition %d", *r.Partition)
	}
	fmt.Fprintf(a.stdout, "%s %s (%s)\n", action, subscription, which)
	return nil
}

// resetSubscription resets name, truncating tables in the reset's
// transaction. A reset racing a batch that wrote the tables can deadlock
// with it; PostgreSQL then aborts one of the two, and a reset it aborted is
// tried again.
func resetSubscription(ctx context.Context, c *runner.Control, es *store.EventStore, name string, position int64, partitions []int, tables []string) error {
	opts := &runner.ResetOpts{}
	if len(partitions) == 1 {
		opts.Partition = &partitions[0]
	}
	if len(tables) > 0 {
		truncate, err := truncateStatement(tables)
		if err != nil {
			return err
		}
		opts.Hook = func(ctx context.Context, scope *store.Scope) error {
			_, err := scope.Tx().Exec(ctx, truncate)
			if err != nil {
				return es.DatabaseError("truncate "+strings.Join(tables, ", "), err)
			}
			return nil
		}
	}
	var err error
	for range 3 {
		err = c.Reset(ctx, name, position, opts)
		if kind, ok := core.DBKind(err); !ok || !kind.Transient() {
			return err
		}
	}
	return err
}

// truncateStatement is TRUNCATE of tables named "table" or
// "schema.table". It is the command's one statement outside queries/:
// table names cannot be parameters. Each is quoted as an identifier.
func truncateStatement(tables []string) (string, error) {
	quoted := make([]string, 0, len(tables))
	for _, table := range tables {
		parts := strings.Split(strings.TrimSpace(table), ".")
		if len(parts) > 2 || slices.Contains(parts, "") {
			return "", usageErrorf("--truncate %q: want table or schema.table", table)
		}
		quoted = append(quoted, pgx.Identifier(parts).Sanitize())
	}
	return "TRUNCATE " + strings.Join(quoted, ", "), nil
}

type rebuildOptions struct {
	wait             bool
	progressInterval time.Duration
	// partition, when set, is the one partition to watch.
	partition *int
	// from is where the replay started, for its rate: 0 for a rebuild,
	// -1 for wherever the first status finds it.
	from int64
}

// rebuildStarted is what rebuild without --wait prints.
type rebuildStarted struct {
	Subscription string `json:"subscription"`
	Action       string `json:"action"`
	Partition    *int   `json:"partition"`
	// Target is the head at the reset: the replay reaches it first.
	Target int64 `json:"target"`
}

// rebuildSummary is what rebuild and wait print at the end.
type rebuildSummary struct {
	Subscription string `json:"subscription"`
	// Target is the position every partition had to reach: the head
	// when the rebuild or wait started.
	Target int64 `json:"target"`
	// Checkpoint is the lowest partition's, Lag the highest, at the end.
	Checkpoint int64 `json:"checkpoint"`
	Lag        int64 `json:"lag"`
	Done       bool  `json:"done"`
	// Events is how far the partitions moved while the command watched
	// (positions of the log), in Seconds.
	Events          int64   `json:"events"`
	Seconds         float64 `json:"seconds"`
	EventsPerSecond float64 `json:"events_per_second"`
}

// waitForSubscription polls name's status until every partition (or the
// one asked for) has a checkpoint at target or beyond, showing progress.
// It fails when a partition fails.
func waitForSubscription(ctx context.Context, a *app, c *runner.Control, name string, target int64, o rebuildOptions) error {
	p := newProgress(a.stderr, name, "events", target, o.progressInterval)
	var leaderless time.Time
	warned := map[string]bool{}
	warnOnce := func(key, format string, args ...any) {
		if !warned[key] {
			warned[key] = true
			if p.tty && p.drawn {
				fmt.Fprintln(a.stderr)
			}
			fmt.Fprintf(a.stderr, "mire: "+format+"\n", args...)
		}
	}
	var last []runner.LeaseStatus
	for {
		statuses, err := c.Status(ctx, name)
		if err != nil {
			return err
		}
		if o.partition != nil {
			statuses = slices.DeleteFunc(statuses, func(s runner.LeaseStatus) bool { return s.Partition != *o.partition })
		}
		if len(statuses) == 0 {
			return fmt.Errorf("%w: %q", runner.ErrUnknownSubscription, name)
		}
		last = statuses
		done, minCheckpoint, allLed := int64(0), statuses[0].Checkpoint, true
		for _, s := range statuses {
			done += min(s.Checkpoint, target)
			minCheckpoint = min(minCheckpoint, s.Checkpoint)
			switch {
			case s.State == runner.StateFailed && s.Checkpoint < target:
				p.finish(done/int64(len(statuses)), false)
				return fmt.Errorf("subscription %s partition %d failed at position %d: %s", name, s.Partition, s.ErrorPosition, s.LastError)
			case s.State == runner.StatePaused && s.Checkpoint < target:
				warnOnce(fmt.Sprint("paused", s.Partition), "%s partition %d is paused: it makes no progress until resumed", name, s.Partition)
			}
			if s.Worker == "" {
				allLed = false
			}
		}
		switch {
		case allLed:
			leaderless = time.Time{}
		case leaderless.IsZero():
			leaderless = time.Now()
		case time.Since(leaderless) > rebuildLeaderlessWarnAt:
			warnOnce("leaderless", "no runner leads every partition of %s: it makes progress only while a runner runs it", name)
		}
		mean := done / int64(len(statuses))
		if o.from < 0 {
			o.from = mean
		}
		if minCheckpoint >= target {
			p.finish(mean, true)
			break
		}
		p.update(mean)
		select {
		case <-ctx.Done():
			p.finish(mean, false)
			return fmt.Errorf("interrupted at position %s of %s (the rebuild goes on in the runners)", count(mean), count(target))
		case <-time.After(min(rebuildPollInterval, o.progressInterval)):
		}
	}
	elapsed := p.elapsed()
	s := rebuildSummary{Subscription: name, Target: target, Done: true, Seconds: elapsed.Seconds(),
		Checkpoint: last[0].Checkpoint, Lag: last[0].Lag, Events: max(target-o.from, 0)}
	for _, st := range last {
		s.Checkpoint = min(s.Checkpoint, st.Checkpoint)
		s.Lag = max(s.Lag, st.Lag)
	}
	if elapsed > 0 {
		s.EventsPerSecond = float64(s.Events) / elapsed.Seconds()
	}
	if a.json {
		return writeJSON(a.stdout, s)
	}
	fmt.Fprintf(a.stdout, "%s: reached position %s, %s events in %s (%s events/s); checkpoint %s, lag %s\n", name,
		count(target), count(s.Events), elapsed.Round(time.Millisecond), count(int64(s.EventsPerSecond)), count(s.Checkpoint), count(s.Lag))
	return nil
}
