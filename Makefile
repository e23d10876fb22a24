# Two commands set everything up: `make demo` and `make test`. Both create .venv and install what they need.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# torch==2.13.0 resolves to the local CPU wheel; the range in pyproject keeps it from pulling a CUDA build.
TORCH  ?= torch==2.13.0

.PHONY: demo test venv install install-dev bench clean

$(VENV)/.created:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	touch $@

$(VENV)/.installed: $(VENV)/.created pyproject.toml
	$(PIP) install -q "$(TORCH)"
	$(PIP) install -q -e .
	touch $@

# The tour in README.md exports to Hugging Face, so `make demo` installs the `hf` extra too.
$(VENV)/.installed-hf: $(VENV)/.installed pyproject.toml
	$(PIP) install -q -e ".[hf]"
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed pyproject.toml
	$(PIP) install -q -e ".[dev]"
	touch $@

venv install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed-hf
	$(VENV)/bin/maskbench demo $(ARGS)

test: $(VENV)/.installed-dev
	$(PY) -m pytest $(ARGS)

bench: $(VENV)/.installed-dev
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .hypothesis
