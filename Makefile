# Interlock. `make demo` runs the quickstart, `make test` everything CI runs.
BIN     := bin/interlock
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: build test demo demo-opcua bench fuzz lint peers clean

build:
	go build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/interlock

test:
	scripts/test.sh

demo:
	examples/quickstart/run.sh

demo-opcua:
	examples/opcua/run.sh

# make bench BENCHFLAGS="--suite audit,policy --runs 5": some sections, more runs (go run ./cmd/interlock-bench --help)
bench: build
	scripts/install-peers.sh
	go run ./cmd/interlock-bench --interlock $(BIN) $(BENCHFLAGS)

# make fuzz FUZZTIME=5m FUZZ=Engine: every fuzz target (or those FUZZ matches) for FUZZTIME each (1m)
fuzz:
	scripts/fuzz.sh

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	go vet ./...

peers:
	scripts/install-peers.sh

clean:
	rm -rf bin examples/quickstart/run examples/opcua/run
