# rerf — run `make help` for the targets.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
JSDEC  := rerf_codec/web/decoder
# The CPU build of torch; on a CUDA machine: make install TORCH_SPEC=torch==2.13.0
TORCH_SPEC ?= torch==2.13.0+cpu

.PHONY: help install test test-all demo bench lint clean

help:  ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: setup.cfg pyproject.toml setup.py rerf_codec/codec/_native.c rerf_codec/field/_march.c
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 $(PY) -m pip install -q -e ".[dev,ray]"
	touch $@

# The JS decoder has no runtime dependency; npm ci installs its lint tools (typescript), pinned by the lockfile.
$(JSDEC)/node_modules/.package-lock.json: $(JSDEC)/package.json $(JSDEC)/package-lock.json
	@if command -v npm >/dev/null; then cd $(JSDEC) && npm ci --no-audit --no-fund --loglevel=error; \
	else echo "npm not found: skipping the JS decoder's lint tools (make lint needs them)"; fi

install: $(VENV)/.installed $(JSDEC)/node_modules/.package-lock.json  ## create .venv and install rerf with its dependencies (CPU torch) and the JS decoder's lint tools

test: install  ## run the test suite (skips the slow marks)
	$(PY) -m pytest -q -m "not slow"

test-all: install  ## run every test, slow ones included
	$(PY) -m pytest -q

demo: install  ## the whole pipeline on the built-in scene: dataset, train, encode, decode, eval, turntable (writes under demo-out/)
	$(VENV)/bin/rerf demo -o demo-out --force

bench: install  ## measure the codec on the synthetic 128^3 x 13 benchmark (see BENCHMARKS.md)
	$(PY) -m rerf_codec.bench.codec_bench --json-out bench-out/codec.json

lint:  install ## ruff over everything, mypy --strict on the format-defining code (config: setup.cfg [mypy]), tsc --checkJs on the JS decoder and the player
	$(VENV)/bin/ruff check rerf_codec cli tests bitstreams
	$(VENV)/bin/mypy rerf_codec/bitstream.py rerf_codec/codec/
	cd $(JSDEC) && npx --no-install tsc -p jsconfig.json
	cd $(JSDEC) && npx --no-install tsc -p ../jsconfig.json

clean:  ## remove the venv and build outputs
	rm -rf $(VENV) build dist *.egg-info demo-out bench-out $(JSDEC)/node_modules
