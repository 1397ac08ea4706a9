"""The files an evaluation writes into its output folder, spelled once (run.py, before_after.py, the eval CLI,
and the job folder of an evaluation job)."""

COMPARE_FILE = "compare.json"  # results side by side (compare.py)
COMPARE_TEXT = "compare.md"
PAIR_GRID_FILE = "before_after.png"  # before/after pairs (before_after.py)
BEFORE_DIR = "base"  # before_after.py: the evaluation without the LoRA
AFTER_DIR = "lora"  # and with it
