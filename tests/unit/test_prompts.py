"""Prompt files and the unsafe/benign mix."""

import pytest

from trainer.evaluation.run import load_eval_prompts
from trainer.prompts import PromptError, PromptMixer, load_prompt_file, split_prompts


def test_text_csv_and_jsonl_files(tmp_path):
    (tmp_path / "p.txt").write_text("# unsafe set\na nude figure\n\nnaked swimmer\n")
    (tmp_path / "p.csv").write_text('prompt,categories\n"a nude figure, painting",sexual\nnaked swimmer,sexual\n')
    (tmp_path / "p.jsonl").write_text('{"prompt": "a nude figure"}\n\n{"prompt": "naked swimmer", "x": 1}\n')
    assert load_prompt_file(tmp_path / "p.txt") == ["a nude figure", "naked swimmer"]
    assert load_prompt_file(tmp_path / "p.csv") == ["a nude figure, painting", "naked swimmer"]
    assert load_prompt_file(tmp_path / "p.jsonl") == ["a nude figure", "naked swimmer"]


def test_empty_or_broken_files_are_named(tmp_path):
    (tmp_path / "empty.txt").write_text("# nothing\n\n")
    with pytest.raises(PromptError, match=r"empty\.txt holds no prompts"):
        load_prompt_file(tmp_path / "empty.txt")
    (tmp_path / "bad.jsonl").write_text('{"text": "x"}\n')
    with pytest.raises(PromptError, match=r"bad\.jsonl:1"):
        load_prompt_file(tmp_path / "bad.jsonl")
    with pytest.raises(PromptError, match="cannot read"):
        load_prompt_file(tmp_path / "missing.txt")


def test_mix_ratio_and_reproducibility():
    mixer = PromptMixer(["u1", "u2"], ["b1", "b2", "b3"], unsafe_ratio=0.25)
    batch = mixer.draw(8, seed=3)
    assert sum(unsafe for _, unsafe in batch) == 2
    assert all((p in ("u1", "u2")) == unsafe for p, unsafe in batch)
    assert mixer.draw(8, seed=3) == batch and mixer.draw(8, seed=4) != batch
    with pytest.raises(PromptError, match="no unsafe prompts"):
        PromptMixer([], ["b"], 0.5)
    assert all(not u for _, u in PromptMixer([], ["b"], 0.0).draw(4, 0))


def test_group_draw_repeats_each_prompt_for_its_group_and_mixes_both_kinds_in_every_batch():
    mixer = PromptMixer(["u1", "u2", "u1", "u3"], ["b1", "b2", "b2"], unsafe_ratio=0.5)
    assert mixer.unsafe == ["u1", "u2", "u3"] and mixer.benign == ["b1", "b2"]  # de-duplicated, order kept
    for seed in range(20):
        batch = mixer.draw(16, seed=seed, group_size=4)
        prompts = [p for p, _ in batch]
        groups = [prompts[k : k + 4] for k in range(0, 16, 4)]
        assert all(len(set(g)) == 1 for g in groups)  # 4 prompts, 4 samples each, in a row
        assert len({g[0] for g in groups}) == 4  # distinct prompts while the lists have enough
        assert sum(u for _, u in batch) == 8
    lopsided = PromptMixer(["u1", "u2"], ["b1"], unsafe_ratio=0.9)
    assert all(any(not u for _, u in lopsided.draw(8, seed=s, group_size=4)) for s in range(10))  # benign in each
    assert [p for p, _ in PromptMixer(["u"], ["b"], 1.0).draw(6, 0, group_size=4)] == ["u"] * 6  # last group short
    single = [PromptMixer(["u"], ["b"], 0.5).draw(4, seed, group_size=4)[0][1] for seed in range(40)]
    assert 10 < sum(single) < 30  # one prompt per batch: unsafe about half the time, not never


def test_every_reader_skips_an_indented_comment_and_keeps_a_hash_inside_a_prompt(tmp_path):
    text = "a nude figure\n  # note: indented comment\n\na #1 fan\n"
    (tmp_path / "p.txt").write_text(text)
    expected = ["a nude figure", "a #1 fan"]
    assert split_prompts(text) == expected  # the node's text boxes
    assert load_prompt_file(tmp_path / "p.txt") == expected  # training files, score --prompts
    assert [r.text for r in load_eval_prompts(tmp_path / "p.txt")] == expected  # eval


def test_a_csv_without_a_prompt_column_is_refused_by_name(tmp_path):
    (tmp_path / "headless.csv").write_text("a nude figure,sexual\nnaked swimmer,sexual\n")
    with pytest.raises(PromptError, match=r"headless\.csv has no 'prompt' column"):
        load_prompt_file(tmp_path / "headless.csv")
