"""Synthetic AU faces: render speed at 112×112 on one CPU core. Goal (issue): ≥ 1,000 faces/s.

Each round samples and renders 256 faces end to end (``render_sample``: parameters from
(seed, split, index), drawing, lighting), with OpenCV and torch limited to one thread.

Counterfactuals (issue #16): rendering a face with one of its AUs removed against rendering the
face itself, end to end from (seed, split, index) both, on the same 256 faces; and the dataset
path a counterfactual metric takes — every (face, AU it shows) pair of 128 faces with that AU
removed, one ``SyntheticFaces.counterfactuals`` batch per AU — against the same batches of the
factual faces (a face showing k AUs comes k times on both sides). Rounds alternate
face / counterfactual; the ratios use the fastest round of each side (the least disturbed on a
shared machine). Goal: ≤ 1.05.
"""

import time
from collections.abc import Callable

import cv2
import pytest
import torch

from aubench.data.synthetic import SyntheticFaces
from aubench.faces.synth import Intervention, SynthConfig, label_of, render_sample

GOAL, COUNTERFACTUAL_GOAL, DIFFICULTY_GOAL = 1000.0, 1.05, 1.3
FACES, SIZE, ROUNDS = 256, 112, 10


@pytest.fixture
def one_thread():
    cv_threads, torch_threads = cv2.getNumThreads(), torch.get_num_threads()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    yield
    cv2.setNumThreads(cv_threads)
    torch.set_num_threads(torch_threads)


def render_batch(config: SynthConfig | None = None) -> None:
    for index in range(FACES):
        render_sample(0, "train", index, SIZE, config)


def test_synth_faces_per_second(benchmark, one_thread):
    benchmark.group = "synth"
    benchmark.pedantic(render_batch, rounds=10, warmup_rounds=1)
    faces_per_s = FACES / benchmark.stats.stats.min
    benchmark.extra_info.update(faces_per_s=faces_per_s, goal=GOAL, size=SIZE, threads=1)
    print(f"\n{faces_per_s:.0f} faces/s at {SIZE}×{SIZE} on one core (goal ≥ {GOAL:.0f})")
    assert faces_per_s >= GOAL, f"synthetic faces render at {faces_per_s:.0f}/s (goal {GOAL:.0f}/s)"


@pytest.mark.parametrize("difficulty", ["moderate", "hard"])
def test_harder_faces_per_second(benchmark, one_thread, difficulty):
    """The difficulty's extras (occluders, blur, noise): time per face at each preset against
    easy's, alternating rounds (same faces). Goal: ≤ 1.3× easy's (the knobs add at most 30 %)."""
    benchmark.group = "synth-difficulty"
    config = SynthConfig(difficulty=difficulty)
    easy_s, hard_s = alternate_min(benchmark, render_batch, lambda: render_batch(config))
    faces_per_s, ratio = FACES / hard_s, hard_s / easy_s
    benchmark.extra_info.update(faces_per_s=faces_per_s, ratio=ratio, difficulty=difficulty)
    print(f"\n{difficulty}: {faces_per_s:.0f} faces/s at {SIZE}×{SIZE}, {ratio:.2f}× easy's time")
    assert ratio <= DIFFICULTY_GOAL


def alternate_min(benchmark, face: Callable[[], object], counterfactual: Callable[[], object]):
    """ROUNDS rounds of ``face`` then ``counterfactual`` (through ``benchmark.pedantic``, one
    warm-up); returns the fastest time (s) of each."""
    times: dict[str, list[float]] = {"face": [], "counterfactual": []}

    def round_pair() -> None:
        for side, fn in (("face", face), ("counterfactual", counterfactual)):
            start = time.perf_counter()
            fn()
            times[side].append(time.perf_counter() - start)

    benchmark.pedantic(round_pair, rounds=ROUNDS, warmup_rounds=1)
    return min(times["face"][1:]), min(times["counterfactual"][1:])


def test_counterfactual_costs_no_more_than_the_face(benchmark, one_thread):
    benchmark.group = "synth-counterfactual"
    class_aus = SyntheticFaces(1).config.class_aus
    # the first AU of each face's class (none for neutral faces: the identity)
    removals = [Intervention.remove(*class_aus[label_of(0, "train", i)][:1]) for i in range(FACES)]

    def counterfactuals() -> None:
        for index, removal in enumerate(removals):
            render_sample(0, "train", index, SIZE, None, removal)

    face_s, counterfactual_s = alternate_min(benchmark, render_batch, counterfactuals)
    ratio = counterfactual_s / face_s
    benchmark.extra_info.update(face_s=face_s, counterfactual_s=counterfactual_s, ratio=ratio)
    print(
        f"\none AU removed: {FACES} counterfactuals {counterfactual_s * 1e3:.0f} ms, "
        f"{FACES} faces {face_s * 1e3:.0f} ms: ratio {ratio:.3f} (goal ≤ {COUNTERFACTUAL_GOAL})"
    )
    assert ratio <= COUNTERFACTUAL_GOAL


def test_counterfactual_batches_per_au_cost_no_more_than_the_faces(benchmark, one_thread):
    benchmark.group = "synth-counterfactual"
    dataset = SyntheticFaces(FACES // 2, size=SIZE)
    labels = dataset.labels
    showing = {
        au: [i for i, label in enumerate(labels) if au in dataset.config.class_aus[label]]
        for au in sorted({au for aus in dataset.config.class_aus for au in aus})
    }
    pairs = sum(len(indices) for indices in showing.values())

    def batches(intervention: Callable[[int], Intervention]) -> Callable[[], None]:
        def run() -> None:
            for au, indices in showing.items():
                dataset.counterfactuals(indices, intervention(au))

        return run

    factual = batches(lambda au: Intervention())
    face_s, counterfactual_s = alternate_min(benchmark, factual, batches(Intervention.remove))
    ratio = counterfactual_s / face_s
    benchmark.extra_info.update(pairs=pairs, face_s=face_s, counterfactual_s=counterfactual_s)
    benchmark.extra_info["ratio"] = ratio
    print(
        f"\n{pairs} (face, AU) pairs in {len(showing)} batches, one per AU: counterfactuals "
        f"{counterfactual_s * 1e3:.0f} ms ({counterfactual_s / pairs * 1e6:.0f} µs each), faces "
        f"{face_s * 1e3:.0f} ms: ratio {ratio:.3f} (goal ≤ {COUNTERFACTUAL_GOAL})"
    )
    assert ratio <= COUNTERFACTUAL_GOAL
