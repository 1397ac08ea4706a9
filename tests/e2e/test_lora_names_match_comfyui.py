"""The pack's diffusers <-> original UNet names agree with ComfyUI's own map, for every weight."""

import os
import subprocess
import sys
import textwrap

from support.comfy_harness import REPO

SCRIPT = textwrap.dedent(
    """
    import sys
    sys.argv = [sys.argv[0], "--cpu"]
    import comfy.options
    comfy.options.enable_args_parsing()
    import comfy.utils
    from trainer.lora.names import LAYOUTS, diffusers_to_ldm, ldm_to_diffusers

    configs = {
        "sd15": {"model_channels": 320, "num_res_blocks": [2] * 4, "channel_mult": [1, 2, 4, 4],
                 "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0], "transformer_depth_output": [1] * 9 + [0] * 3,
                 "transformer_depth_middle": 1, "context_dim": 768, "use_linear_in_transformer": False},
        "sdxl": {"model_channels": 320, "num_res_blocks": [2] * 3, "channel_mult": [1, 2, 4],
                 "transformer_depth": [0, 0, 2, 2, 10, 10], "transformer_depth_output": [0, 0, 0, 2, 2, 2, 10, 10, 10],
                 "transformer_depth_middle": 10, "context_dim": 2048, "use_linear_in_transformer": True,
                 "adm_in_channels": 2816},
        "sd15-demo": {"model_channels": 320, "num_res_blocks": [1], "channel_mult": [1], "transformer_depth": [1],
                      "transformer_depth_output": [1, 1], "transformer_depth_middle": 1, "context_dim": 768,
                      "use_linear_in_transformer": False},
    }
    for name, config in configs.items():
        layout, checked = LAYOUTS[name], 0
        for diffusers_key, ldm_key in comfy.utils.unet_to_diffusers(config).items():
            if not diffusers_key.endswith(".weight"):
                continue
            path, ldm = diffusers_key[: -len(".weight")], ldm_key[: -len(".weight")]
            assert diffusers_to_ldm(path, layout) == ldm, (name, path, ldm)
            if not path.startswith("class_embedding"):
                assert ldm_to_diffusers(ldm, layout) == path, (name, ldm, path)
            checked += 1
        print(name, checked)
    """
)


def test_unet_names_agree_with_comfyui(comfyui_dir):
    env = {"PYTHONPATH": f"{comfyui_dir}:{REPO}"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=dict(os.environ, **env),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    counts = dict(line.split() for line in done.stdout.splitlines())
    assert int(counts["sd15"]) > 300 and int(counts["sdxl"]) > 1000 and int(counts["sd15-demo"]) > 100
