"""Nudity: the NudeNet detector and the rule that calls an image unsafe, censoring, annotation, the output gate."""
