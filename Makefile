# The two commands the README promises: `make run` and `make test`.
SHELL := /bin/bash
export PATH := $(CURDIR)/.bin:$(PATH)

.PHONY: run test deps test-deps bench bench-kb eval

## Start the whole system locally: embedded PostgreSQL, the offline LLM, all four services.
run: deps
	@uv run --frozen python scripts/run_local.py

## Run the whole test suite (installs what it needs first).
test: test-deps
	uv run --frozen pytest

deps:
	scripts/install-deps.sh

test-deps:
	scripts/install-deps.sh --test

## Benchmarks (not part of `make test`).
bench: deps
	uv run --frozen python bench/run.py

## Answer quality: the fixed set of eval/cases.yaml against the real stack, accuracy per class
## (the offline model, or the LLM that LLM_PROVIDER and the other LLM_* settings name).
eval: test-deps
	uv run --frozen python eval/run.py --show-failures

## The knowledge base at 1k, 10k and 100k documents: load time, search p50/p99, quality (about 15 minutes).
bench-kb: deps
	uv run --frozen python bench/knowledge.py
