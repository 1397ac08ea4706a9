# Two commands for a fresh machine (see README.md):
#   make run    set up a virtual environment and ComfyUI with this pack, then start it on 127.0.0.1:8188
#   make test   the same set-up, then the whole test suite (unit, end-to-end, browser)
# Settings: COMFYUI_DIR=/path/to/ComfyUI (use an existing ComfyUI), PORT=8188, VENV=.venv
PYTHON ?= python3

.PHONY: run test setup lint bench-rewards

run:
	$(PYTHON) tools/devenv.py run

test:
	$(PYTHON) tools/devenv.py test tests -v

setup:
	$(PYTHON) tools/devenv.py setup

lint: setup
	$${VENV:-.venv}/bin/python -m ruff check .

bench-rewards: setup
	$${VENV:-.venv}/bin/python benchmarks/bench_rewards.py
