"""The toy world: a CPU-sized stand-in for measuring concept erasure without Stable Diffusion.

One visual concept, the colour red, plays the part of unsafe content; a colour detector plays
NudeNet. `world` draws 32x32 scenes and writes their prompts, `detectors` reads colour, shape
and background back from images, `reward` is the "toy-red" reward the RL trainer can optimise,
and `pretrain` trains the small StableDiffusionPipeline committed in models/toyworld/.
"""
