package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/mire-go/mire/core"
	"github.com/mire-go/mire/core/lifecycle"
	"github.com/mire-go/mire/store"
)

// tailPollDefault is how often tail -f reads when no notification woke it.
const tailPollDefault = time.Second

type tailOptions struct {
	category string
	types    []string
	from     int64
	lines    int
	follow   bool
	poll     time.Duration
}

func newTailCommand(a *app) *cobra.Command {
	var o tailOptions
	cmd := &cobra.Command{
		Use:   "tail",
		Short: "Print the log's events in position order; -f follows new ones",
		Long: `Print the log's events in global position order, of one category and of
some event types if asked: the last --lines (10) events, or every event from
--from on. With -f it then follows the log, printing events as they are
numbered, until interrupted: it wakes on the sequencer's notification and
polls every --poll-interval in case one is lost. With -f and neither --from
nor --lines it starts at the head.

Each event is one line: position, time recorded (UTC), stream@version,
type and data. With --json, one JSON object per line.

Reading the log numbers committed events first, as every reader does.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("lines") {
				o.lines = 10
				if o.follow {
					o.lines = 0
				}
			}
			if !cmd.Flags().Changed("from") {
				o.from = -1
			}
			if o.from == 0 || o.from < -1 {
				return usageErrorf("--from must be a position, 1 or more")
			}
			if o.lines < 0 {
				return usageErrorf("--lines must not be negative")
			}
			if o.poll <= 0 {
				return usageErrorf("--poll-interval must be positive")
			}
			return runTail(cmd.Context(), a, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.category, "category", "", "only the streams of `category`")
	f.StringSliceVar(&o.types, "type", nil, "only events of this `type` (repeat or separate with commas)")
	f.Int64Var(&o.from, "from", 0, "start at `position` (inclusive)")
	f.IntVarP(&o.lines, "lines", "n", 10, "start with the last `N` events (default 10, or 0 with -f)")
	f.BoolVarP(&o.follow, "follow", "f", false, "keep printing new events until interrupted")
	f.DurationVar(&o.poll, "poll-interval", tailPollDefault, "with -f, read at least this often")
	return cmd
}

func runTail(ctx context.Context, a *app, o tailOptions) error {
	es, err := a.store(ctx)
	if err != nil {
		return err
	}
	t := &tail{a: a, es: es, o: o}
	var wake <-chan struct{}
	if o.follow {
		// Listen before the first read, so nothing sequenced after it goes
		// unannounced.
		w, stop := t.listen(ctx)
		defer stop()
		wake = w
	}
	head, err := es.Head(ctx)
	if err != nil {
		return err
	}
	next := head + 1
	switch {
	case o.from > 0:
		next = o.from
	case o.lines > 0 && head > 0:
		if err := t.printLast(ctx, head); err != nil {
			return quietOnCancel(ctx, err)
		}
	}
	if !o.follow {
		if o.from > 0 {
			_, err := t.printFrom(ctx, next, head)
			return err
		}
		return nil
	}
	fmt.Fprintf(a.stderr, "following schema %s from position %d (Ctrl-C stops)\n", es.Schema(), next)
	for {
		next, err = t.printFrom(ctx, next, 0)
		if err != nil {
			return quietOnCancel(ctx, err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
		case <-time.After(o.poll):
		}
	}
}

// quietOnCancel is nil for an error caused by the interrupt that ends a
// command, err otherwise.
func quietOnCancel(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

type tail struct {
	a  *app
	es *store.EventStore
	o  tailOptions
}

func (t *tail) query() core.StreamQuery {
	return core.StreamQuery{Category: t.o.category, EventTypes: t.o.types}
}

// printLast prints the last --lines events at or before head, oldest
// first.
func (t *tail) printLast(ctx context.Context, head int64) error {
	q := t.query()
	q.Direction, q.FromPosition, q.Limit = core.Backward, head, t.o.lines
	events, err := t.es.ReadEvents(ctx, q)
	if err != nil {
		return err
	}
	slices.Reverse(events)
	for _, e := range events {
		if err := t.print(e); err != nil {
			return err
		}
	}
	return nil
}

// printFrom prints the events from position from on, up to through
// (0: as far as the log goes), and returns the position after the last
// one it read.
func (t *tail) printFrom(ctx context.Context, from, through int64) (int64, error) {
	q := t.query()
	q.FromPosition = from
	next := from
	for e, err := range t.es.Read(ctx, q) {
		if err != nil {
			return next, err
		}
		if through > 0 && e.GlobalPosition > through {
			break
		}
		if err := t.print(e); err != nil {
			return next, err
		}
		next = e.GlobalPosition + 1
	}
	return next, nil
}

func (t *tail) print(e *core.RecordedEvent) error {
	if t.a.json {
		return jsonLine(t.a.stdout, toEventJSON(e))
	}
	_, err := fmt.Fprintf(t.a.stdout, "%d  %s  %s@%d  %s  %s\n", e.GlobalPosition,
		e.RecordedAt.UTC().Format("2006-01-02T15:04:05.000Z"), e.StreamID, e.StreamVersion, e.EventType, compactJSON(e.Data))
	return err
}

// listen follows the store's notification channel on a connection of its
// own, reconnecting after losing it, and signals the returned channel on
// each notification (and after each reconnection, for what it missed).
// Polling covers the time it is down. stop ends it and waits for it.
func (t *tail) listen(ctx context.Context) (wake <-chan struct{}, stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	ch := make(chan struct{}, 1)
	signal := func() {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	ready := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		backoff := lifecycle.Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second}
		for ctx.Err() == nil {
			err := t.listenOnce(ctx, func() { once.Do(func() { close(ready) }); backoff.Success(); signal() }, signal)
			if ctx.Err() != nil {
				return
			}
			delay := backoff.Failure()
			if backoff.Failures() == 1 {
				fmt.Fprintf(t.a.stderr, "mire: not listening for notifications (%v); polling every %s until it is back\n", err, t.o.poll)
			}
			once.Do(func() { close(ready) })
			select {
			case <-ctx.Done():
			case <-time.After(delay):
			}
		}
	}()
	select {
	case <-ready:
	case <-ctx.Done():
	}
	return ch, func() { cancel(); wg.Wait() }
}

func (t *tail) listenOnce(ctx context.Context, listening, notified func()) error {
	conn, err := pgx.ConnectConfig(ctx, t.es.Pool().Config().ConnConfig.Copy())
	if err != nil {
		return err
	}
	defer func() {
		closeCtx, cancel := lifecycle.CleanupContext(ctx, time.Second)
		defer cancel()
		_ = conn.Close(closeCtx) // dropped either way
	}()
	if err := newDB(t.es).listen(ctx, conn); err != nil {
		return err
	}
	listening()
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		}
		notified()
	}
}
