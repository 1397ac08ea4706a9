"""One pytest session collects unit, e2e and browser tests together, importing each test file by its base
name: two test files with one name stop the whole run at collection."""

from collections import Counter

from support.comfy_harness import REPO


def test_no_two_test_files_share_a_name():
    names = Counter(p.name for p in (REPO / "tests").rglob("test_*.py"))
    assert [name for name, n in names.items() if n > 1] == []
