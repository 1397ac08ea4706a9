"""Helpers the tests share: the real ComfyUI server, tiny models, the A1111 stand-in, prerequisites."""
