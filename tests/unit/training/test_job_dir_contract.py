"""The job folder's names are spelled in trainer/training/job_dir.py only: every other module of the
pack (trainer/, nodes/) reaches a job's files through its constants and JobDir, so the contract
between the trainer and whoever watches it has one owner."""

import ast

from support.comfy_harness import REPO

OWNER = REPO / "trainer" / "training" / "job_dir.py"


def contract_names() -> tuple[set[str], set[str], set[str]]:
    """From job_dir.py's own module-level string constants: (file names, name prefixes, folder names).
    A name ending in "-" is a prefix; a plain word (no dot, no dash) is a folder, which is flagged only
    as a path segment (`x / "samples"`), as such words are also dictionary keys elsewhere. The sample
    pattern's literal prefix ("epoch-") comes from its regular expression."""
    files, prefixes, folders = set(), set(), set()
    for node in ast.parse(OWNER.read_text()).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            continue
        name, value = node.targets[0].id, node.value
        if not name.isupper():
            continue
        if isinstance(value, ast.Call) and value.args and isinstance(value.args[0], ast.Constant):  # re.compile
            pattern = str(value.args[0].value).lstrip("^")
            prefixes.add(pattern[: next(i for i, c in enumerate(pattern) if c in "(\\[.*")])
        elif isinstance(value, ast.Constant) and isinstance(value.value, str):
            text = value.value
            if text.endswith("-"):
                prefixes.add(text)
            elif "." in text or "-" in text:
                files.add(text)
            else:
                folders.add(text)
    return files, prefixes, folders


def spelled(source: str, names: tuple[set[str], set[str], set[str]]) -> list[tuple[int, str]]:
    """(line, text) of each string constant in `source` that spells one of the contract's names."""
    files, prefixes, folders = names
    tree = ast.parse(source)
    segments = {
        id(side)
        for node in ast.walk(tree)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div)
        for side in (node.left, node.right)
    }
    segments |= {
        id(arg)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "joinpath"
        for arg in node.args
    }
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
            continue
        text = node.value
        if text in files or text.lstrip("^").startswith(tuple(prefixes)) or (text in folders and id(node) in segments):
            found.append((node.lineno, text))
    return sorted(found)


def test_the_contract_names_are_read_from_job_dir():
    files, prefixes, folders = contract_names()
    assert {"config.toml", "status.json", "metrics.jsonl", "log.txt", "lora.safetensors"} <= files
    assert {"trainer-output.txt", "cancel-request", "claim.lock"} <= files
    assert "epoch-" in prefixes and {"samples", "checkpoints"} <= folders


def test_the_check_finds_each_way_of_spelling_a_name():
    names = contract_names()
    source = (
        'a = job / "status.json"\n'
        'b = job.path / "samples" / name\n'
        'c = f"epoch-{epoch:04d}-{i:02d}.png"\n'
        'd = root.joinpath("checkpoints")\n'
        'e = {"samples": [], "checkpoint": "x"}\n'  # a dictionary key named like a folder is not a path
        'f = "epochs"\n'
        'g = re.compile(r"^epoch-(\\d+)\\.png$")\n'
    )
    assert [line for line, _ in spelled(source, names)] == [1, 2, 3, 4, 7]


def test_no_module_but_job_dir_spells_a_job_folder_name():
    names = contract_names()
    offenders = []
    for folder in ("trainer", "nodes"):
        for path in sorted((REPO / folder).rglob("*.py")):
            if path == OWNER:
                continue
            for line, text in spelled(path.read_text(encoding="utf-8"), names):
                offenders.append(f"{path.relative_to(REPO)}:{line}: {text!r}")
    assert not offenders, "spell these through trainer/training/job_dir.py:\n" + "\n".join(offenders)
