module github.com/mire-go/mire/schema

go 1.25.0
