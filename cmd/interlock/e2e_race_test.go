//go:build race

package main

// Under `go test -race` the gateway binary is built with the race detector
// too, so that the end-to-end runs also hunt data races in the real process
// (a race makes its log show "DATA RACE", which fails the test).
func init() { raceBuild = true }
