# kumo - the two commands of the README's quick start are `make up` and `make test`.
SHELL := /bin/bash
export PATH := $(PATH):/usr/local/go/bin:/usr/sbin:/sbin
GO      ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
BIN     := bin/kumo

.PHONY: all build up down deps test check web-check fuzz bench clean web

all: build

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/kumo

# Bring the cloud up on this machine: install what it needs, build, start.
up: deps build
	scripts/up.sh

# Stop the server started by `make up` (its state stays in /var/lib/kumo).
down:
	scripts/down.sh

deps:
	scripts/deps.sh

# The whole test suite, as CI runs it. Installs what it needs first.
test: deps check
	$(GO) test -count=1 -timeout 35m ./...
	# Fuzz budgets are counts, not durations: with a duration Go 1.26's
	# fuzz coordinator can end with "context deadline exceeded" and no
	# failing input when its time runs out mid-input (golang/go#75804, fixed
	# in Go 1.27; seen in a clean-clone CI run).
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime 400000x ./internal/scheduler
	$(GO) test -run '^$$' -bench . -benchtime 1x ./internal/scheduler ./internal/metering ./internal/network/datapath
	$(GO) test -run '^$$' -fuzz FuzzDecodeAndValidate -fuzztime 60000x ./internal/server

check:
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...
	# Doc comments start with the name they document (staticcheck, pinned in go.mod's tool lines).
	$(GO) tool staticcheck -checks ST1020,ST1021,ST1022 ./...
	$(MAKE) --no-print-directory web-check

# Rebuild the web console's bundles (web/dist, committed: go build needs no npm).
web:
	cd web && npm ci --no-audit --no-fund && node build.mjs

# The committed web/dist is what web/src builds to (esbuild's output is
# reproducible from package-lock.json): a change to src without `make web`
# fails here.
web-check:
	@out=$$(mktemp -d) && trap 'rm -rf "$$out"' EXIT && \
	(cd web && npm ci --no-audit --no-fund --loglevel=error >/dev/null && WEB_OUT="$$out" node build.mjs >/dev/null) && \
	diff -r web/dist "$$out" >/dev/null || { echo "web/dist is not what web/src builds to: run make web and commit web/dist"; exit 1; }

bench:
	$(GO) test -run '^$$' -bench . ./internal/scheduler ./internal/metering
	$(GO) test -run '^$$' -bench . -benchtime 3x ./internal/network/datapath

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecodeAndValidate -fuzztime 5m ./internal/server

clean:
	rm -rf bin
