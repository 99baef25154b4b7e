module github.com/mire-go/mire/otel

go 1.25.0

// The sibling modules are not published yet; go.work resolves them for the
// workspace, and these replaces let `go mod tidy` work module by module.
replace (
	github.com/mire-go/mire/core => ../core
	github.com/mire-go/mire/runner => ../runner
	github.com/mire-go/mire/saga => ../saga
	github.com/mire-go/mire/schema => ../schema
	github.com/mire-go/mire/store => ../store
)

require (
	github.com/google/uuid v1.6.0
	github.com/mire-go/mire/core v0.0.0
	github.com/mire-go/mire/runner v0.0.0
	github.com/mire-go/mire/saga v0.0.0
	go.opentelemetry.io/otel v1.46.0
	go.opentelemetry.io/otel/metric v1.46.0
	go.opentelemetry.io/otel/sdk v1.36.0
	go.opentelemetry.io/otel/sdk/metric v1.36.0
	go.opentelemetry.io/otel/trace v1.46.0
)

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/go-logr/logr v1.4.4 // indirect
	github.com/go-logr/stdr v1.2.2 // indirect
	github.com/golang-migrate/migrate/v4 v4.19.1 // indirect
	github.com/jackc/pgerrcode v0.0.0-20220416144525-469b46aa5efa // indirect
	github.com/jackc/pgpassfile v1.0.0 // indirect
	github.com/jackc/pgservicefile v0.0.0-20240606120523-5a60cdf6a761 // indirect
	github.com/jackc/pgx/v5 v5.12.0 // indirect
	github.com/jackc/puddle/v2 v2.2.3 // indirect
	github.com/mire-go/mire/schema v0.0.0 // indirect
	github.com/mire-go/mire/store v0.0.0 // indirect
	go.opentelemetry.io/auto/sdk v1.2.1 // indirect
	golang.org/x/sync v0.22.0 // indirect
	golang.org/x/sys v0.46.0 // indirect
	golang.org/x/text v0.41.0 // indirect
)
