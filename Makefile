# mire — run `make help` for the targets.

SQLC_VERSION          := v1.31.1
GOLANGCI_LINT_VERSION := v2.15.0
# The workspace's modules, as go.work lists them.
MODULES      := $(shell go list -m -f '{{.Dir}}' | sed 's|^$(CURDIR)/||')
BIN          := $(CURDIR)/bin
SQLC         := $(BIN)/sqlc-$(SQLC_VERSION)
GOLANGCI_LINT := $(BIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)
GO_TEST      ?= go test
# Without a database the tests fail; MIRE_SKIP_DB=1 skips the database tests
# instead (and says so).
export MIRE_SKIP_DB
SKIPPED_DB   := echo "*** MIRE_SKIP_DB=1: EVERY DATABASE TEST IS SKIPPED; this run does not test the store ***" >&2

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this help.
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-16s %s\n", $$1, $$2}'

$(SQLC):
	@mkdir -p $(BIN)
	@echo "installing sqlc $(SQLC_VERSION) into $(BIN) (cgo build, a few minutes the first time)"
	GOBIN=$(BIN) go install github.com/sqlc-dev/sqlc/cmd/sqlc@$(SQLC_VERSION)
	@mv $(BIN)/sqlc $(SQLC)

$(GOLANGCI_LINT):
	@mkdir -p $(BIN)
	@echo "installing golangci-lint $(GOLANGCI_LINT_VERSION) into $(BIN) (a few minutes the first time)"
	GOBIN=$(BIN) go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	@mv $(BIN)/golangci-lint $(GOLANGCI_LINT)

.PHONY: tools
tools: $(SQLC) $(GOLANGCI_LINT) ## Install the pinned code generators and linter into ./bin.

.PHONY: generate
generate: $(SQLC) ## Regenerate sqlc code from queries/ and schema/, and go:generate output.
	$(SQLC) generate
	@for m in $(MODULES); do (cd $$m && go generate ./...) || exit 1; done

.PHONY: verify
verify: $(SQLC) ## Check generated code is current, modules are tidy and code is formatted.
	$(SQLC) diff
	@for m in $(MODULES); do (cd $$m && go generate ./... && go mod tidy -diff) || { echo "module $$m is not tidy"; exit 1; }; done
	@git diff --exit-code || { echo "go generate changed files: commit them"; exit 1; }
	@test -z "$$(gofmt -l $(MODULES))" || { gofmt -l $(MODULES); echo "gofmt needed"; exit 1; }

.PHONY: build
build: ## Build every module.
	@for m in $(MODULES); do (cd $$m && go build ./...) || exit 1; done

.PHONY: lint
lint: $(GOLANGCI_LINT) ## Run go vet and golangci-lint (.golangci.yml) on every module.
	@for m in $(MODULES); do echo "== $$m"; (cd $$m && go vet ./... && $(GOLANGCI_LINT) run ./...) || exit 1; done

.PHONY: test
test: ## Run the whole test suite against PostgreSQL, with the race detector (MIRE_SKIP_DB=1: without one).
	@if [ "$$MIRE_SKIP_DB" = 1 ]; then $(SKIPPED_DB); else \
		go run ./integration/cmd/mire-pgenv || { echo "make test: no test ran; set MIRE_SKIP_DB=1 to run them with the database tests skipped" >&2; exit 1; }; fi
	@for m in $(MODULES); do echo "== $$m"; (cd $$m && $(GO_TEST) -race -count=1 ./...) || exit 1; done
	@if [ "$$MIRE_SKIP_DB" = 1 ]; then $(SKIPPED_DB); fi

.PHONY: check-consumers
check-consumers: ## Build modules of a user's own (store and runner, without OpenTelemetry; otel; core alone, without pgx) with the README's replace lines.
	.ci/check-consumers

.PHONY: bench
bench: ## Run the benchmark suite and print a table; writes no file.
	go run ./bench

.PHONY: bench-record
bench-record: ## Run the benchmark suite and record the results in bench/results.json (committed).
	go run ./bench -out bench/results.json

.PHONY: demo
demo: ## Run the end-to-end demo (examples/bank).
	go run ./examples/bank
