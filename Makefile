# Two commands for a fresh machine (see README.md):
#   make run    set up a virtual environment and ComfyUI with this pack, then start it on 127.0.0.1:8188
#   make test   the same set-up, then the whole test suite (unit, end-to-end, browser)
# Settings: COMFYUI_DIR=/path/to/ComfyUI (use an existing ComfyUI), PORT=8188, VENV=.venv
PYTHON ?= python3

.PHONY: run test setup lint bench-venv bench-rewards bench-rl bench-erase bench-efficacy toy-model eval-toy

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

# trl 0.23.1 (the last trl with DDPOTrainer) is a benchmark-only peer: it gets its own environment,
# layered over .venv, so the pack's environment never depends on it.
bench-venv: setup
	test -x .venv-bench/bin/python || python3 -m venv .venv-bench
	echo "$$($${VENV:-.venv}/bin/python -c 'import site; print(site.getsitepackages()[0])')" > \
		"$$(.venv-bench/bin/python -c 'import site; print(site.getsitepackages()[0])')/shielddiff-main-venv.pth"
	.venv-bench/bin/python -m pip install --quiet trl==0.23.1

bench-rl: bench-venv
	$${VENV:-.venv}/bin/python benchmarks/bench_rl_vs_trl.py

# All-but-One erasure against ShieldDiff RL: time and peak memory per optimisation step at equal batch.
bench-erase: setup
	$${VENV:-.venv}/bin/python benchmarks/bench_erase_vs_rl.py

# The toy world (docs/toyworld.md): retrain the committed toy model (about 20 minutes on 2 CPU
# cores; CPU runs are not bit-reproducible, so this replaces models/toyworld), and measure how well
# it follows prompts, on seeds no test uses.
toy-model: setup
	$${VENV:-.venv}/bin/python -m trainer.toyworld.pretrain --out models/toyworld --overwrite

eval-toy: setup
	$${VENV:-.venv}/bin/python -m trainer eval --model models/toyworld --prompts benchmarks/toyworld_prompts.csv \
		--detector toy-red --images-per-prompt 8 --seed 5000 --steps 30 --guidance 7.5 --out test-artifacts/eval-toy

# The methods' efficacy in the toy world, side by side (docs/toyworld.md "Efficacy in the toy world"):
# each trains for the same CPU minutes (trl's DDPOTrainer too, from .venv-bench), then eval measures
# base and LoRAs on held-out prompts and seeds, and the RL trainers' red rate against CPU minutes.
bench-efficacy: bench-venv
	$${VENV:-.venv}/bin/python benchmarks/bench_efficacy.py
