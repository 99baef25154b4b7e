package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/mire-go/mire/store"
)

// verify's defaults and page sizes: a stream page holds up to
// verifyStreamPage streams (and reads all their events), a log page
// verifyLogPage rows. Neither is held beyond its page.
const (
	verifyMaxUnsequencedAgeDefault = time.Minute
	verifyMaxFindingsDefault       = 1000
	verifyProgressDefault          = 5 * time.Second
	verifyStreamPage               = 1000
	verifyLogPage                  = 10_000
	// verifyStreamRows caps the findings listed for one stream.
	verifyStreamRows = 100
)

type verifyOptions struct {
	maxUnsequencedAge time.Duration
	maxFindings       int
	progressInterval  time.Duration
	quiet             bool
}

func newVerifyCommand(a *app) *cobra.Command {
	var o verifyOptions
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check the store's invariants; exit 3 with a report on any finding",
		Long: `Check the store's invariants, reading the tables a page at a time (constant
memory, whatever their size) and reporting progress on stderr:

  streams    every stream's versions run 1..n, without gaps or duplicates;
             every event recorded more than --max-unsequenced-age ago has a
             position (younger ones may be waiting for the sequencer)
  log        positions run 1..head without gaps; every log row joins an
             event (on xid and seq, as reads join them) of the same category
             and stream bucket; no event has two log rows

Each finding names the stream and versions, or the positions, at fault.
Exits with 3 if there is any, 0 if there is none. It reads only: findings
need repairing by hand, as the schema's owner. --json prints
{"ok", "head", "streams", "events", "positions", "findings": [...],
"findings_total"}.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case o.maxUnsequencedAge < 0:
				return usageErrorf("--max-unsequenced-age must not be negative")
			case o.maxFindings < 1:
				return usageErrorf("--max-findings must be 1 or more")
			case o.progressInterval <= 0:
				return usageErrorf("--progress-interval must be positive")
			}
			es, err := a.store(cmd.Context())
			if err != nil {
				return err
			}
			return runVerify(cmd.Context(), a, es, o)
		},
	}
	f := cmd.Flags()
	f.DurationVar(&o.maxUnsequencedAge, "max-unsequenced-age", verifyMaxUnsequencedAgeDefault,
		"an event this much older than the database's clock must have a position")
	f.IntVar(&o.maxFindings, "max-findings", verifyMaxFindingsDefault, "list at most `N` findings (all are counted)")
	f.DurationVar(&o.progressInterval, "progress-interval", verifyProgressDefault, "print progress this often when stderr is not a terminal")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "print no progress")
	return cmd
}

// Finding kinds.
const (
	findingVersionGap       = "version_gap"
	findingVersionDuplicate = "version_duplicate"
	findingUnsequenced      = "unsequenced"
	findingPositionGap      = "position_gap"
	findingLogWithoutEvent  = "log_without_event"
	findingCategoryMismatch = "category_mismatch"
	findingBucketMismatch   = "bucket_mismatch"
	findingLoggedTwice      = "event_logged_twice"
	findingPositionTaken    = "position_taken"
	// findingMore says a stream has more findings than verify lists.
	findingMore = "more_findings"
)

// finding is one broken invariant. Kind says which; the other fields that
// apply are set, and Message says it in words.
type finding struct {
	Kind          string `json:"kind"`
	StreamID      string `json:"stream_id,omitempty"`
	StreamVersion int64  `json:"stream_version,omitempty"`
	// FromVersion..ToVersion are missing versions; FromPosition..ToPosition
	// missing positions.
	FromVersion    int64     `json:"from_version,omitempty"`
	ToVersion      int64     `json:"to_version,omitempty"`
	GlobalPosition int64     `json:"global_position,omitempty"`
	FromPosition   int64     `json:"from_position,omitempty"`
	ToPosition     int64     `json:"to_position,omitempty"`
	Seq            int64     `json:"seq,omitempty"`
	RecordedAt     time.Time `json:"recorded_at,omitzero"`
	Message        string    `json:"message"`
}

// verifyReport is `mire verify --json`.
type verifyReport struct {
	OK            bool      `json:"ok"`
	Schema        string    `json:"schema"`
	Head          int64     `json:"head"`
	Streams       int64     `json:"streams"`
	Events        int64     `json:"events"`
	Positions     int64     `json:"positions"`
	Findings      []finding `json:"findings"`
	FindingsTotal int       `json:"findings_total"`
	Seconds       float64   `json:"seconds"`
}

type verifier struct {
	a      *app
	d      *db
	o      verifyOptions
	report verifyReport
	listed int
}

func runVerify(ctx context.Context, a *app, es *store.EventStore, o verifyOptions) error {
	started := time.Now()
	v := &verifier{a: a, d: newDB(es), o: o, report: verifyReport{Schema: es.Schema(), Findings: []finding{}}}
	head, err := es.Head(ctx)
	if err != nil {
		return err
	}
	v.report.Head = head
	if err := v.streams(ctx); err != nil {
		return err
	}
	if err := v.log(ctx); err != nil {
		return err
	}
	v.report.OK = v.report.FindingsTotal == 0
	v.report.Seconds = time.Since(started).Seconds()
	if a.json {
		if err := writeJSON(a.stdout, v.report); err != nil {
			return err
		}
	} else {
		r := v.report
		if r.FindingsTotal > 0 {
			fmt.Fprintln(a.stdout)
		}
		fmt.Fprintf(a.stdout, "schema %s: %s streams, %s events, %s positions (head %s) checked in %s: ", r.Schema,
			count(r.Streams), count(r.Events), count(r.Positions), count(r.Head), time.Since(started).Round(time.Millisecond))
		switch {
		case r.OK:
			fmt.Fprintln(a.stdout, "no findings")
		case r.FindingsTotal > v.listed:
			fmt.Fprintf(a.stdout, "%d findings (%d listed)\n", r.FindingsTotal, v.listed)
		default:
			fmt.Fprintf(a.stdout, "%d findings\n", r.FindingsTotal)
		}
	}
	if !v.report.OK {
		return errFindings
	}
	return nil
}

// add records f: printed at once for people, kept for --json, up to
// --max-findings either way.
func (v *verifier) add(f finding) {
	v.report.FindingsTotal++
	if v.listed >= v.o.maxFindings {
		return
	}
	v.listed++
	if v.a.json {
		v.report.Findings = append(v.report.Findings, f)
		return
	}
	fmt.Fprintf(v.a.stdout, "%-19s %s\n", f.Kind, f.Message)
}

func (v *verifier) progress(label, unit string, total int64) *progress {
	w := v.a.stderr
	if v.o.quiet {
		w = discard{}
	}
	return newProgress(w, label, unit, total, v.o.progressInterval)
}

// streams checks every stream, a page of streams at a time.
func (v *verifier) streams(ctx context.Context) error {
	p := v.progress("verify streams", "events", v.report.Head)
	after := ""
	for {
		rows, err := v.d.verifyStreamPage(ctx, after, verifyStreamPage, v.o.maxUnsequencedAge)
		if err != nil {
			return err
		}
		for _, r := range rows {
			v.report.Streams++
			v.report.Events += r.Events
			if r.MinVersion != 1 || r.MaxVersion != r.Events || r.DistinctVersions != r.Events || r.Unsequenced > 0 {
				if err := v.stream(ctx, r.StreamID); err != nil {
					return err
				}
			}
		}
		p.update(v.report.Events)
		if len(rows) < verifyStreamPage {
			break
		}
		after = rows[len(rows)-1].StreamID
	}
	p.finish(v.report.Events, true)
	return nil
}

// stream lists what is wrong with one stream.
func (v *verifier) stream(ctx context.Context, streamID string) error {
	rows, err := v.d.verifyStreamEvents(ctx, streamID, verifyStreamRows, v.o.maxUnsequencedAge)
	if err != nil {
		return err
	}
	for _, r := range rows {
		switch {
		case r.StreamVersion == r.PreviousVersion:
			v.add(finding{Kind: findingVersionDuplicate, StreamID: streamID, StreamVersion: r.StreamVersion, Seq: r.Seq,
				Message: fmt.Sprintf("stream %q: version %d is stored more than once (seq %d)", streamID, r.StreamVersion, r.Seq)})
		case r.StreamVersion > r.PreviousVersion+1:
			from, to := r.PreviousVersion+1, r.StreamVersion-1
			v.add(finding{Kind: findingVersionGap, StreamID: streamID, FromVersion: from, ToVersion: to,
				Message: fmt.Sprintf("stream %q: %s missing (the stream goes from %d to %d)", streamID, span("version", from, to),
					r.PreviousVersion, r.StreamVersion)})
		}
		if r.Unsequenced {
			v.add(finding{Kind: findingUnsequenced, StreamID: streamID, StreamVersion: r.StreamVersion, Seq: r.Seq,
				RecordedAt: r.RecordedAt.UTC(),
				Message: fmt.Sprintf("stream %q: version %d (seq %d), recorded %s, has no position", streamID, r.StreamVersion,
					r.Seq, r.RecordedAt.UTC().Format(time.RFC3339))})
		}
	}
	if len(rows) == verifyStreamRows {
		v.add(finding{Kind: findingMore, StreamID: streamID,
			Message: fmt.Sprintf("stream %q: more findings than the %d listed", streamID, verifyStreamRows)})
	}
	return nil
}

// log checks the global log from position 1 to the head, a page at a
// time.
func (v *verifier) log(ctx context.Context) error {
	p := v.progress("verify log", "positions", v.report.Head)
	after := int64(0)
	for after < v.report.Head {
		rows, err := v.d.verifyLogPage(ctx, after, verifyLogPage)
		if err != nil {
			return err
		}
		if len(rows) == 0 {
			break
		}
		for _, r := range rows {
			position := r.GlobalPosition
			switch {
			case position > r.PreviousPosition+1:
				from, to := r.PreviousPosition+1, position-1
				v.add(finding{Kind: findingPositionGap, FromPosition: from, ToPosition: to,
					Message: fmt.Sprintf("%s missing from the log (it goes from %d to %d)", span("position", from, to),
						r.PreviousPosition, position)})
			case position <= r.PreviousPosition:
				v.add(finding{Kind: findingPositionTaken, GlobalPosition: position, FromPosition: position,
					ToPosition: r.PreviousPosition,
					Message: fmt.Sprintf("%s numbered twice: the run at %d starts before the one before it ends (at %d)",
						span("position", position, r.PreviousPosition), position, r.PreviousPosition)})
			}
			last := r.FirstVersion + r.EventCount - 1
			run := fmt.Sprintf("position %d (%q %s)", position, r.StreamID, span("version", r.FirstVersion, last))
			switch {
			case r.Events < r.EventCount:
				v.add(finding{Kind: findingLogWithoutEvent, GlobalPosition: position, StreamID: r.StreamID,
					FromVersion: r.FirstVersion, ToVersion: last,
					Message: fmt.Sprintf("%s: the stream holds %d of the run's %d events: reads skip the rest",
						run, r.Events, r.EventCount)})
			case !equalCategory(r.LogCategory, r.EventCategory):
				v.add(finding{Kind: findingCategoryMismatch, GlobalPosition: position, StreamID: r.StreamID,
					StreamVersion: r.FirstVersion, Seq: r.Seq,
					Message: fmt.Sprintf("%s: the log says category %s, the events %s", run,
						quoteOrNone(r.LogCategory), quoteOrNone(r.EventCategory))})
			case r.EventBucket != r.LogBucket:
				v.add(finding{Kind: findingBucketMismatch, GlobalPosition: position, StreamID: r.StreamID,
					StreamVersion: r.FirstVersion, Seq: r.Seq,
					Message: fmt.Sprintf("%s: the log says bucket %d, the stream id hashes to %d", run,
						r.LogBucket, r.EventBucket)})
			}
			if r.FirstPosition != 0 {
				v.add(finding{Kind: findingLoggedTwice, GlobalPosition: position, StreamID: r.StreamID,
					StreamVersion: r.FirstVersion, FromPosition: r.FirstPosition,
					Message: fmt.Sprintf("%s: numbers version %d, which the stream's run before it numbers at position %d",
						run, r.FirstVersion, r.FirstPosition)})
			}
		}
		end := rows[len(rows)-1]
		last := end.GlobalPosition + end.EventCount - 1
		v.report.Positions += min(last, v.report.Head) - after
		after = last
		p.update(after)
	}
	p.finish(after, true)
	return nil
}

// span is "version 3" or "versions 3..5".
func span(what string, from, to int64) string {
	if from == to {
		return fmt.Sprintf("%s %d", what, from)
	}
	return fmt.Sprintf("%ss %d..%d", what, from, to)
}

func equalCategory(a, b *string) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return *a == *b
}

func quoteOrNone(s *string) string {
	if s == nil {
		return "none"
	}
	return fmt.Sprintf("%q", *s)
}

// discard is an io.Writer that writes nothing (and is no terminal).
type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
