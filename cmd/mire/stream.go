package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/mire-go/mire/core"
)

func newStreamCommand(a *app) *cobra.Command {
	var fromVersion int64
	var limit int
	show := &cobra.Command{
		Use:   "show STREAM",
		Short: "Print a stream's events: versions, positions, types, metadata and data",
		Long: `Print a stream's events in version order: version, global position ("-"
until the sequencer numbers it), type, when it was recorded, its event id,
metadata (correlation, causation, headers) and data. --json prints
{"stream_id", "version", "events": [...]}. Exits with 4 if the stream has no
events.`,
		Args: exactArgs("STREAM"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if fromVersion < 0 || limit < 0 {
				return usageErrorf("--from-version and --limit must not be negative")
			}
			return streamShow(cmd.Context(), a, args[0], fromVersion, limit)
		},
	}
	show.Flags().Int64Var(&fromVersion, "from-version", 0, "start at `version` (inclusive)")
	show.Flags().IntVar(&limit, "limit", 0, "print at most `N` events (0: all)")
	return group("stream", "Inspect one stream (show)", show)
}

func streamShow(ctx context.Context, a *app, streamID string, fromVersion int64, limit int) error {
	es, err := a.store(ctx)
	if err != nil {
		return err
	}
	version, err := es.StreamVersion(ctx, streamID)
	if err != nil {
		return err
	}
	if version == 0 {
		return notFoundErrorf("stream %q has no events", streamID)
	}
	events := es.Read(ctx, core.StreamQuery{StreamID: streamID, FromVersion: fromVersion, Limit: limit})
	if a.json {
		// {"stream_id": .., "version": .., "events": [..]}, written event by
		// event so that a long stream is never held whole.
		id, err := json.Marshal(streamID)
		if err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, `{"stream_id":%s,"version":%d,"events":[`, id, version)
		first := true
		for e, err := range events {
			if err != nil {
				return err
			}
			b, err := json.Marshal(toEventJSON(e))
			if err != nil {
				return err
			}
			if !first {
				fmt.Fprint(a.stdout, ",")
			}
			first = false
			fmt.Fprintf(a.stdout, "\n  %s", b)
		}
		fmt.Fprint(a.stdout, "\n]}\n")
		return nil
	}
	now := time.Now()
	fmt.Fprintf(a.stdout, "stream %s: version %d\n", streamID, version)
	for e, err := range events {
		if err != nil {
			return err
		}
		printEventBlock(a.stdout, now, e)
	}
	return nil
}

// printEventBlock prints one event as a few aligned lines.
func printEventBlock(w io.Writer, now time.Time, e *core.RecordedEvent) {
	fmt.Fprintf(w, "\nversion %d  position %s  %s  %s (%s)\n", e.StreamVersion, positionOrDash(e.GlobalPosition),
		e.EventType, relative(now, e.RecordedAt), e.RecordedAt.UTC().Format(time.RFC3339Nano))
	t := newTable(w)
	fmt.Fprintf(t, "  event id\t%s\n", e.Metadata.EventID)
	if m := metadataLine(e.Metadata); m != "" {
		fmt.Fprintf(t, "  metadata\t%s\n", m)
	}
	fmt.Fprintf(t, "  data\t%s\n", compactJSON(e.Data))
	_ = t.Flush() // a terminal report: nothing to do about a failed write
}

// streamsPageSize is how many streams `streams` reads per round trip.
const streamsPageSize = 500

func newStreamsCommand(a *app) *cobra.Command {
	var category, after string
	var limit int
	cmd := &cobra.Command{
		Use:   "streams",
		Short: "List streams, of one category with --category",
		Long: `List streams in stream id order, with their version (their number of
events) and when their first and last events were recorded. --after
continues a listing after a stream id; --limit stops it (0: no limit).
--json prints {"streams": [...], "next_after": ID}, next_after being set
when --limit stopped the listing before its end.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 0 {
				return usageErrorf("--limit must not be negative")
			}
			return listStreams(cmd.Context(), a, category, after, limit)
		},
	}
	cmd.Flags().StringVar(&category, "category", "", "only the streams of `category`")
	cmd.Flags().StringVar(&after, "after", "", "start after stream `ID`")
	cmd.Flags().IntVar(&limit, "limit", 0, "list at most `N` streams (0: all)")
	return cmd
}

func listStreams(ctx context.Context, a *app, category, after string, limit int) error {
	es, err := a.store(ctx)
	if err != nil {
		return err
	}
	d := newDB(es)
	now := time.Now()
	listed, nextAfter := 0, ""
	if a.json {
		// {"streams": [..], "next_after": ID}, written page by page.
		fmt.Fprint(a.stdout, `{"streams":[`)
	}
	for {
		page := streamsPageSize
		if limit > 0 {
			page = min(page, limit-listed)
		}
		rows, err := d.streams(ctx, category, after, page)
		if err != nil {
			return err
		}
		if a.json {
			for _, r := range rows {
				b, err := json.Marshal(r)
				if err != nil {
					return err
				}
				if listed > 0 {
					fmt.Fprint(a.stdout, ",")
				}
				fmt.Fprintf(a.stdout, "\n  %s", b)
				listed++
			}
		} else {
			t := newTable(a.stdout)
			if listed == 0 && len(rows) > 0 {
				fmt.Fprintln(t, "STREAM\tVERSION\tFIRST EVENT\tLAST EVENT")
			}
			for _, r := range rows {
				fmt.Fprintf(t, "%s\t%d\t%s\t%s\n", r.StreamID, r.Version, relative(now, r.FirstRecordedAt), relative(now, r.LastRecordedAt))
				listed++
			}
			if err := t.Flush(); err != nil {
				return err
			}
		}
		if len(rows) < page {
			break
		}
		after = rows[len(rows)-1].StreamID
		if limit > 0 && listed >= limit {
			// Is there more?
			more, err := d.streams(ctx, category, after, 1)
			if err != nil {
				return err
			}
			if len(more) > 0 {
				nextAfter = after
			}
			break
		}
	}
	if a.json {
		fmt.Fprint(a.stdout, "\n]")
		if nextAfter != "" {
			id, err := json.Marshal(nextAfter)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, `,"next_after":%s`, id)
		}
		fmt.Fprint(a.stdout, "}\n")
		return nil
	}
	if listed == 0 {
		fmt.Fprintln(a.stdout, "no streams")
	}
	if nextAfter != "" {
		fmt.Fprintf(a.stdout, "(more: --after %q)\n", nextAfter)
	}
	return nil
}
