package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/mire-go/mire/saga"
	"github.com/mire-go/mire/store"
)

// sagaStatuses are a saga's statuses in the order of its life, as status
// and list show them.
var sagaStatuses = []saga.Status{
	saga.StatusRunning, saga.StatusWaiting, saga.StatusCompensating, saga.StatusCompleted, saga.StatusFailed,
	saga.StatusCompensated, saga.StatusCompensationFailed, saga.StatusBlocked,
}

// sagaListLimitDefault is how many sagas list shows without --limit.
const sagaListLimitDefault = 100

// sagaEngine returns a saga engine on es that runs nothing: it reads the
// sagas' index and journals and asks for retries, which the engines of
// the services that define the sagas carry out.
func sagaEngine(es *store.EventStore, logger *slog.Logger) (*saga.Engine, error) {
	return saga.New(es, nil, &saga.Config{NoExecutors: true, Logger: logger})
}

func (a *app) sagas(ctx context.Context) (*saga.Engine, error) {
	es, err := a.store(ctx)
	if err != nil {
		return nil, err
	}
	return sagaEngine(es, a.logger())
}

func newSagaCommand(a *app) *cobra.Command {
	var status, name string
	var limit int
	list := &cobra.Command{
		Use:   "list",
		Short: "List sagas, newest first, by status and name",
		Long: `List sagas, newest first: name, id, status, definition version, failed
attempts in a row, when it is due next, when it last changed and its last
error. --status keeps one status (` + statusNames() + `),
--name one saga definition. --json prints {"sagas": [...]}.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if status != "" && !slices.Contains(sagaStatuses, saga.Status(status)) {
				return usageErrorf("--status %q: want one of %s", status, statusNames())
			}
			if limit < 1 {
				return usageErrorf("--limit must be at least 1")
			}
			return listSagas(cmd.Context(), a, saga.ListOpts{Status: saga.Status(status), Name: name, Limit: limit})
		},
	}
	list.Flags().StringVar(&status, "status", "", "only sagas in `status`")
	list.Flags().StringVar(&name, "name", "", "only sagas of definition `name`")
	list.Flags().IntVar(&limit, "limit", sagaListLimitDefault, "list at most `N` sagas")
	show := &cobra.Command{
		Use:   "show NAME ID",
		Short: "Print a saga's status and its journal",
		Long: `Print a saga's status (as the engines' index has it) and its journal, the
stream holding its start, each step's result, the replies that reached it,
timers, compensations and its outcome. --json prints {"saga": {...},
"journal": [...]}. Exits with 4 if there is no such saga.`,
		Args: exactArgs("NAME", "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return showSaga(cmd.Context(), a, args[0], args[1])
		},
	}
	retry := &cobra.Command{
		Use:   "retry NAME ID",
		Short: "Run a blocked saga, or one whose compensation failed, again",
		Long: `Run a saga that is blocked (its journal and its code disagree, or no engine
defines its version) or whose compensation failed, again: after a fix to
its code or to what it calls. It makes the saga due now, its failed
attempts reset; an engine that defines the saga runs it. Exits with 4 if
there is no such saga or it is neither blocked nor compensation_failed.`,
		Args: exactArgs("NAME", "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			engine, err := a.sagas(cmd.Context())
			if err != nil {
				return err
			}
			err = engine.Retry(cmd.Context(), args[0], args[1])
			if errors.Is(err, saga.ErrNotFound) {
				// Retry says the same of a saga that is not there and of
				// one with nothing to retry: tell them apart.
				info, getErr := engine.Get(cmd.Context(), args[0], args[1])
				if getErr != nil {
					return getErr
				}
				return notFoundErrorf("saga %s %q is %s: only a blocked or compensation_failed saga can be retried",
					args[0], args[1], info.Status)
			}
			if err != nil {
				return err
			}
			if a.json {
				return writeJSON(a.stdout, sagaAction{Name: args[0], ID: args[1], Action: "retry requested"})
			}
			fmt.Fprintf(a.stdout, "retry requested: %s %q\n", args[0], args[1])
			return nil
		},
	}
	return group("saga", "Sagas (list, show, retry)", list, show, retry)
}

func statusNames() string {
	names := make([]string, len(sagaStatuses))
	for i, s := range sagaStatuses {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}

// sagaAction is what retry did.
type sagaAction struct {
	Name   string `json:"name"`
	ID     string `json:"id"`
	Action string `json:"action"`
}

// sagaJSON is a saga as list and show print it.
type sagaJSON struct {
	Name          string          `json:"name"`
	ID            string          `json:"id"`
	StreamID      string          `json:"stream_id"`
	CorrelationID uuid.UUID       `json:"correlation_id"`
	Version       int             `json:"version"`
	Status        saga.Status     `json:"status"`
	WakeAt        *time.Time      `json:"wake_at"`
	ClaimedBy     string          `json:"claimed_by"`
	Attempts      int             `json:"attempts"`
	LastError     string          `json:"last_error"`
	Result        json.RawMessage `json:"result"`
	CreatedAt     time.Time       `json:"created_at"`
	UpdatedAt     time.Time       `json:"updated_at"`
}

func toSagaJSON(info saga.Info) sagaJSON {
	s := sagaJSON{Name: info.Name, ID: info.ID, StreamID: info.StreamID, CorrelationID: info.CorrelationID,
		Version: info.Version, Status: info.Status, ClaimedBy: info.ClaimedBy, Attempts: info.Attempts,
		LastError: info.LastError, CreatedAt: info.CreatedAt.UTC(), UpdatedAt: info.UpdatedAt.UTC()}
	if info.WakeAt != nil {
		at := info.WakeAt.UTC()
		s.WakeAt = &at
	}
	if len(info.Result) > 0 {
		s.Result = compactJSON(info.Result)
	}
	return s
}

func listSagas(ctx context.Context, a *app, opts saga.ListOpts) error {
	engine, err := a.sagas(ctx)
	if err != nil {
		return err
	}
	infos, err := engine.List(ctx, opts)
	if err != nil {
		return err
	}
	sagas := make([]sagaJSON, len(infos))
	for i, info := range infos {
		sagas[i] = toSagaJSON(info)
	}
	if a.json {
		return writeJSON(a.stdout, struct {
			Sagas []sagaJSON `json:"sagas"`
		}{sagas})
	}
	if len(sagas) == 0 {
		fmt.Fprintln(a.stdout, "no sagas")
		return nil
	}
	now := time.Now()
	t := newTable(a.stdout)
	fmt.Fprintln(t, "NAME\tID\tSTATUS\tVERSION\tATTEMPTS\tDUE\tUPDATED\tLAST ERROR")
	for _, s := range sagas {
		fmt.Fprintf(t, "%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n", s.Name, s.ID, s.Status, s.Version, s.Attempts,
			dueAt(now, s.WakeAt), relative(now, s.UpdatedAt), oneLine(orDash(s.LastError), 60))
	}
	if err := t.Flush(); err != nil {
		return err
	}
	if len(sagas) == opts.Limit {
		fmt.Fprintf(a.stdout, "(the newest %d; --limit shows more)\n", opts.Limit)
	}
	return nil
}

// dueAt says when a saga is due next: "-" when it waits for nothing
// timed.
func dueAt(now time.Time, at *time.Time) string {
	if at == nil {
		return "-"
	}
	return relative(now, *at)
}

// journalEntryJSON is a journal entry as show prints it.
type journalEntryJSON struct {
	Version    int64           `json:"version"`
	Type       string          `json:"type"`
	RecordedAt time.Time       `json:"recorded_at"`
	Data       json.RawMessage `json:"data"`
}

func showSaga(ctx context.Context, a *app, name, id string) error {
	engine, err := a.sagas(ctx)
	if err != nil {
		return err
	}
	info, err := engine.Get(ctx, name, id)
	if err != nil {
		return err
	}
	entries, err := engine.Journal(ctx, name, id)
	if err != nil {
		return err
	}
	s := toSagaJSON(info)
	journal := make([]journalEntryJSON, len(entries))
	for i, e := range entries {
		journal[i] = journalEntryJSON{Version: e.Version, Type: e.Type, RecordedAt: e.RecordedAt.UTC(), Data: compactJSON(e.Data)}
	}
	if a.json {
		return writeJSON(a.stdout, struct {
			Saga    sagaJSON           `json:"saga"`
			Journal []journalEntryJSON `json:"journal"`
		}{s, journal})
	}
	printSaga(a.stdout, time.Now(), s, journal)
	return nil
}

func printSaga(w io.Writer, now time.Time, s sagaJSON, journal []journalEntryJSON) {
	fmt.Fprintf(w, "saga %s %q: %s\n", s.Name, s.ID, s.Status)
	t := newTable(w)
	fmt.Fprintf(t, "  version\t%d\n", s.Version)
	fmt.Fprintf(t, "  journal\t%s\n", s.StreamID)
	fmt.Fprintf(t, "  correlation\t%s\n", s.CorrelationID)
	fmt.Fprintf(t, "  started\t%s (%s)\n", relative(now, s.CreatedAt), s.CreatedAt.Format(time.RFC3339Nano))
	fmt.Fprintf(t, "  updated\t%s\n", relative(now, s.UpdatedAt))
	fmt.Fprintf(t, "  due\t%s\n", dueAt(now, s.WakeAt))
	if s.ClaimedBy != "" {
		fmt.Fprintf(t, "  claimed by\t%s\n", s.ClaimedBy)
	}
	if s.Attempts > 0 {
		fmt.Fprintf(t, "  attempts\t%d\n", s.Attempts)
	}
	first, rest, multiline := strings.Cut(s.LastError, "\n")
	switch {
	case multiline:
		fmt.Fprintf(t, "  last error\t%s (in full below)\n", first)
	case s.LastError != "":
		fmt.Fprintf(t, "  last error\t%s\n", s.LastError)
	}
	if s.Result != nil {
		fmt.Fprintf(t, "  result\t%s\n", s.Result)
	}
	_ = t.Flush() // a terminal report: nothing to do about a failed write
	if multiline {
		// A panic's stack, say.
		fmt.Fprintf(w, "\nlast error:\n  %s\n", first)
		for line := range strings.Lines(rest) {
			fmt.Fprintf(w, "  %s\n", strings.TrimSuffix(line, "\n"))
		}
	}
	fmt.Fprintln(w)
	t = newTable(w)
	fmt.Fprintln(t, "VERSION\tTYPE\tRECORDED\tDATA")
	for _, e := range journal {
		fmt.Fprintf(t, "%d\t%s\t%s\t%s\n", e.Version, e.Type, relative(now, e.RecordedAt), e.Data)
	}
	_ = t.Flush()
}

// The sagas section of `mire status`: how many sagas are in each status.

func collectSagas(ctx context.Context, es *store.EventStore, r *statusReport) error {
	engine, err := sagaEngine(es, nil)
	if err != nil {
		return err
	}
	counts, err := engine.Counts(ctx)
	if err != nil {
		return err
	}
	r.Sagas = map[saga.Status]int64{}
	for _, s := range sagaStatuses {
		r.Sagas[s] = 0
	}
	for s, n := range counts {
		r.Sagas[s] = n
	}
	return nil
}

func printSagas(w io.Writer, r *statusReport) error {
	var parts []string
	var newer []saga.Status // statuses of a newer mire, after ours
	for s := range r.Sagas {
		if !slices.Contains(sagaStatuses, s) {
			newer = append(newer, s)
		}
	}
	slices.Sort(newer)
	for _, s := range slices.Concat(sagaStatuses, newer) {
		if n := r.Sagas[s]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %s", count(n), s))
		}
	}
	if len(parts) == 0 {
		fmt.Fprintln(w, "sagas: none")
		return nil
	}
	fmt.Fprintf(w, "sagas: %s\n", strings.Join(parts, ", "))
	for _, s := range []saga.Status{saga.StatusBlocked, saga.StatusCompensationFailed} {
		if r.Sagas[s] > 0 {
			fmt.Fprintf(w, "  %s %s, waiting for an operator: mire saga list --status %s\n", count(r.Sagas[s]), s, s)
		}
	}
	return nil
}
