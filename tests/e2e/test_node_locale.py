"""The English locale and the help pages, as a running ComfyUI serves them to its frontend.

locales/en/ must be exactly what tools/node_locale.py writes from the nodes' /object_info: a
node whose input, output or tooltip changed fails here until the tool is run again.
"""

import json

import pytest

from support.comfy_harness import PACK_NAME, REPO
from tools.node_locale import LOCALE, main_strings, node_defs

FIX = "run `python tools/node_locale.py --object-info URL_OF_A_COMFYUI_WITH_THE_PACK` and commit locales/en/"


@pytest.fixture(scope="module")
def object_info(comfy) -> dict:
    return comfy.get("/object_info").json()


def test_locale_files_are_the_running_nodes_text(object_info):
    assert json.loads((LOCALE / "nodeDefs.json").read_text(encoding="utf-8")) == node_defs(object_info), FIX
    assert json.loads((LOCALE / "main.json").read_text(encoding="utf-8")) == main_strings(object_info), FIX


def test_comfyui_serves_the_locale_and_every_help_page(comfy, object_info):
    english = comfy.get("/i18n").json()["en"]
    ours = sorted(k for k in object_info if k.startswith("ShieldDiff"))
    assert sorted(k for k in english["nodeDefs"] if k.startswith("ShieldDiff")) == ours
    assert english["nodeCategories"]["ShieldDiff"] == "ShieldDiff"
    for node_id in ours:
        page = comfy.get(f"/extensions/{PACK_NAME}/docs/{node_id}.md")
        assert page.status_code == 200, node_id
        assert page.text == (REPO / "web" / "docs" / f"{node_id}.md").read_text(encoding="utf-8")
