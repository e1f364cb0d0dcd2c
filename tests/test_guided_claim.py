"""The issue's claim, tested end to end on CPU with the default small config (TrainConfig()):
a baseline and an AU-guided ResNet-18 trained on the synthetic faces, both in ≤ 10 minutes
together, both reach ≥ 90 % test accuracy, the guided one loses at most 1 point, and its
layer-4 attention is closer to the AU heatmaps (ATT-COS, the paper's macro average over the
non-neutral classes) by at least 0.15.

Test accuracy and ATT-COS are those of each run's best epoch, selected on the held-out
validation split. The claim was made on the easy faces, the default before the difficulty knobs;
on today's default (moderate) faces the baseline reaches ~90 % and guidance raises accuracy
instead (``reports/lambda``), so the test names ``difficulty=easy``.
"""

import time

import pytest

from aubench.train import TrainConfig, fit

BUDGET_S = 600.0
#: the default config's data (``TrainConfig().data``) on the easy faces
EASY = TrainConfig().data + ",difficulty=easy"


@pytest.mark.slow
def test_guided_training_moves_attention_to_the_aus_without_costing_accuracy(tmp_path):
    start = time.perf_counter()
    baseline = fit(
        TrainConfig(data=EASY), out=tmp_path / "baseline", progress=False, tensorboard=False
    )
    guided = fit(
        TrainConfig(data=EASY, guided=True),
        out=tmp_path / "guided",
        progress=False,
        tensorboard=False,
    )
    wall = time.perf_counter() - start
    b, g = baseline["best"], guided["best"]
    print(
        f"\nbaseline: test acc {b['test_acc']:.2f} %, ATT-COS {b['test_att_cos']:.3f} "
        f"(epoch {b['epoch']}, {baseline['wall_s']:.0f} s)"
        f"\nguided:   test acc {g['test_acc']:.2f} %, ATT-COS {g['test_att_cos']:.3f} "
        f"(epoch {g['epoch']}, {guided['wall_s']:.0f} s)\nwall {wall:.0f} s"
    )
    assert wall <= BUDGET_S, f"both runs took {wall:.0f} s (budget {BUDGET_S:.0f} s)"
    assert b["test_acc"] >= 90.0 and g["test_acc"] >= 90.0
    assert g["test_acc"] >= b["test_acc"] - 1.0
    assert g["test_att_cos"] >= b["test_att_cos"] + 0.15
