#!/usr/bin/env bash
# The whole test run, as CI runs it: install the peers, check formatting,
# vet, and run every test with the race detector. Peers are required: a
# missing mbpoll or pymodbus fails the run instead of skipping tests.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-peers.sh

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './node_modules/*'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

echo "== go vet"
go vet ./...

echo "== policy tests (examples)"
go run ./cmd/interlock policy test examples/quickstart/policy

echo "== allocations (without the race detector, which makes sync.Pool drop objects)"
go test -count=1 -run 'Allocs$' ./audit/
echo "== go test -race"
INTERLOCK_REQUIRE_PEERS=1 go test -race -count=1 -timeout 30m ./...
