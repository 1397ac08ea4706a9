"""The tiny training request the job tests queue: two prompts, a 32-pixel image, a few steps."""

from __future__ import annotations

from trainer.jobs.request import TrainingRequest

TINY = ["model.resolution=32", "reward.kind=center-brightness", "train.learning_rate=0.01"]


def tiny_request(pipeline, name: str, epochs: int = 2, steps: int = 3, **kw) -> TrainingRequest:
    """A request for `epochs` epochs of 2 samples of `steps` denoising steps on the tiny pipeline."""
    return TrainingRequest(
        checkpoint=str(pipeline),
        lora_name=name,
        unsafe_prompts="a red square",
        benign_prompts="a blue circle",
        epochs=epochs,
        sample_batch_size=2,
        batches_per_epoch=1,
        train_batch_size=2,
        steps=steps,
        extra=TINY,
        **kw,
    )
