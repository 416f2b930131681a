# Two commands for learners: `make run` and `make test`. Everything installs into .venv from the lock file.
PYTHON ?= python3
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
UV_VERSION := 0.13.9
LESSONS ?=
EDITION ?= learner

export PATH := $(BIN):$(PATH)
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true
export DVC_NO_ANALYTICS := 1
export TQDM_MININTERVAL := 5

.PHONY: run test lab execute clean lock site bench tools

# --compile-bytecode: uv writes no .pyc files by default, and where PYTHONDONTWRITEBYTECODE is set (as in many CI
# images) every kernel, server and CLI would then compile mlflow, pandas and scikit-learn from source at each start.
$(VENV)/done: requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	@touch $@

run: $(VENV)/done  ## execute every lesson into build/executed and print a table
	$(BIN)/mlops-course run $(LESSONS)

test: $(VENV)/done tools  ## unit tests, notebook hygiene, every lesson and its learner edition run offline and compared (nbval's comparison), JupyterLab
	$(BIN)/python -m pytest -n 2 --dist loadfile tests -q -rs -p no:cacheprovider

site: $(VENV)/done  ## render the course as a static offline site in build/site (EDITION=instructor for that one)
	$(BIN)/mlops-course render --edition $(EDITION) --out build/site

bench: $(VENV)/done  ## course time + memory, serving, drift, fresh-clone setup -> build/bench.md (~11 min on 2 idle cores; BENCH="drift" for some)
	$(BIN)/python benchmarks/run_all.py $(BENCH)

# System programs the tests and lessons run, from Debian's packages: chromium (the site and JupyterLab in a real
# browser), prometheus (promtool checks the alert rules; lesson 09 runs the server) and prometheus-alertmanager.
SYSTEM_TOOLS := /usr/bin/chromium:chromium /usr/bin/promtool:prometheus /usr/bin/prometheus-alertmanager:prometheus-alertmanager
tools:  ## install the Debian packages above when missing (apt-get; needs root, says so otherwise)
	@missing=""; for t in $(SYSTEM_TOOLS); do test -x "$${t%%:*}" || missing="$$missing $${t#*:}"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			export DEBIAN_FRONTEND=noninteractive && apt-get update -qq && apt-get install -y -qq $$missing >/dev/null; \
		else echo "make: missing$$missing; install with: sudo apt-get install$$missing (macOS: brew install prometheus alertmanager, and Chromium)" >&2; fi; \
	fi

lab: $(VENV)/done  ## JupyterLab on notebooks/: 127.0.0.1, a token, no news or update checks (mlops_course/course/lab.py)
	$(BIN)/mlops-course lab

execute: $(VENV)/done  ## re-execute lessons in place (LESSONS="01 02" for some) and strip volatile metadata
	$(BIN)/mlops-course execute $(LESSONS)

lock:  ## recompile requirements.lock from pyproject.toml and pins.txt
	$(BIN)/uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 -c pins.txt -o requirements.lock

clean:  ## remove the environment, build output and lesson workspaces
	rm -rf $(VENV) build workspaces *.egg-info
