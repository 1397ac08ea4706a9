"""ShieldDiff core: rewards, LoRA formats, model loading and training, free of ComfyUI.

Nothing heavy happens at import: models load when first used.

Layout (one subpackage per domain; tests/unit/<subpackage>/ mirrors it):

    images.py, files.py, prompts.py   leaves: image arrays, atomic writes, the one prompt-file reader
    nudity/       the NudeNet detector and nudity rule, censoring, annotation, the output gate
    rewards/      CLIP similarity and the ShieldDiff reward
    lora/         LoRA module names, file formats, merging a LoRA into diffusers weights
    diffusion/    loading checkpoints, the demo checkpoint, guided noise prediction, prompt encoding
    training/     what every trainer shares: config, job directory, training session, the epoch loop, run helpers
    rl/           ShieldDiff RL (DDPO-style sampling, PPO, rewards, the trainer)
    erase/        All-but-One erasure (objective, trainer) and Purify (DDIM inversion)
    jobs/         training jobs for the UI: request, queue, child process, summaries
    evaluation/   generate on fixed seeds, measure with a detector, compare results
    toyworld/     the toy world: scenes, its detectors and reward, pretraining its model
    cli/          `python -m trainer`: one module per sub-command

Import rules (enforced by tests/unit/test_core_is_comfyui_free.py, which reads the imports):

- nothing in trainer/ imports ComfyUI;
- lora/, nudity/ and diffusion/ import nothing above them: only the leaves (images, files, prompts);
- training/ never imports rl/, erase/ or jobs/ (methods build on training, not the reverse);
- jobs/ never imports a method (rl/, erase/): it runs them as `python -m trainer train`;
- evaluation/ never imports training/;
- no import cycles between subpackages.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
