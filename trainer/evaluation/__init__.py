"""Evaluation: generate from prompts on fixed seeds, measure with a detector, compare two results."""
