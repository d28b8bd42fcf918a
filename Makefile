# make install | test | book | site-check | screenshot | reproduce | bench | clean
#
#   make test                   install if needed, run the test suite (in parallel: a pytest-xdist
#                               worker per core; PYTEST_ARGS="tests/test_data.py -x": part of it, serially)
#   make book                   execute every chapter at the small profile, render _build/html/
#                               (nproc notebooks at a time, one math thread each; -j1: one at a time)
#   make -j2 book               the same, two notebooks at a time
#   make site-check             after `make book`: every page in headless Chromium from file://, as a
#                               reader sees it (installs Debian's chromium package when missing)
#   make screenshot             after `make book`: docs/screenshot.png (the README's picture)
#   make reproduce              the paper profile: _build/paper/_build/html/ + records in results/
#   make book PROFILE=paper SEED=1 DEVICE=cuda   any profile / seed / device
#
# Book pipeline, for each page listed in _toc.yml (book/<name>.py or book/<name>.md):
#   book/<name>.py --jupytext--> _build/ipynb/<name>.ipynb (unexecuted)
#                  --papermill-> _build/<profile>/<name>.ipynb (executed, cwd = repository root,
#                                parameters: profile, results_dir [, seed, device, PARAMS];
#                                the cell papermill injects is collapsed, tag hide-input)
#   book/<name>.md --copy------> _build/<profile>/<name>.md
#   _build/<profile>/ --jupyter-book build (execution off, -W -n --keep-going)--> the HTML site, every
#                        page rendered anew (--all): the landing page pastes numbers from the report's
#                        notebook (glue), and a change of book/_static alone must reach the site
#                        (book/api.md: autodoc imports this checkout's snnl, PYTHONPATH=repository root)
# A notebook that fails is moved to _build/<profile>-failed/<name>.ipynb (executed up to the
# error) and the build stops. papermill writes the executed notebook when it ends or fails (and
# during cells longer than 30 s), not after every cell: a save per cell costs about a second.
# notebooks run side by side by default: as many as there are cores (`make -j1 book`: one at a time)
ifeq ($(filter -j% j%,$(MAKEFLAGS)),)
MAKEFLAGS += -j$(shell nproc 2>/dev/null || echo 1)
endif
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
.DELETE_ON_ERROR:

PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
# PY=/path/to/python (e.g. an activated conda env: PY=python) uses that interpreter as is.
ifeq ($(origin PY),undefined)
PY := $(VENV)/bin/python
INSTALLED := $(STAMP)
else
INSTALLED :=
endif
BIN := $(dir $(shell command -v $(PY) 2>/dev/null || echo $(PY)))

# ---- book parameters ------------------------------------------------------------------------
PROFILE ?= small
SEED ?=
DEVICE ?=
PARAMS ?=# extra papermill arguments, e.g. PARAMS="-p dataset mnist"
ifeq ($(PROFILE),small)
OUT ?= .
RESULTS ?= _build/results
else
OUT ?= _build/$(PROFILE)
RESULTS ?= results
endif
STAGE := _build/$(PROFILE)
FAILED := _build/$(PROFILE)-failed
HTML := $(OUT)/_build/html
MATHJAX_VERSION := 3.2.2
MATHJAX := _build/npm/node_modules/mathjax/es5
MATHJAX_FILES := tex-svg.js a11y adaptors input output sre ui

# under `make -jN` the notebooks run side by side: one math thread each (torch's default is one per
# core, and N processes of N threads on N cores spend their time waiting for each other); a value of
# OMP_NUM_THREADS in the environment wins
THREADS = $(if $(filter-out -j1,$(filter -j%,$(MAKEFLAGS))),OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=$${MKL_NUM_THREADS:-1})
PM_ARGS := -p profile $(PROFILE) -p results_dir $(RESULTS) $(if $(SEED),-p seed $(SEED)) \
	$(if $(DEVICE),-p device $(DEVICE)) $(PARAMS)
