"""All-but-One concept erasure: the objective, the trainer, and Purify (DDIM inversion and regeneration)."""
