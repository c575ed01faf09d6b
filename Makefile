# Quick start: `make sim` (set up, run on the simulator), `make test` (run every test).
# `make realcam`: the real-camera lane (real picamera2 + libcamera, ci/realcam/README.md).
VENV   ?= .venv
PYTHON ?= python3
STAMP  := $(VENV)/.installed-stamp

.PHONY: sim test realcam clean install uninstall

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[sim,setup,test]'
	touch $(STAMP)

sim: $(STAMP)
	mkdir -p sim-output
	$(VENV)/bin/trapd sim default --config config.yaml --report sim-output/report.json

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

# Builds (or restores) libcamera and .venv-realcam, then runs tests/realcam; ARGS go to pytest.
realcam:
	ci/realcam/run.sh $(ARGS)

clean:
	rm -rf sim-output .pytest_cache .hypothesis

# On the Pi, from /opt/trapd after creating the venv (README, "Install on a Raspberry Pi").
install:
	scripts/install.sh

uninstall:
	scripts/install.sh --uninstall
