"""Map producers behind one protocol: ``explainer(model, images, targets, layers)`` → maps.

- Native, from one forward (+ one backward) pass shared by all of them (:func:`explain`):
  ``attention``, ``cam`` and the gradient family ``gradcam``, ``gradcam++``, ``xgradcam``,
  ``layercam``, ``hirescam``, ``gradcam-elementwise``, ``eigencam``, ``eigengradcam``; the
  controls ``random``, ``centre``, ``generic-face``.
- pytorch-grad-cam adapter: ``scorecam``, ``ablationcam``, ``gc:eigencam``, ``gc:eigengradcam``,
  ``fullgrad``, ``kpca-cam``, ``fem``, ``shapleycam``, ``seg-eigencam`` (any other class via
  :class:`GradCamAdapter`).
- Built-in maps of the interpretable-by-design models (:mod:`aubench.explain.builtin`):
  ``wildcat``, ``prm``, ``tscam``, ``apvit`` (single pass), ``acol`` (its own forward),
  ``adl-quirk``.
- captum adapter: ``saliency``, ``input-x-gradient``, ``integrated-gradients``,
  ``guided-backprop``, ``deeplift``, ``occlusion``, ``smoothgrad``, ``layer-gradcam``,
  ``guided-gradcam``.

Maps are raw; :mod:`aubench.explain.postprocess` holds the named ReLU / resize / min-max steps.
"""

from aubench.explain import (
    attention,
    builtin,
    cam,
    captum_adapter,
    controls,
    eigen,
    gradcam_adapter,
    gradient,
)
from aubench.explain.attention import Attention
from aubench.explain.base import (
    DEFAULT_LAYERS,
    EXPLAINERS,
    INPUT,
    Explainer,
    evaluation_mode,
    get_explainer,
    register,
    resolve_targets,
)
from aubench.explain.builtin import (
    ACoLMap,
    ADLQuirkCAM,
    APViTMap,
    BuiltinMap,
    PRMMap,
    TSCAMMap,
    WildcatMap,
)
from aubench.explain.cam import CAM
from aubench.explain.captum_adapter import CAPTUM_METHODS, CaptumAdapter
from aubench.explain.controls import CentrePrior, GenericFace, RandomMap
from aubench.explain.eigen import EigenCAM, EigenGradCAM, first_component_maps
from aubench.explain.engine import (
    ChannelWeighted,
    Explained,
    LayerMethod,
    LayerPass,
    explain,
    explain_batch,
    layer_maps,
)
from aubench.explain.gradcam_adapter import GRADCAM_METHODS, GradCamAdapter
from aubench.explain.gradient import (
    GRADIENT_METHODS,
    GradCAM,
    GradCAMElementWise,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    XGradCAM,
)
from aubench.explain.postprocess import (
    MinMax,
    Postprocess,
    ReLU,
    Resize,
    default_postprocess,
    minmax,
    relu,
    resize,
)

#: Names of the control maps (baselines every comparison includes).
CONTROLS = tuple(name for name, make in EXPLAINERS.items() if getattr(make, "is_control", False))

__all__ = [
    "CAM",
    "CAPTUM_METHODS",
    "CONTROLS",
    "DEFAULT_LAYERS",
    "EXPLAINERS",
    "GRADCAM_METHODS",
    "GRADIENT_METHODS",
    "INPUT",
    "ACoLMap",
    "ADLQuirkCAM",
    "APViTMap",
    "Attention",
    "BuiltinMap",
    "CaptumAdapter",
    "CentrePrior",
    "ChannelWeighted",
    "EigenCAM",
    "EigenGradCAM",
    "Explained",
    "Explainer",
    "GenericFace",
    "GradCAM",
    "GradCAMElementWise",
    "GradCAMPlusPlus",
    "GradCamAdapter",
    "HiResCAM",
    "LayerCAM",
    "LayerMethod",
    "LayerPass",
    "MinMax",
    "PRMMap",
    "Postprocess",
    "RandomMap",
    "ReLU",
    "Resize",
    "TSCAMMap",
    "WildcatMap",
    "XGradCAM",
    "attention",
    "builtin",
    "cam",
    "captum_adapter",
    "controls",
    "default_postprocess",
    "eigen",
    "evaluation_mode",
    "explain",
    "explain_batch",
    "first_component_maps",
    "get_explainer",
    "gradcam_adapter",
    "gradient",
    "layer_maps",
    "minmax",
    "register",
    "relu",
    "resize",
    "resolve_targets",
]
