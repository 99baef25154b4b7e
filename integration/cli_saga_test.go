package integration_test

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mire-go/mire/saga"
)

// cliSaga is a saga as `mire saga list --json` and `show --json` print it.
type cliSaga struct {
	Name      string          `json:"name"`
	ID        string          `json:"id"`
	StreamID  string          `json:"stream_id"`
	Version   int             `json:"version"`
	Status    string          `json:"status"`
	Attempts  int             `json:"attempts"`
	LastError string          `json:"last_error"`
	Result    json.RawMessage `json:"result"`
}

// The saga commands and the status's sagas section, on sagas an engine in
// this process runs: one completed, one compensated, one blocked by a bug
// that a retry from the command gets past once it is fixed.
func TestCLISagas(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var broken atomic.Bool
	broken.Store(true)
	flaky := saga.Define("flaky", 1, func(c *saga.Context, n int) (int, error) {
		if broken.Load() {
			panic("a bug")
		}
		return saga.Step(c, "double", func(context.Context, saga.StepInfo) (int, error) { return 2 * n, nil })
	})
	env := newSagaEnv(t, nil, fastSagas("a"), nil, orderSaga, flaky)
	es := env.es

	// Before any saga: the section says none.
	if r := mireOK(t, es, "status"); !strings.Contains(r.stdout, "\nsagas: none\n") {
		t.Errorf("status without sagas:\n%s", r.stdout)
	}
	if r := mireOK(t, es, "saga", "list"); r.stdout != "no sagas\n" {
		t.Errorf("saga list without sagas: %q", r.stdout)
	}

	completed, err := orderSaga.Start(ctx, env.engine, "o-1", PlaceOrder{SKU: "apple", Qty: 1, Amount: 10})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := result(t, completed); err != nil {
		t.Fatal(err)
	}
	declined, err := orderSaga.Start(ctx, env.engine, "o-2", PlaceOrder{SKU: "pear", Qty: 1, Amount: 5000})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := result(t, declined); err == nil {
		t.Fatal("the declined order completed")
	}
	blocked, err := flaky.Start(ctx, env.engine, "f-1", 21)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := result(t, blocked); !errors.Is(err, saga.ErrBlocked) {
		t.Fatalf("Result of the panicking saga = %v, want ErrBlocked", err)
	}

	// status: counts by status, every status listed in JSON.
	var s struct {
		Sagas map[string]int64 `json:"sagas"`
	}
	mireJSON(t, es, &s, 0, "status")
	want := map[string]int64{"running": 0, "waiting": 0, "compensating": 0, "completed": 1, "failed": 0,
		"compensated": 1, "compensation_failed": 0, "blocked": 1}
	if diff := cmp.Diff(want, s.Sagas); diff != "" {
		t.Errorf("status sagas (-want +got):\n%s", diff)
	}
	human := mireOK(t, es, "status").stdout
	for _, want := range []string{"sagas: 1 completed, 1 compensated, 1 blocked\n",
		"  1 blocked, waiting for an operator: mire saga list --status blocked\n"} {
		if !strings.Contains(human, want) {
			t.Errorf("status lacks %q:\n%s", want, human)
		}
	}

	// list, newest first, filtered by status and name.
	var list struct {
		Sagas []cliSaga `json:"sagas"`
	}
	mireJSON(t, es, &list, 0, "saga", "list")
	var got []string
	for _, s := range list.Sagas {
		got = append(got, s.Name+"/"+s.ID+"="+s.Status)
	}
	if diff := cmp.Diff([]string{"flaky/f-1=blocked", "order/o-2=compensated", "order/o-1=completed"}, got); diff != "" {
		t.Errorf("saga list (-want +got):\n%s", diff)
	}
	mireJSON(t, es, &list, 0, "saga", "list", "--status", "blocked")
	if len(list.Sagas) != 1 || list.Sagas[0].ID != "f-1" || !strings.Contains(list.Sagas[0].LastError, "panicked: a bug") {
		t.Errorf("saga list --status blocked: %+v", list.Sagas)
	}
	mireJSON(t, es, &list, 0, "saga", "list", "--name", "order", "--limit", "1")
	if len(list.Sagas) != 1 || list.Sagas[0].ID != "o-2" {
		t.Errorf("saga list --name order --limit 1: %+v", list.Sagas)
	}
	r := mireOK(t, es, "saga", "list", "--name", "order")
	if !regexp.MustCompile(`(?m)^order\s+o-2\s+compensated\s+1\s+0\s+-\s+(now|\d+s ago)\s+saga: payment.declined answered with an error: card declined$`).MatchString(r.stdout) ||
		!regexp.MustCompile(`(?m)^order\s+o-1\s+completed\s+1\s+0\s+-\s+(now|\d+s ago)\s+-$`).MatchString(r.stdout) {
		t.Errorf("saga list --name order:\n%s", r.stdout)
	}

	// show: the status and the journal.
	var shown struct {
		Saga    cliSaga `json:"saga"`
		Journal []struct {
			Version int64           `json:"version"`
			Type    string          `json:"type"`
			Data    json.RawMessage `json:"data"`
		} `json:"journal"`
	}
	mireJSON(t, es, &shown, 0, "saga", "show", "order", "o-1")
	if shown.Saga.Status != "completed" || shown.Saga.StreamID != saga.JournalStream("order", "o-1") {
		t.Errorf("saga show: %+v", shown.Saga)
	}
	var receipt Receipt
	if err := json.Unmarshal(shown.Saga.Result, &receipt); err != nil || receipt != (Receipt{OrderID: "o-1", Paid: 10}) {
		t.Errorf("saga show: result %s (%v)", shown.Saga.Result, err)
	}
	types := make([]string, len(shown.Journal))
	for i, e := range shown.Journal {
		types[i] = e.Type
		if e.Version != int64(i+1) {
			t.Errorf("journal entry %d has version %d", i, e.Version)
		}
	}
	if diff := cmp.Diff(journalTypes(t, env.engine, "order", "o-1"), types); diff != "" || types[0] != "saga.started" ||
		types[len(types)-1] != "saga.finished" {
		t.Errorf("saga show journal (-library +command):\n%s%v", diff, types)
	}
	r = mireOK(t, es, "saga", "show", "order", "o-2")
	for _, want := range []string{`saga order "o-2": compensated` + "\n", "  journal      saga.order-o-2\n",
		"  last error   saga: payment.declined answered with an error: card declined\n"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("saga show lacks %q:\n%s", want, r.stdout)
		}
	}
	if !regexp.MustCompile(`(?m)^1\s+saga.started\s+(now|\d+s ago)\s+\{.*"definition":"order".*\}$`).MatchString(r.stdout) ||
		!regexp.MustCompile(`(?m)^\d+\s+saga.compensated\s+(now|\d+s ago)\s+\{.*"name":"release stock".*\}$`).MatchString(r.stdout) {
		t.Errorf("saga show's journal:\n%s", r.stdout)
	}

	// retry: refused for a saga with nothing to retry (4), and for one
	// that does not exist; a blocked one runs again, once fixed.
	if r := runMire(t, es, "saga", "retry", "order", "o-1"); r.code != 4 || !strings.Contains(r.stderr, `saga order "o-1" is completed`) {
		t.Errorf("retry of a completed saga: exit %d, %q", r.code, r.stderr)
	}
	if r := runMire(t, es, "saga", "show", "order", "o-404"); r.code != 4 || !strings.Contains(r.stderr, "no such saga") {
		t.Errorf("show of an unknown saga: exit %d, %q", r.code, r.stderr)
	}
	if r := runMire(t, es, "saga", "retry", "order", "o-404"); r.code != 4 || !strings.Contains(r.stderr, "no such saga") {
		t.Errorf("retry of an unknown saga: exit %d, %q", r.code, r.stderr)
	}
	broken.Store(false)
	var retried struct {
		Name   string `json:"name"`
		ID     string `json:"id"`
		Action string `json:"action"`
	}
	mireJSON(t, es, &retried, 0, "saga", "retry", "flaky", "f-1")
	if retried.Name != "flaky" || retried.ID != "f-1" || retried.Action != "retry requested" {
		t.Errorf("saga retry --json: %+v", retried)
	}
	if n, err := result(t, blocked); err != nil || n != 42 {
		t.Errorf("after the retry: %d, %v; want 42", n, err)
	}
	mireJSON(t, es, &s, 0, "status")
	if s.Sagas["blocked"] != 0 || s.Sagas["completed"] != 2 {
		t.Errorf("status after the retry: %v", s.Sagas)
	}
	if r := runMire(t, es, "saga", "retry", "flaky", "f-1"); r.code != 4 {
		t.Errorf("a second retry: exit %d, %q; want 4", r.code, r.stderr)
	}
}
