"""docs/config.md is the configuration as the code defines it: regenerate it when a setting changes."""

import dataclasses
from pathlib import Path

from trainer.training.config import RLConfig
from trainer.training.config_reference import render_reference

DOC = Path(__file__).resolve().parents[3] / "docs" / "config.md"


def test_committed_reference_matches_the_code():
    assert DOC.read_text(encoding="utf-8") == render_reference(), (
        "docs/config.md is stale: run `python -m trainer config-reference --out docs/config.md`"
    )


def test_every_setting_is_listed_with_its_help():
    text = render_reference()
    config = RLConfig()
    for section in dataclasses.fields(config):
        for f in dataclasses.fields(getattr(config, section.name)):
            assert f.metadata.get("help"), f"{section.name}.{f.name} has no help text"
            assert f"`{section.name}.{f.name}`" in text
