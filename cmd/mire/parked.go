package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/spf13/cobra"
)

func newParkedCommand(a *app) *cobra.Command {
	list := &cobra.Command{
		Use:   "list [SUBSCRIPTION]",
		Short: "List parked streams, of every subscription or of one",
		Args:  rangeArgs(0, 1, "at most a SUBSCRIPTION"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return listParked(cmd.Context(), a, args)
		},
	}
	retry := &cobra.Command{
		Use:   "retry SUBSCRIPTION STREAM",
		Short: "Ask the leader to handle a parked stream's held events again, from the one that failed",
		Long: `Ask the leader of the stream's partition to handle its held events again,
from the one that failed. Exits with 4 if the stream is not parked.`,
		Args: exactArgs("SUBSCRIPTION", "STREAM"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, err := a.control(cmd.Context())
			if err != nil {
				return err
			}
			parked, err := c.RetryParked(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			if !parked {
				return notFoundErrorf("stream %q is not parked in %s", args[1], args[0])
			}
			return a.reportParked(args[0], args[1], "retry requested")
		},
	}
	var reason string
	skip := &cobra.Command{
		Use:   "skip SUBSCRIPTION STREAM --reason R",
		Short: "Skip the event a stream is parked at, recording why, and handle its later events",
		Long: `Ask the leader of the stream's partition to skip the event the stream is
parked at, record the reason (see 'mire parked skipped'), and handle the
stream's later held events. Exits with 4 if the stream is not parked.`,
		Args: exactArgs("SUBSCRIPTION", "STREAM"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if reason == "" {
				return usageErrorf("skip needs --reason: it is kept with the skipped event")
			}
			c, _, err := a.control(cmd.Context())
			if err != nil {
				return err
			}
			parked, err := c.SkipParked(cmd.Context(), args[0], args[1], reason)
			if err != nil {
				return err
			}
			if !parked {
				return notFoundErrorf("stream %q is not parked in %s", args[1], args[0])
			}
			return a.reportParked(args[0], args[1], "skip requested")
		},
	}
	skip.Flags().StringVar(&reason, "reason", "", "why the event is skipped (required)")
	skipped := &cobra.Command{
		Use:   "skipped SUBSCRIPTION",
		Short: "List the events skipped in a subscription, with the reasons given",
		Args:  exactArgs("SUBSCRIPTION"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return listSkipped(cmd.Context(), a, args[0])
		},
	}
	return group("parked", "Parked streams (list, retry, skip, skipped)", list, retry, skip, skipped)
}

func (a *app) reportParked(subscription, streamID, action string) error {
	if a.json {
		return writeJSON(a.stdout, actionResult{Subscription: subscription, Action: action, StreamID: streamID})
	}
	fmt.Fprintf(a.stdout, "%s: %s in %s\n", action, streamID, subscription)
	return nil
}

type parkedJSON struct {
	Subscription     string     `json:"subscription"`
	Partition        int        `json:"partition"`
	StreamID         string     `json:"stream_id"`
	StreamVersion    int64      `json:"stream_version"`
	GlobalPosition   int64      `json:"global_position"`
	Error            string     `json:"error"`
	ParkedAt         time.Time  `json:"parked_at"`
	RetryRequestedAt *time.Time `json:"retry_requested_at"`
	SkipReason       string     `json:"skip_reason,omitempty"`
}

func listParked(ctx context.Context, a *app, args []string) error {
	c, _, err := a.control(ctx)
	if err != nil {
		return err
	}
	var names []string
	if len(args) == 1 {
		names = args
	} else {
		statuses, err := c.Status(ctx, "")
		if err != nil {
			return err
		}
		for _, s := range statuses {
			if s.ParkedStreams > 0 && !slices.Contains(names, s.Subscription) {
				names = append(names, s.Subscription)
			}
		}
	}
	parked := []parkedJSON{}
	for _, name := range names {
		streams, err := c.ParkedStreams(ctx, name)
		if err != nil {
			return err
		}
		for _, p := range streams {
			j := parkedJSON{Subscription: p.Subscription, Partition: p.Partition, StreamID: p.StreamID,
				StreamVersion: p.StreamVersion, GlobalPosition: p.GlobalPosition, Error: p.Error,
				ParkedAt: p.ParkedAt.UTC(), SkipReason: p.SkipReason}
			if p.RetryRequestedAt != nil {
				at := p.RetryRequestedAt.UTC()
				j.RetryRequestedAt = &at
			}
			parked = append(parked, j)
		}
	}
	if a.json {
		return writeJSON(a.stdout, struct {
			Parked []parkedJSON `json:"parked"`
		}{parked})
	}
	if len(parked) == 0 {
		fmt.Fprintln(a.stdout, "no parked streams")
		return nil
	}
	now := time.Now()
	t := newTable(a.stdout)
	fmt.Fprintln(t, "SUBSCRIPTION\tPARTITION\tSTREAM\tVERSION\tPOSITION\tPARKED\tREQUESTED\tERROR")
	for _, p := range parked {
		requested := "-"
		switch {
		case p.RetryRequestedAt != nil && p.SkipReason != "":
			requested = "skip " + relative(now, *p.RetryRequestedAt)
		case p.RetryRequestedAt != nil:
			requested = "retry " + relative(now, *p.RetryRequestedAt)
		}
		fmt.Fprintf(t, "%s\t%d\t%s\t%d\t%d\t%s\t%s\t%s\n", p.Subscription, p.Partition, p.StreamID, p.StreamVersion,
			p.GlobalPosition, relative(now, p.ParkedAt), requested, oneLine(p.Error, 60))
	}
	return t.Flush()
}

type skippedJSON struct {
	Subscription   string    `json:"subscription"`
	Partition      int       `json:"partition"`
	GlobalPosition int64     `json:"global_position"`
	StreamID       string    `json:"stream_id"`
	StreamVersion  int64     `json:"stream_version"`
	Reason         string    `json:"reason"`
	Error          string    `json:"error"`
	SkippedAt      time.Time `json:"skipped_at"`
}

func listSkipped(ctx context.Context, a *app, name string) error {
	c, _, err := a.control(ctx)
	if err != nil {
		return err
	}
	events, err := c.SkippedEvents(ctx, name)
	if err != nil {
		return err
	}
	skipped := make([]skippedJSON, 0, len(events))
	for _, e := range events {
		skipped = append(skipped, skippedJSON{Subscription: e.Subscription, Partition: e.Partition,
			GlobalPosition: e.GlobalPosition, StreamID: e.StreamID, StreamVersion: e.StreamVersion, Reason: e.Reason,
			Error: e.Error, SkippedAt: e.SkippedAt.UTC()})
	}
	if a.json {
		return writeJSON(a.stdout, struct {
			Skipped []skippedJSON `json:"skipped"`
		}{skipped})
	}
	if len(skipped) == 0 {
		fmt.Fprintf(a.stdout, "no events skipped in %s\n", name)
		return nil
	}
	now := time.Now()
	t := newTable(a.stdout)
	fmt.Fprintln(t, "SUBSCRIPTION\tPARTITION\tPOSITION\tSTREAM\tVERSION\tSKIPPED\tREASON\tERROR")
	for _, s := range skipped {
		fmt.Fprintf(t, "%s\t%d\t%d\t%s\t%d\t%s\t%s\t%s\n", s.Subscription, s.Partition, s.GlobalPosition, s.StreamID,
			s.StreamVersion, relative(now, s.SkippedAt), oneLine(s.Reason, 40), oneLine(orDash(s.Error), 60))
	}
	return t.Flush()
}
