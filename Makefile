# toolgate's contract for contributors and CI. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
PKGS := ./...
STATICCHECK ?= $(shell go env GOPATH)/bin/staticcheck

.PHONY: help build run test test-pg lint bench fuzz conformance interop tidy

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build bin/toolgate
	$(GO) build -o bin/toolgate ./cmd/toolgate

run: build ## run the gateway on :4000 with the embedded SQLite store
	./bin/toolgate serve --port $${PORT:-4000}

test: ## run every test with the race detector (Postgres too when TOOLGATE_TEST_DATABASE_URL is set)
	$(GO) test -race -count=1 $(PKGS)

test-pg: ## run the store suite against Postgres
	TOOLGATE_TEST_DATABASE_URL=$${TOOLGATE_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable} $(GO) test -race -count=1 ./store/...

lint: ## gofmt, go vet and staticcheck
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1)
	$(GO) vet $(PKGS)
	@test -x $(STATICCHECK) || $(GO) install honnef.co/go/tools/cmd/staticcheck@v0.8.2
	$(STATICCHECK) $(PKGS)

bench: ## run the benchmarks
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

# Go 1.26's fuzz coordinator can fail a target with a bare "context deadline exceeded" as
# -fuzztime ends (golang/go#75804, fixed in Go 1.27); no input is written then. Such a run
# is retried once; a run that writes a failing input fails at once.
fuzz: ## run each fuzz target briefly
	@for f in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
	  for t in $$(grep -h '^func Fuzz' $$f/*_test.go | sed 's/func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
	    for try in 1 2; do \
	      out=$$($(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime 10s $$f 2>&1) && { echo "$$out" | tail -1; break; }; \
	      echo "$$out"; \
	      if [ $$try = 2 ] || ! echo "$$out" | grep -q 'context deadline exceeded' || echo "$$out" | grep -q 'Failing input written'; then exit 1; fi; \
	      echo "make fuzz: $$t stopped on Go's fuzztime deadline race, retrying once"; \
	    done; done; done

conformance: build ## run the official MCP conformance suite direct and through the gateway
	./conformance/run-conformance.sh

interop: build ## run real MCP clients against the gateway
	./conformance/run-interop.sh

tidy: ## fail if go.mod/go.sum are not tidy
	$(GO) mod tidy && git diff --exit-code go.mod go.sum