# pages of the book, in _toc.yml order: "root: name" and "- file: name" entries
PAGES := $(basename $(shell sed -nE 's/^[[:space:]]*(-[[:space:]]*)?(root|file):[[:space:]]*([^[:space:]\#]+).*/\3/p' _toc.yml))
NOTEBOOKS := $(foreach p,$(PAGES),$(if $(wildcard book/$(p).py),$(p)))
MARKDOWN := $(foreach p,$(PAGES),$(if $(wildcard book/$(p).md),$(p)))
MISSING := $(filter-out $(NOTEBOOKS) $(MARKDOWN),$(PAGES))
# the notebooks that take longest at the small profile start first, so that the last ones to run are
# short and the parallel jobs end together (the rest in _toc.yml order); measured on 2 cores, in s:
# regularization 86, generative 67, discriminative 61, beyond 57, the others 10-27
HEAVY := regularization generative discriminative beyond
RUN_ORDER := $(filter $(NOTEBOOKS),$(HEAVY)) $(filter-out $(HEAVY),$(NOTEBOOKS))
# a notebook is re-executed when its source or the package change (at the small profile also
# when the committed records change: chapters show them; paper-profile runs write them)
PKG_SRC := pyproject.toml $(shell find snnl -name '*.py' 2>/dev/null) \
	$(if $(filter small,$(PROFILE)),$(shell find results -name '*.json' 2>/dev/null))
ifneq ($(MISSING),)
ifneq ($(filter book reproduce,$(MAKECMDGOALS)),)
$(error _toc.yml lists $(MISSING) but book/ has no such .md or .py)
endif
endif
export JUPYTER_PLATFORM_DIRS := 1
export JUPYTER_PREFER_ENV_PATH := 1
export PYDEVD_DISABLE_FILE_VALIDATION := 1

.PHONY: install test book site-check screenshot reproduce bench clean FORCE
install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade "pip>=24"
	$(VENV)/bin/python -m pip install -q -c constraints.txt -e ".[all]"
	touch $@

# pytest exits 5 when it collected no tests: that is a failure, never a pass.
# By default the whole suite in parallel (pytest-xdist): one worker process per core, each with one
# math thread, the tests marked slow handed out first, the longest first, and idle workers taking
# queued tests from busy ones (tests/conftest.py); PYTEST_ARGS given replaces these flags (e.g. one
# file, in one process)
test: PYTEST_ARGS ?= -n auto --dist worksteal
test: $(INSTALLED)
	$(PY) -m pytest $(PYTEST_ARGS) || { rc=$$?; [ $$rc -ne 5 ] || echo "make test: no tests were collected" >&2; exit $$rc; }

bench: $(INSTALLED)
	$(PY) -m benchmarks $(BENCH_ARGS)

# The built site (_build/html) in headless Chromium, offline, from file://: figures, math, no error
# output, search, and what a reader sees: tables rendered as tables, no bare Python repr, prose in the
# first screen, no broken link (tests/test_site.py, tests/test_book.py; the checks of
# tests/site_checks.py are first shown able to fail, tests/test_site_checks.py). Chromium comes
# from Debian's packages when missing (as root, else through sudo); SNNL_SITE_CHECK=1 makes a
# missing browser or site a failure.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
site-check: $(INSTALLED)
	command -v chromium >/dev/null || command -v chromium-browser >/dev/null \
	  || { $(SUDO) apt-get update && $(SUDO) apt-get install -y chromium; }
	SNNL_SITE_CHECK=1 $(PY) -m pytest tests/test_site_checks.py tests/test_site.py tests/test_book.py $(PYTEST_ARGS)

# docs/screenshot.png, the README's picture of the book: a page of the built site (after
# `make book`; by default the reproduction report, as a reader first sees it) in headless Chromium,
# offline, from file://
SCREENSHOT_PAGE ?= reproduction
BROWSER_FLAGS := --headless --no-sandbox --disable-gpu --disable-background-networking --disable-component-update \
	--disable-sync --no-first-run --hide-scrollbars --virtual-time-budget=15000
screenshot:
	@test -f $(HTML)/$(SCREENSHOT_PAGE).html || { echo "no $(HTML)/$(SCREENSHOT_PAGE).html: run make book first" >&2; exit 1; }
	@mkdir -p docs; profile=$$(mktemp -d); trap 'rm -rf "$$profile"' EXIT; \
	  $$(command -v chromium || command -v chromium-browser) $(BROWSER_FLAGS) --user-data-dir="$$profile" \
	  --window-size=1280,1900 --screenshot=$(CURDIR)/docs/screenshot.png "file://$(abspath $(HTML))/$(SCREENSHOT_PAGE).html" 2>/dev/null
	@test -s docs/screenshot.png && echo "docs/screenshot.png: $(HTML)/$(SCREENSHOT_PAGE).html"

