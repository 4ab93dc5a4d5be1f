//go:build tools

// Package tools keeps sigs.k8s.io/kwok/cmd/kwok in this module's graph so
// `go mod tidy` keeps its requirements and go.sum entries.
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
