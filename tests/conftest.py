"""Test-wide settings: nothing downloads (timm/huggingface offline), plots render headless."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
