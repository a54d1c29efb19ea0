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

# The demos: each runs from DIR/run.sh in DIR/run and, while it runs,
# holds DIR/run.lock with its pid in it (scripts/demo.sh).
DEMOS := examples/quickstart examples/opcua

# clean removes bin/ and the demos' run folders; while a demo runs it names
# the demo and its pid, removes nothing and fails. It holds the demos' locks
# while it removes, so a demo that starts meanwhile stops at once.
clean:
	@busy=; \
	for d in $(DEMOS); do \
	  [ -e "$$d/run.lock" ] || continue; \
	  pid=$$(tr -dc 0-9 <"$$d/run.lock" 2>/dev/null || true); \
	  if command -v flock >/dev/null 2>&1; then \
	    flock -n "$$d/run.lock" true && continue; \
	  else \
	    [ -n "$$pid" ] && kill -0 "$$pid" 2>/dev/null && ps -p "$$pid" -o args= 2>/dev/null | grep -q "run\.sh" || continue; \
	  fi; \
	  echo "make clean: the demo in $$d is running (pid $${pid:-unknown}): it uses $$d/run/ and bin/interlock." >&2; \
	  echo "  Stop it first (Ctrl-C in its terminal, or: kill $${pid:-PID}), then run make clean again. Nothing was removed." >&2; \
	  busy=1; \
	done; \
	[ -z "$$busy" ] || exit 1; \
	if command -v flock >/dev/null 2>&1; then \
	  $(foreach d,$(DEMOS),flock -n -E 75 $(d)/run.lock) rm -rf bin $(addsuffix /run,$(DEMOS)) || { \
	    rc=$$?; [ $$rc = 75 ] && echo "make clean: a demo started while clean ran; nothing was removed. Stop it, then run make clean again." >&2; exit $$rc; }; \
	else \
	  rm -rf bin $(addsuffix /run,$(DEMOS)); \
	fi; \
	echo "make clean: removed bin/ $(addsuffix /run/,$(DEMOS))"
