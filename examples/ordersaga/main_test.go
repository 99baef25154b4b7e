package main

import (
	"os"
	"regexp"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mire-go/mire/integration/pgenv"
)

func TestMain(m *testing.M) { os.Exit(pgenv.RunTests(m)) }

func TestRun(t *testing.T) {
	t.Parallel()
	out := pgenv.RunProgram(t, Run)
	// The schema and the ids are fresh per run: mask them (keeping their
	// width, so that the columns line up).
	got := regexp.MustCompile(`schema "[a-z0-9_]+"`).ReplaceAllString(out, `schema "SCHEMA"`)
	got = regexp.MustCompile(`\b(ada|bob|cyd|lamp)\.[0-9a-f]{8}\b`).ReplaceAllString(got, "$1.<run-id>")
	want := `migrated schema "SCHEMA"; lamp.<run-id>: 10 in stock
runner and saga engine started
placed 3 orders, each with its saga in the same transaction

order ada.<run-id>: completed, paid 40
  saga.started
  saga.stepped       send stock-lamp.<run-id> stock.reserve-requested
  saga.stepped       await main.StockReply
  saga.received      stock.reserved
  saga.consumed
  saga.stepped       send payment-ada.<run-id> payment.charge-requested
  saga.stepped       await main.PaymentReply
  saga.received      payment.taken
  saga.consumed
  saga.stepped       step-tx confirm
  saga.finished      completed

order bob.<run-id>: compensated (saga: payment.declined answered with an error: card declined)
  saga.started
  saga.stepped       send stock-lamp.<run-id> stock.reserve-requested
  saga.stepped       await main.StockReply
  saga.received      stock.reserved
  saga.consumed
  saga.stepped       send payment-bob.<run-id> payment.charge-requested
  saga.stepped       await main.PaymentReply
  saga.received      payment.declined
  saga.consumed
  saga.compensating
  saga.stepped       send stock-lamp.<run-id> stock.release-requested
  saga.compensated   release stock
  saga.finished      compensated

order cyd.<run-id>: compensated (saga: timed out)
  saga.started
  saga.stepped       send stock-lamp.<run-id> stock.reserve-requested
  saga.stepped       await main.StockReply
  saga.received      stock.reserved
  saga.consumed
  saga.stepped       send payment-cyd.<run-id> payment.charge-requested
  saga.stepped       await main.PaymentReply
  saga.timed-out
  saga.compensating
  saga.stepped       send stock-lamp.<run-id> stock.release-requested
  saga.compensated   release stock
  saga.finished      compensated
lamp.<run-id>: 8 in stock (ada's 2 sold; bob's 3 and cyd's 1 released)
`
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
}
