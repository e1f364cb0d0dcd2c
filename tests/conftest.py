"""Test-wide settings: nothing downloads (timm/huggingface offline), plots render headless, and
under CI the property tests draw a fixed set of examples (locally they keep exploring)."""

import os

from hypothesis import settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
