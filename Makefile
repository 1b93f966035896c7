# The two commands a newcomer needs: `make demo` and `make test`.
# `make demo` installs only what the product needs to run; the test tools (browsers' drivers,
# linters, fuzzers) come with the first target that needs them.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --quiet --disable-pip-version-check
RUNTIME := $(VENV)/.installed
STAMP := $(VENV)/.installed-test

.PHONY: demo test test-fast test-slow proof lint typecheck bench clean

$(RUNTIME): pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -e .
	touch $(RUNTIME)

$(STAMP): $(RUNTIME)
	$(PIP) install -e '.[test]'
	touch $(STAMP)

# Without a `codex` on PATH the demo uses the pinned Codex CLI (installed from npm) for its
# live conversations; with no Codex login it talks to the offline demo model.
demo: $(RUNTIME)
	@if ! command -v codex >/dev/null 2>&1; then \
		CODEX_BIN=$$(scripts/install-codex.sh 2>/dev/null | tail -n 1); \
		if [ -x "$$CODEX_BIN" ]; then PATH="$$(dirname "$$CODEX_BIN"):$$PATH"; fi; \
	fi; export PATH; $(VENV)/bin/codexrelay demo $(DEMO_ARGS)

test: $(STAMP)
	scripts/ensure-browsers.sh
	deploy/ensure-caddy.sh
	deploy/ensure-postgres.sh
	$(PY) -m ruff check src tests bench scripts
	$(PY) -m mypy
	$(PY) -m pytest -n 2 --dist loadfile

test-fast: $(STAMP)
	$(PY) -m pytest tests/unit tests/api

test-slow: $(STAMP)
	$(PY) -m pytest -m slow --run-slow --hypothesis-profile=explore

# Every reliability and security proof, long ones included, with the figures they print.
proof: $(STAMP)
	$(PY) -m pytest tests/proof --run-slow --hypothesis-profile=explore -s

lint: $(STAMP)
	$(PY) -m ruff check src tests bench scripts
	$(PY) -m ruff format --check src tests bench

typecheck: $(STAMP)
	$(PY) -m mypy

bench: $(STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
