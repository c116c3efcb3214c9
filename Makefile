# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create .venv at the repository root on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test setup browser clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first and alone: pip then takes the local CPU build instead of a CUDA one.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/tracect demo --out demo-output --overwrite

# The report test opens the HTML page in headless Chromium (Debian's package): install it where it is
# missing and apt-get is there. TRACECT_SKIP_BROWSER=1 skips both this install and the browser tests.
browser:
	@if [ "$$TRACECT_SKIP_BROWSER" != 1 ] && ! command -v chromium >/dev/null 2>&1 \
	    && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing chromium (headless browser for the HTML report test)"; \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo "sudo -n"); \
	  $$sudo apt-get update -qq >/dev/null || true; \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
	    || echo "could not install chromium; the report test will fail and say how to install it"; \
	fi

test: $(STAMP) browser
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) demo-output
