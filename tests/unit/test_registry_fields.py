"""What the Comfy Registry reads: pyproject.toml's fields and the archive it publishes, checked offline.

The rules are the registry's published pyproject.toml specification and what its CLI does when it
packs (`comfy node publish`): the git-tracked files, minus those .comfyignore matches (gitignore
syntax, read with pathspec's "gitwildmatch"), plus `[tool.comfy] includes`.
"""

import re
import shutil
import subprocess
import warnings
import xml.etree.ElementTree as ET
from urllib.parse import urlparse

import pytest
import tomllib
from packaging.specifiers import SpecifierSet

import trainer
from support.comfy_harness import REPO
from support.prerequisites import require

META = tomllib.loads((REPO / "pyproject.toml").read_text())
PROJECT, COMFY = META["project"], META["tool"]["comfy"]
MAX_ARCHIVE_BYTES = 2_000_000  # code, docs and the 76 KB shape classifier; a model slipping in would pass this


def test_node_id_follows_the_registry_rule():
    # The registry: under 100 characters; letters, digits, '-', '_', '.'; no two special characters in a
    # row; starting with a letter. Lowercase too: ids compare case-insensitively, and this one is the
    # folder name under custom_nodes of a registry install. Its advice: no "ComfyUI" in the id.
    name = PROJECT["name"]
    assert len(name) < 100
    assert re.fullmatch(r"[a-z][a-z0-9]*(?:[-_.][a-z0-9]+)*", name), name
    assert "comfyui" not in name.lower()


def test_version_is_semantic_and_the_trainer_s():
    assert re.fullmatch(r"\d+\.\d+\.\d+", PROJECT["version"]), PROJECT["version"]
    assert PROJECT["version"] == trainer.__version__


def test_description_license_and_repository():
    assert PROJECT["description"].strip()
    assert (REPO / PROJECT["license"]["file"]).is_file()
    assert PROJECT["urls"]["Repository"].startswith("https://github.com/")


def test_publisher_and_display_name():
    assert re.fullmatch(r"[a-z0-9][a-z0-9_-]*", COMFY["PublisherId"]), COMFY["PublisherId"]
    assert COMFY["DisplayName"].strip()


def test_requires_comfyui_is_a_version_specifier():
    spec = COMFY["requires-comfyui"]
    assert spec == ">=0.3.75"  # the oldest ComfyUI the tests boot
    assert SpecifierSet(spec).contains("0.3.75")
    # the registry CLI's own check: [operator]major.minor.patch, comma-separated
    for part in spec.split(","):
        assert re.fullmatch(r"(?:(==|>=|<=|!=|~=|>|<|<>|=)\s*)?\d+\.\d+\.\d+(?:-[a-zA-Z0-9]+)?", part.strip()), part


def test_icon_is_the_raw_url_of_a_square_svg_in_this_repository():
    url = urlparse(COMFY["Icon"])
    assert url.scheme == "https" and url.netloc == "raw.githubusercontent.com", COMFY["Icon"]
    owner_repo = urlparse(PROJECT["urls"]["Repository"]).path.strip("/")
    prefix = f"/{owner_repo}/main/"
    assert url.path.startswith(prefix), f"{COMFY['Icon']} is not a file of {owner_repo} on main"
    icon = REPO / url.path.removeprefix(prefix)
    assert icon.is_file(), f"{icon} does not exist"
    svg = ET.parse(icon).getroot()
    assert svg.tag.endswith("svg")
    assert svg.get("width") == svg.get("height") and int(svg.get("width")) <= 400  # the registry's icon limit


def _tracked() -> list[str]:
    require(shutil.which("git") is not None and (REPO / ".git").exists(), "the archive check needs git and a clone")
    done = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True)
    return done.stdout.splitlines()


def _git_ignored(files: list[str]) -> set[str]:
    """The tracked files .comfyignore matches, by git's own gitignore rules."""
    done = subprocess.run(
        ["git", "ls-files", "--cached", "--ignored", "--exclude-from=.comfyignore"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return set(done.stdout.splitlines()) & set(files)


def _patterns() -> list[str]:
    """.comfyignore's patterns as the registry CLI reads them (stripped; whole-line '#' comments dropped)."""
    lines = (REPO / ".comfyignore").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


@pytest.fixture(scope="module")
def archive() -> set[str]:
    files = _tracked()
    assert not COMFY["includes"], "includes are force-added by the CLI: check them here if any are added"
    return set(files) - _git_ignored(files)


def test_archive_holds_what_comfyui_and_a1111_run(archive):
    for path in ("__init__.py", "install.py", "requirements.txt", "pyproject.toml", "README.md", "LICENSE"):
        assert path in archive, path
    tracked = _tracked()
    for folder in ("nodes/", "trainer/", "web/", "locales/", "docs/", "example_workflows/", "scripts/"):
        files = [f for f in tracked if f.startswith(folder)]
        assert files and set(files) <= archive, f"{folder} is not shipped whole"
    # the Toy Red Reward node's detector reads models/toyworld/shape_classifier (trainer/toyworld/detectors.py)
    assert {"models/toyworld/shape_classifier/config.json", "models/toyworld/shape_classifier/model.safetensors"} <= (
        archive
    )


def test_archive_leaves_out_development_files_and_the_toy_model(archive):
    for folder in ("tests/", "benchmarks/", "tools/", ".ci/", ".github/"):
        assert not [f for f in archive if f.startswith(folder)], folder
    assert not {"Makefile", "requirements-dev.txt"} & archive
    toy = {f for f in archive if f.startswith("models/")}
    assert toy and all(f.startswith("models/toyworld/shape_classifier/") for f in toy), sorted(toy)
    assert sum((REPO / f).stat().st_size for f in archive) < MAX_ARCHIVE_BYTES


def test_every_comfyignore_pattern_matches_something(tmp_path):
    files = _tracked()
    probe = tmp_path / "one-pattern"
    for pattern in _patterns():
        if pattern.startswith("!"):
            continue
        probe.write_text(pattern + "\n")
        done = subprocess.run(
            ["git", "ls-files", "--cached", "--ignored", f"--exclude-from={probe}"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
        assert set(done.stdout.splitlines()) & set(files), f".comfyignore pattern {pattern!r} matches no tracked file"


def test_the_registry_cli_s_matcher_agrees_with_git(archive):
    try:
        import pathspec
    except ImportError:
        pathspec = None
    require(pathspec is not None, "pathspec (requirements-dev.txt) is not installed: pip install pathspec")
    with warnings.catch_warnings():  # pathspec 1.x deprecates the name; the CLI still uses it
        warnings.simplefilter("ignore", DeprecationWarning)
        spec = pathspec.PathSpec.from_lines("gitwildmatch", _patterns())
    assert {f for f in _tracked() if not spec.match_file(f)} == archive
