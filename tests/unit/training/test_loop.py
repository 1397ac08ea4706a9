"""The epoch loop both methods run (training/loop.py), with a small method of its own on a tiny random
pipeline: an early stop keeps its epoch, an undone epoch gives back the last kept LoRA, a stop request
at a safe point keeps the last complete epoch with the method's own state, and resume takes it back."""

import json

import pytest
import torch
from safetensors.torch import load_file

from trainer.diffusion.tiny import tiny_pipeline
from trainer.training.config import load_config
from trainer.training.loop import EpochReport, Samples, train_job
from trainer.training.run import TrainingCancelled, load_checkpoint
from trainer.training.session import setup_models


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    return tiny_pipeline(tmp_path_factory.mktemp("tiny-pipeline"))


class Pull:
    """One AdamW step per epoch pulling every LoRA weight towards 1; its own state counts the steps.
    `stop_at` / `undo_at` / `cancel_at`: the epoch whose report stops, undoes, or where a stop request lands."""

    def __init__(self, models, stop_at=None, undo_at=None, cancel_at=None):
        self.models, self.steps, self.restored = models, 0, None
        self.stop_at, self.undo_at, self.cancel_at = stop_at, undo_at, cancel_at

    def epoch(self, epoch, stop):
        if epoch == self.cancel_at:
            stop.signalled = True  # as SIGTERM does
        if stop.stop:
            raise TrainingCancelled
        params = [p for p in self.models.unet.parameters() if p.requires_grad]
        loss = sum(((p - 1) ** 2).sum() for p in params)
        loss.backward()
        self.models.optimizer.step()
        self.models.optimizer.zero_grad()
        self.steps += 1
        metrics = {"loss": float(loss.detach()), "steps": self.steps}
        return EpochReport(
            metrics,
            stop="enough" if epoch == self.stop_at else None,
            undo="too far" if epoch == self.undo_at else None,
        )

    def snapshot(self):
        return {"steps": torch.tensor(self.steps)}

    def restore(self, state):
        self.restored = int(state["steps"])
        self.steps = self.restored

    def samples(self, epoch):
        return Samples([torch.full((8, 8, 3), epoch, dtype=torch.uint8).numpy()], [f"epoch {epoch}"])


def run(pipeline, job, epochs, resume=False, **method):
    config = load_config(
        None,
        [f'model.checkpoint="{pipeline}"', "model.resolution=32", f"train.epochs={epochs}", "train.learning_rate=0.03"],
    )
    made = []

    def start(models):
        made.append(Pull(models, **method))
        return made[0]

    try:
        return train_job(config, job, resume, None, method="test", setup=setup_models, start=start), made[0], config
    except TrainingCancelled:
        return None, made[0], config


def read(job):
    metrics = [json.loads(line) for line in (job / "metrics.jsonl").read_text().splitlines()]
    return metrics, json.loads((job / "status.json").read_text())


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_an_early_stop_keeps_its_epoch_and_ends_the_run_done(pipeline, tmp_path):
    lora, _, config = run(pipeline, tmp_path / "job", 5, stop_at=1)
    metrics, status = read(tmp_path / "job")
    assert [m["epoch"] for m in metrics] == [0, 1] and list(metrics[0]) == ["epoch", "loss", "steps"]
    assert (status["state"], status["epoch"], status["total"], config.train.epochs) == ("done", 2, 2, 2)
    assert sorted(p.name for p in (tmp_path / "job" / "samples").iterdir()) == [
        "epoch-0000-00.png",
        "epoch-0001-00.png",
    ]
    kept = load_checkpoint(tmp_path / "job" / "checkpoints" / "epoch-000002")
    assert kept["epochs_done"] == 2 and int(kept["state"]["steps"]) == 2
    written = {k: v for k, v in load_file(str(lora)).items() if k.endswith("lora_up.weight")}
    assert written and all(float(v.abs().max()) > 0 for v in written.values())  # the LoRA moved


def test_an_undone_epoch_gives_back_the_last_kept_lora(pipeline, tmp_path):
    kept, _, _ = run(pipeline, tmp_path / "kept", 1)
    undone, _, _ = run(pipeline, tmp_path / "undone", 5, undo_at=1)
    metrics, status = read(tmp_path / "undone")
    assert [m["epoch"] for m in metrics] == [0, 1]  # the undone epoch's row is written
    assert (status["state"], status["epoch"]) == ("done", 1)
    assert not (tmp_path / "undone" / "checkpoints" / "epoch-000002").exists()
    assert not (tmp_path / "undone" / "samples" / "epoch-0001-00.png").exists()
    assert same(load_file(str(kept)), load_file(str(undone)))  # one epoch's LoRA, not two


def test_a_stop_request_keeps_the_last_epoch_and_resume_repeats_the_uninterrupted_run(pipeline, tmp_path):
    straight, _, _ = run(pipeline, tmp_path / "straight", 4)
    lora, method, _ = run(pipeline, tmp_path / "job", 4, cancel_at=2)
    assert lora is None and not (tmp_path / "job" / "lora.safetensors").exists()
    metrics, status = read(tmp_path / "job")
    assert (status["state"], status["epoch"], len(metrics)) == ("cancelled", 2, 2)
    assert int(load_checkpoint(tmp_path / "job" / "checkpoints" / "epoch-000002")["state"]["steps"]) == 2
    resumed, method, _ = run(pipeline, tmp_path / "job", 4, resume=True)
    assert method.restored == 2  # the method's own state came back from the checkpoint
    metrics, status = read(tmp_path / "job")
    assert [m["steps"] for m in metrics] == [1, 2, 3, 4] and status["state"] == "done"
    assert same(load_file(str(straight)), load_file(str(resumed)))
