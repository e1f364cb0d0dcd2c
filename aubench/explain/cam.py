"""CAM (Zhou et al., 2016) for models whose head is global average pooling + one linear layer.

With ``y_c = b_c + Σ_k W_ck · (1/HW) Σ_ij A_kij``, the class activation map is
``M_c(i, j) = Σ_k W_ck A_kij`` (no bias, no ReLU — the paper's ``cams/cam.py``), so that
``y_c = b_c + mean_ij M_c``. The head is checked numerically, not by its module types: the
logits of the pass must equal ``W · mean_ij(A) + b`` at the requested layer, which fails for any
layer but the one feeding the pool, for a head with a norm or hidden layer, and for ViTs that
classify the class token.
"""

from __future__ import annotations

import torch
from torch import nn

from aubench.explain.base import register
from aubench.explain.engine import ChannelWeighted, LayerPass

#: Relative tolerance of the GAP + linear head check.
HEAD_RTOL = 1e-3


@register("cam")
class CAM(ChannelWeighted):
    """``w_k = W_{t,k}``: the target class's row of the linear classifier.

    Args:
        classifier: module name of the linear classifier; default: ``model.get_classifier()``
            (timm), else the model's last ``nn.Linear``.
    """

    name = "cam"
    needs_gradients = False

    def __init__(self, classifier: str | None = None):
        self.classifier = classifier

    def linear_head(self, model: nn.Module) -> nn.Linear:
        """The classifier module; ``ValueError`` when it is missing or not ``nn.Linear``."""
        if self.classifier is not None:
            head = dict(model.named_modules()).get(self.classifier)
        elif hasattr(model, "get_classifier"):
            head = model.get_classifier()
        else:
            linear = [m for m in model.modules() if isinstance(m, nn.Linear)]
            head = linear[-1] if linear else None
        if not isinstance(head, nn.Linear):
            raise ValueError(
                f"cam needs a GAP + linear classifier head; {type(model).__name__}'s classifier "
                f"is {type(head).__name__} (name it with classifier=...; or use gradcam)"
            )
        return head

    def weights(self, p: LayerPass) -> torch.Tensor:
        head = self.linear_head(p.model)
        weight = head.weight.detach().float()
        bias = head.bias.detach().float() if head.bias is not None else 0.0
        pooled = p.activations.mean((2, 3))
        if weight.shape[1] != pooled.shape[1]:
            raise ValueError(
                f"cam: layer {p.layer!r} has {pooled.shape[1]} channels but the classifier takes "
                f"{weight.shape[1]}; use the layer feeding the global average pool"
            )
        deviation = (pooled @ weight.T + bias - p.logits).abs().max()
        if deviation > HEAD_RTOL * (1.0 + p.logits.abs().max()):
            raise ValueError(
                f"cam needs a GAP + linear head fed by layer {p.layer!r}, but the logits differ "
                f"from classifier(mean of the layer over positions) by {float(deviation):.3g}; "
                "use the layer feeding the pool, or gradcam"
            )
        return weight[p.targets]
