module github.com/mire-go/mire/core

go 1.25.0

require github.com/google/uuid v1.6.0

require (
	github.com/google/go-cmp v0.7.0
	go.uber.org/goleak v1.3.0
)
