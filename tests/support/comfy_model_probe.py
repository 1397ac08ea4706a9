"""Run inside ComfyUI's folder: load a checkpoint as ComfyUI does and write what its models hold.

Usage: python comfy_model_probe.py CHECKPOINT OUT PROMPT -> OUT.json (model class, prediction type,
latent scale factor, a float16 digest of every UNet tensor under its diffusers name and of every
text-encoder tensor) and OUT.safetensors (the prompt's conditioning and pooled output, a latent
and its decoding), all computed in float32.
"""

import hashlib
import json
import sys

ckpt, out, prompt = sys.argv[1:4]
sys.argv = [sys.argv[0], "--cpu", "--fp32-text-enc", "--fp32-vae"]
sys.path.insert(0, ".")
import comfy.options  # noqa: E402

comfy.options.enable_args_parsing()
import comfy.sd  # noqa: E402
import comfy.utils  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(ckpt)


def digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().to(torch.float16).contiguous().numpy().tobytes()).hexdigest()


unet_sd = model.model.diffusion_model.state_dict()
to_ldm = comfy.utils.unet_to_diffusers(model.model.model_config.unet_config)
hashes = {"unet." + d: digest(unet_sd[ldm]) for d, ldm in to_ldm.items() if ldm in unet_sd}
for k, v in clip.cond_stage_model.state_dict().items():
    hashes[k] = digest(v)
out_cond = clip.encode_from_tokens(clip.tokenize(prompt), return_pooled=True, return_dict=True)
latent = torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(0))
tensors = {
    "cond": out_cond["cond"].float(),
    "pooled": out_cond["pooled_output"].float(),
    "latent": latent,
    "decoded": vae.decode(latent).float().contiguous(),
}
save_file(tensors, out + ".safetensors")
facts = {
    "family": type(model.model).__name__,
    "model_type": model.model.model_type.name,
    "scale_factor": model.model.latent_format.scale_factor,
    "hashes": hashes,
}
with open(out + ".json", "w") as f:
    json.dump(facts, f)
