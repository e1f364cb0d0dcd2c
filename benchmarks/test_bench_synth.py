"""Synthetic AU faces: render speed at 112×112 on one CPU core. Goal (issue): ≥ 1,000 faces/s.

Each round samples and renders 256 faces end to end (``render_sample``: parameters from
(seed, split, index), drawing, lighting), with OpenCV and torch limited to one thread.
"""

import cv2
import pytest
import torch

from aubench.faces.synth import render_sample

GOAL = 1000.0
FACES, SIZE = 256, 112


@pytest.fixture
def one_thread():
    cv_threads, torch_threads = cv2.getNumThreads(), torch.get_num_threads()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    yield
    cv2.setNumThreads(cv_threads)
    torch.set_num_threads(torch_threads)


def render_batch() -> None:
    for index in range(FACES):
        render_sample(0, "train", index, SIZE)


def test_synth_faces_per_second(benchmark, one_thread):
    benchmark.group = "synth"
    benchmark.pedantic(render_batch, rounds=10, warmup_rounds=1)
    faces_per_s = FACES / benchmark.stats.stats.min
    benchmark.extra_info.update(faces_per_s=faces_per_s, goal=GOAL, size=SIZE, threads=1)
    print(f"\n{faces_per_s:.0f} faces/s at {SIZE}×{SIZE} on one core (goal ≥ {GOAL:.0f})")
    assert faces_per_s >= GOAL, f"synthetic faces render at {faces_per_s:.0f}/s (goal {GOAL:.0f}/s)"
