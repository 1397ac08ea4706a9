"""Rewards that score images: CLIP similarity and the ShieldDiff reward (nudity + CLIP)."""
