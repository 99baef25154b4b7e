module github.com/mire-go/mire/bench

go 1.25.11

require (
	github.com/mire-go/mire/core v0.0.0
	github.com/mire-go/mire/store v0.0.0
)

// The sibling modules are not published yet; go.work resolves them for the
// workspace, and these replaces let `go mod tidy` work module by module.
replace (
	github.com/mire-go/mire/core => ../core
	github.com/mire-go/mire/schema => ../schema
	github.com/mire-go/mire/store => ../store
)