book: $(RUN_ORDER:%=$(STAGE)/%.ipynb) $(STAGE)/_config.yml $(STAGE)/_toc.yml $(MATHJAX)/tex-svg.js \
		$(MARKDOWN:%=$(STAGE)/%.md)
	$(if $(wildcard book/_static),mkdir -p $(STAGE)/_static && cp -r book/_static/. $(STAGE)/_static/)
	PYTHONPATH=$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH} $(BIN)jupyter-book build $(STAGE) --path-output $(OUT) --all -W -n --keep-going
	rm -rf $(HTML)/_static/mathjax && mkdir -p $(HTML)/_static/mathjax
	cp -r $(addprefix $(MATHJAX)/,$(MATHJAX_FILES)) $(HTML)/_static/mathjax/
	@echo "book ($(PROFILE) profile): $(HTML)/index.html"

reproduce:
	$(MAKE) book PROFILE=paper

# ---- book rules -----------------------------------------------------------------------------
.PRECIOUS: _build/ipynb/%.ipynb
_build/ipynb/%.ipynb: book/%.py $(INSTALLED)
	@mkdir -p $(@D)
	$(BIN)jupytext --from py:percent --to ipynb --set-kernel python3 -q -o $@ $<

$(STAGE)/%.ipynb: _build/ipynb/%.ipynb $(STAGE)/.params $(PKG_SRC) $(INSTALLED)
	@mkdir -p $(@D) $(FAILED)
	@echo "papermill book/$*.py -> $@ [$(strip $(PM_ARGS))]"
	@$(THREADS) $(BIN)papermill $< $@ -k python3 --cwd $(CURDIR) --no-progress-bar --no-request-save-on-cell-execute $(PM_ARGS) \
	  || { echo "notebook book/$*.py failed" >&2; ! mv -f $@ $(FAILED)/$*.ipynb 2>/dev/null \
	       || echo "executed up to the error: $(FAILED)/$*.ipynb" >&2; exit 1; }
	@$(PY) -c '$(COLLAPSE_INJECTED)' $@
	@rm -f $(FAILED)/$*.ipynb

# papermill's "injected-parameters" cell (the values this build set) is collapsed on the page, as the
# parameters cell is (tag hide-input): the page shows its story first
COLLAPSE_INJECTED := import nbformat, sys; nb = nbformat.read(sys.argv[1], 4); \
	[c.metadata.setdefault("tags", []).append("hide-input") for c in nb.cells \
	 if "injected-parameters" in c.metadata.get("tags", []) and "hide-input" not in c.metadata["tags"]]; \
	nbformat.write(nb, sys.argv[1])

# rewritten only when the papermill arguments change, so a new SEED/DEVICE re-executes
$(STAGE)/.params: FORCE
	@mkdir -p $(@D); echo '$(PM_ARGS)' | cmp -s - $@ || echo '$(PM_ARGS)' > $@

$(STAGE)/%.md: book/%.md
	@mkdir -p $(@D); cp $< $@

$(STAGE)/_config.yml: _config.yml
	@mkdir -p $(@D); cp $< $@

$(STAGE)/_toc.yml: _toc.yml
	@mkdir -p $(@D); cp $< $@

# MathJax 3 from the npm registry, copied into the site's _static/mathjax after each build, so
# math renders offline and from file:// (not via the book's _static: jupyter-book would add a
# <script> for every .js file there)
$(MATHJAX)/tex-svg.js:
	@command -v npm >/dev/null || { echo "make book needs npm (Node.js) once, to fetch MathJax $(MATHJAX_VERSION)" >&2; exit 1; }
	npm install --no-save --no-audit --no-fund --ignore-scripts --loglevel=error \
	  --prefix _build/npm mathjax@$(MATHJAX_VERSION)
	test -f $@

clean:
	rm -rf _build .pytest_cache .hypothesis
