# mire — run `make help` for the targets.

SQLC_VERSION := v1.31.1
MODULES      := core schema store cmd integration examples bench
BIN          := $(CURDIR)/bin
SQLC         := $(BIN)/sqlc-$(SQLC_VERSION)
GO_TEST      ?= go test
# The database tests fail instead of skipping when MIRE_REQUIRE_DB=1 (CI).
export MIRE_REQUIRE_DB

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this help.
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-12s %s\n", $$1, $$2}'

$(SQLC):
	@mkdir -p $(BIN)
	@echo "installing sqlc $(SQLC_VERSION) into $(BIN) (cgo build, a few minutes the first time)"
	GOBIN=$(BIN) go install github.com/sqlc-dev/sqlc/cmd/sqlc@$(SQLC_VERSION)
	@mv $(BIN)/sqlc $(SQLC)

.PHONY: tools
tools: $(SQLC) ## Install the pinned code generators into ./bin.

.PHONY: generate
generate: $(SQLC) ## Regenerate sqlc code from queries/ and schema/, and go:generate output.
	$(SQLC) generate
	@for m in $(MODULES); do (cd $$m && go generate ./...) || exit 1; done

.PHONY: verify
verify: $(SQLC) ## Check generated code is current, modules are tidy and code is formatted.
	$(SQLC) diff
	@for m in $(MODULES); do (cd $$m && go generate ./... && go mod tidy -diff) || { echo "module $$m is not tidy"; exit 1; }; done
	@git diff --exit-code -- . ':(exclude)bench/results.json' || { echo "go generate changed files: commit them"; exit 1; }
	@test -z "$$(gofmt -l $(MODULES))" || { gofmt -l $(MODULES); echo "gofmt needed"; exit 1; }

.PHONY: build
build: ## Build every module.
	@for m in $(MODULES); do (cd $$m && go build ./...) || exit 1; done

.PHONY: lint
lint: ## Run go vet on every module.
	@for m in $(MODULES); do (cd $$m && go vet ./...) || exit 1; done

.PHONY: test
test: ## Run the whole test suite against PostgreSQL, with the race detector.
	@for m in $(MODULES); do echo "== $$m"; (cd $$m && $(GO_TEST) -race -count=1 ./...) || exit 1; done

.PHONY: bench
bench: ## Run the benchmark suite; prints a table and writes bench/results.json.
	go run ./bench

.PHONY: demo
demo: ## Run the end-to-end demo (examples/bank).
	go run ./examples/bank
