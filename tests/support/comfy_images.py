"""Images in and out of a test's ComfyUI server: upload to its input folder, read what Save Image wrote."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def upload(comfy, image: Image.Image, name: str) -> str:
    """Put an image in the server's input folder (as the frontend's upload does); returns its name for Load Image."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    r = comfy.post("/upload/image", files={"image": (name, buf.getvalue(), "image/png")}, data={"overwrite": "true"})
    assert r.ok, r.text
    return r.json()["name"]


def saved(comfy, entry: dict, node: str, index: int = 0) -> np.ndarray:
    """The RGB pixels of image `index` that Save Image node `node` wrote in this run."""
    info = entry["outputs"][node]["images"][index]
    return np.asarray(Image.open(comfy.base_dir / "output" / info["subfolder"] / info["filename"]).convert("RGB"))
