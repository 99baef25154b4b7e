//go:build ignore

// A file the go command ignores: its marked type must not be generated.
package main

//mire:event
type Ignored struct{}
