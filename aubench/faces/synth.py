"""Procedural faces whose expressions are made of action units (AUs), with exact landmarks.

Every face is drawn from its 68 iBUG landmarks, so the landmarks returned with an image are exact,
and every piece of expression evidence is drawn where the AU regions of
:mod:`aubench.faces.regions` (``default`` model) say it lies:

- **Geometry.** Each AU moves landmarks by a fixed displacement field ``MOTION[au]`` (68, 2) in
  units of the inter-ocular distance (IOD), scaled by the AU's intensity (brows up for AU1/2, down
  and together for AU4, lids, lip corners, jaw drop…).
- **Appearance.** Each AU with a FACS appearance change draws marks (wrinkle lines, shading or
  highlight blobs) placed relative to its region centres, in IOD units: forehead wrinkles for
  AU1/2, brow shadow for AU4, cheek bulge for AU6, darker lids for AU7/43, nasal wrinkles for AU9,
  smile, dimple and marionette lines for AU12/14/15, chin stipple for AU17, … AU5 whitens the
  sclera, AU23 darkens the lips, and teeth show wherever the lips part (AU10/16/25/26/27).

Nuisance factors — identity (face, eye, brow, nose, mouth geometry; skin, hair, iris and lip
colours), pose (in-plane rotation, scale, translation), lighting (a linear gain ramp) and background
(a colour gradient with random shapes) — never depend on the label: with the default
``shortcut=0`` the classes are separable only through AU evidence.

Randomness (no global state): streams are children of ``SeedSequence([seed, split_code, index])``
(split codes train=0, val=1, test=2). Child 0 draws every nuisance factor, child 1 the 20 AU
intensities (uniform in [0.6, 1] of full, one per AU of :data:`ALL_AUS`, drawn whatever the label).
Labels come in balanced blocks: block ``b = index // C`` holds a permutation of the C classes drawn
from child 2 of ``SeedSequence([seed, split_code, b])``. So (seed, split, index) fixes image,
landmarks and label on any machine, and rendering the same :class:`FaceParams` as another
expression changes only AU evidence. The easy faces have no pixel-noise draw; a harder
:class:`~aubench.faces.synth_difficulty.Difficulty` (``SynthConfig.difficulty``: subtler AU
intensities, noise, blur, occluders, wider pose and identity ranges, training label noise) draws
what it adds from child 3, the same way whatever its knobs, so the easy faces never change.

Counterfactuals: an :class:`Intervention` removes or scales chosen AUs of a face. It multiplies
the drawn intensities (a′ = factor·a) and renders the same :class:`FaceParams`; since every AU's
intensity is drawn whatever the label, from its own stream, and nothing else depends on the AUs,
no other draw changes, and the identity intervention gives the factual face bit for bit. A
counterfactual's landmarks are the ones it is drawn from, ``shape + Σ_au a′[au]·MOTION[au]·iod``
through the pose: a removed AU's displacement is absent from them, a scaled one is scaled, and
only the landmarks the AU moves (``MOTION[au] ≠ 0``) differ from the factual ones. Pixels change
only where the renderer draws something that depends on the AU: its marks, the contour edges at
its moved landmarks, the eye or teeth shapes those landmarks define, the marks of other AUs
anchored on them, and the lips' (AU23) or sclera's (AU5) colour.

Shortcut option: with probability ρ (``shortcut``, drawn from the nuisance stream) a square patch
of a class colour (:data:`CUE_COLOURS`) is drawn in a bottom corner of the background, outside the
face and every AU region. Its colour is the label's, except in the ``test`` split (or with
``shortcut_mode="decorrelated"``) where it is a uniformly random class's.

Contempt (label 7, only with ``num_classes=8``) uses the codebook's AUs when it has contempt and
EMFACS's AU12 + AU14 (drawn on both sides) otherwise, e.g. with the default ``belharbi2024-fixed``.

Frames: the unit frame is that of :data:`~aubench.faces.landmarks.MEAN_FACE` (x right, y down,
eye centres 0.4 apart). Pixels follow the landmark contract: (x, y) = (column, row), integer
coordinates are pixel centres. A unit-frame point p maps to ``c + size·scale·R(angle)·(p − o)``
with o = :data:`FACE_CENTRE`, c = ((size − 1)/2, (size − 1)/2) + shift·size.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal, NamedTuple

import cv2
import numpy as np

from aubench.faces.codebook import (
    ALL_AUS,
    EXPRESSIONS,
    Codebook,
    Expression,
    get_codebook,
    parse_expression,
)
from aubench.faces.landmarks import FLIP_PERMUTATION, MEAN_FACE, NUM_LANDMARKS
from aubench.faces.regions import DEFAULT_BLOBS
from aubench.faces.synth_difficulty import (
    Degradation,
    Difficulty,
    degrade,
    draw_degradation,
    draw_occluder,
    get_difficulty,
    scale_about_centre,
)

#: Split name → the code mixed into the seed.
SPLITS: dict[str, int] = {"train": 0, "val": 1, "test": 2}
#: Allowed image sides, inclusive.
MIN_SIZE, MAX_SIZE = 64, 224
#: AU intensity range (fraction of full) drawn per AU and image by the easy faces (the
#: ``intensity`` knob of :class:`~aubench.faces.synth_difficulty.Difficulty` sets it).
INTENSITY_RANGE = (0.6, 1.0)
#: Rotation centre of the face in the unit frame (between the eyes and the mouth).
FACE_CENTRE = np.array([0.5, 0.55])
#: Shortcut-cue colour of each class (RGB), in canonical label order.
CUE_COLOURS: np.ndarray = np.array(
    [
        (230, 30, 30),  # neutral: red
        (30, 200, 40),  # happiness: green
        (30, 70, 235),  # surprise: blue
        (240, 215, 20),  # fear: yellow
        (225, 35, 215),  # anger: magenta
        (20, 215, 225),  # disgust: cyan
        (245, 125, 10),  # sadness: orange
        (120, 40, 170),  # contempt: purple
    ],
    dtype=np.uint8,
)
#: Side of the shortcut patch and its margin to the image border, as fractions of the image side.
CUE_SIDE, CUE_MARGIN = 0.12, 0.03

_CONTEMPT_FALLBACK = get_codebook("emfacs").aus_of(Expression.CONTEMPT)
#: The class whose AUs :attr:`SynthConfig.one_sided` draws on one side (FACS codes contempt's
#: AU12 + AU14 as unilateral).
ONE_SIDED_CLASS = int(Expression.CONTEMPT)
_SHIFT = 4  # cv2 sub-pixel bits: drawing coordinates are fixed-point with 4 fractional bits
_ONE = 1 << _SHIFT
_AA = cv2.LINE_AA


# ---------------------------------------------------------------------------------------------
# configuration and parameters


@dataclass(frozen=True)
class SynthConfig:
    """What a synthetic dataset shows, beyond (seed, split, index).

    Attributes:
        num_classes: 7 (neutral … sadness) or 8 (+ contempt).
        codebook: expression → AU codebook (name, mapping, YAML path or :class:`Codebook`).
        shortcut: probability ρ ∈ [0, 1] of the class-coloured background cue.
        shortcut_mode: ``"auto"`` (decorrelated in the ``test`` split, label-coloured elsewhere),
            ``"correlated"`` or ``"decorrelated"`` (colour of a uniformly random class).
        difficulty: a preset name (``easy``, ``moderate``, ``hard``), knobs or a
            :class:`~aubench.faces.synth_difficulty.Difficulty` (resolved to one).
        one_sided: contempt (``num_classes=8``) shows its AUs (EMFACS: AU12 + AU14) on one side
            of the face, drawn per face, as FACS codes it (unilateral); other classes' AUs stay
            bilateral.
        class_aus: derived — the AU set of each class, contempt's fallback applied.
    """

    num_classes: int = 7
    codebook: str | Codebook | Mapping = "belharbi2024-fixed"
    shortcut: float = 0.0
    shortcut_mode: Literal["auto", "correlated", "decorrelated"] = "auto"
    difficulty: str | Difficulty | Mapping = "easy"
    one_sided: bool = False
    class_aus: tuple[tuple[int, ...], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if type(self.num_classes) is not int or self.num_classes not in (7, 8):
            raise ValueError(f"num_classes must be 7 or 8, got {self.num_classes!r}")
        if not (isinstance(self.shortcut, int | float) and 0.0 <= self.shortcut <= 1.0):
            raise ValueError(f"shortcut must be a probability in [0, 1], got {self.shortcut!r}")
        if self.shortcut_mode not in ("auto", "correlated", "decorrelated"):
            raise ValueError(
                f"shortcut_mode must be 'auto', 'correlated' or 'decorrelated', "
                f"got {self.shortcut_mode!r}"
            )
        object.__setattr__(self, "difficulty", get_difficulty(self.difficulty))
        book = get_codebook(self.codebook)
        class_aus = tuple(book.aus_of(c) for c in range(self.num_classes))
        if self.num_classes == 8 and not class_aus[Expression.CONTEMPT]:
            class_aus = (*class_aus[:7], _CONTEMPT_FALLBACK)
        seen: dict[frozenset[int], int] = {}
        for label, aus in enumerate(class_aus):
            other = seen.setdefault(frozenset(aus), label)
            if other != label:
                raise ValueError(
                    f"codebook {book.name!r} gives {EXPRESSIONS[other]} and {EXPRESSIONS[label]} "
                    f"the same AUs {sorted(aus)}: the classes would be indistinguishable"
                )
        object.__setattr__(self, "class_aus", class_aus)

    @property
    def codebook_mapping(self) -> dict[Expression, tuple[int, ...]]:
        """The AU set of every class as a codebook mapping (what the images show); pass it to
        :func:`aubench.faces.heatmaps.au_heatmaps` as ``codebook``."""
        return {Expression(c): aus for c, aus in enumerate(self.class_aus) if aus}

    def decorrelated(self, split: str) -> bool:
        """Whether the shortcut patch takes a random class's colour in ``split``."""
        return self.shortcut_mode == "decorrelated" or (
            self.shortcut_mode == "auto" and split == "test"
        )


@dataclass(frozen=True, eq=False)
class Identity:
    """Who the face is: neutral geometry and colours (RGB floats in 0..255).

    ``shape`` (68, 2) is the neutral face in the unit frame and ``iod`` its inter-ocular distance
    (unit frame); ``brow_width`` and ``iris_radius`` are in IOD units; ``forehead`` is the height
    of the skull arc above the jaw ends (unit frame); ``hair`` is False for a bald head.
    """

    shape: np.ndarray
    iod: float
    skin: np.ndarray
    hair_colour: np.ndarray
    brow_colour: np.ndarray
    lip: np.ndarray
    iris: np.ndarray
    sclera: np.ndarray
    teeth: np.ndarray
    brow_width: float
    iris_radius: float
    forehead: float
    hair: bool
    hair_volume: float


@dataclass(frozen=True, eq=False)
class Pose:
    """``angle``: in-plane rotation in degrees, clockwise on screen; ``scale``: pixels per
    unit-frame unit as a fraction of the image side; ``shift`` (2,): face centre minus image centre
    as fractions of the image side."""

    angle: float
    scale: float
    shift: np.ndarray


@dataclass(frozen=True, eq=False)
class Scene:
    """Background, light and the shortcut patch's corner.

    ``gradient`` (2, 2, 3) uint8: background colours at the four corners; ``clutter`` (K, 9) in
    [0, 1): kind, centre x, y, half-width, half-height, angle, RGB of each random shape (positions
    and sizes as fractions of the image side); ``light`` (3,): gain at the image centre, gain
    change across one image side, ramp direction (radians); ``cue_corner``: 0 bottom-left,
    1 bottom-right.
    """

    gradient: np.ndarray
    clutter: np.ndarray
    light: np.ndarray
    cue_corner: int


@dataclass(frozen=True, eq=False)
class FaceParams:
    """Everything one synthetic image is made of, except its size.

    ``au_intensity`` (len(ALL_AUS),) in the difficulty's ``intensity`` range (the easy faces':
    :data:`INTENSITY_RANGE`), indexed like :data:`ALL_AUS`;
    ``cue_class``: the class whose colour the shortcut patch has (None: no patch);
    ``class_aus``: label → AU numbers (from :class:`SynthConfig`); ``difficulty`` and
    ``degradation``: the knobs and this face's draws of them (the label it is given included;
    ``label`` is the class it shows); ``side``: 0 when every AU is drawn on both sides, else the
    half of the face (−1: x < 0.5 in the unit frame, the image-left half of an upright face;
    +1: the other) that shows the one-sided AUs of a contempt face
    (:attr:`SynthConfig.one_sided`, :data:`ONE_SIDED_CLASS`).
    """

    label: int
    identity: Identity
    pose: Pose
    scene: Scene
    au_intensity: np.ndarray
    cue_class: int | None
    class_aus: tuple[tuple[int, ...], ...]
    difficulty: Difficulty = field(default_factory=Difficulty)
    degradation: Degradation | None = None
    side: int = 0

    @property
    def given_label(self) -> int:
        """The label the face is given: :attr:`label`, unless training label noise changed it."""
        return self.label if self.degradation is None else self.degradation.label


class RenderedFace(NamedTuple):
    """``image`` uint8 (size, size, 3) RGB and its ``landmarks`` float32 (68, 2) in pixels."""

    image: np.ndarray
    landmarks: np.ndarray


class SynthSample(NamedTuple):
    """One dataset item: ``image`` uint8 (S, S, 3) RGB, ``landmarks`` float32 (68, 2), ``label``
    (the label it is given: its class, unless training label noise changed it), ``shortcut``
    (whether the shortcut patch was drawn) and ``au_intensity`` float32
    (len(ALL_AUS),): the intensity each AU was drawn at (0: absent), indexed like
    :data:`ALL_AUS` — the ground-truth AU evidence, after any :class:`Intervention`; ``side``
    the half of the face its one-sided AUs are on (:attr:`FaceParams.side`; 0: both);
    ``cue_corner`` the shortcut patch's corner (:func:`cue_box`), −1 when none was drawn."""

    image: np.ndarray
    landmarks: np.ndarray
    label: int
    shortcut: bool
    au_intensity: np.ndarray
    side: int = 0
    cue_corner: int = -1


class Intervention:
    """An AU counterfactual: which AUs of a face to weaken, each by a factor in [0, 1].

    Rendering with an intervention draws AU k at ``factor_k · intensity_k`` (factor 1 for the AUs
    it does not name; an AU the expression lacks stays absent whatever its factor): factor 0
    removes the AU's landmark displacement and appearance cues, factor s scales both (the
    displacement is linear in the intensity a′; a mark keeps its shape and takes the colour
    base·(1 + (tone − 1)·a′), fading into the skin or lips as a′ → 0). Nothing else of the face
    changes — identity, pose, lighting, background, clutter and shortcut patch come from the
    unchanged :class:`FaceParams`.

    Build one with ``Intervention({6: 0.0, 12: 0.5})``, :meth:`remove` or :meth:`scale`; factors of
    1 are dropped, so ``Intervention()``, ``Intervention.scale(12, 1.0)`` and ``remove()`` are the
    identity (the factual face). Instances are immutable, hashable and equal when their factors
    are; ``str`` is a stable key for ids and caches, :meth:`parse` its inverse: ``"factual"`` for
    the identity, else ``au<k>x<factor>`` per AU joined by ``+`` in ascending AU order, the factor
    in the shortest decimal that round-trips (``"au6x0+au12x0.5"``).
    """

    __slots__ = ("_factors", "_vector")
    _factors: tuple[tuple[int, float], ...]  # (AU, factor ≠ 1), ascending AU
    _vector: np.ndarray

    def __init__(self, factors: Mapping[int, float] | None = None) -> None:
        items = dict(factors or {})
        for au, factor in items.items():
            if isinstance(au, bool) or not isinstance(au, int | np.integer) or au not in ALL_AUS:
                raise ValueError(f"intervention on unknown AU {au!r}; drawable AUs are {ALL_AUS}")
            if isinstance(factor, bool) or not isinstance(factor, numbers.Real):
                raise ValueError(f"AU{au}'s factor must be a number in [0, 1], got {factor!r}")
            if not 0.0 <= factor <= 1.0:
                raise ValueError(f"AU{au}'s factor must lie in [0, 1], got {factor!r}")
        kept = sorted((int(au), float(f)) for au, f in items.items() if f != 1.0)
        vector = np.ones(len(ALL_AUS))
        for au, factor in kept:
            vector[ALL_AUS.index(au)] = factor
        vector.flags.writeable = False
        object.__setattr__(self, "_factors", tuple(kept))
        object.__setattr__(self, "_vector", vector)

    @classmethod
    def remove(cls, *aus: int) -> Intervention:
        """Remove ``aus`` (factor 0): their displacements and cues are not drawn."""
        return cls(dict.fromkeys(aus, 0.0))

    @classmethod
    def scale(cls, au: int, factor: float) -> Intervention:
        """Draw ``au`` at ``factor`` ∈ [0, 1] of its intensity (0: removed, 1: factual)."""
        return cls({au: factor})

    @classmethod
    def parse(cls, text: str) -> Intervention:
        """The intervention whose ``str`` is ``text``; ValueError naming a malformed part."""
        if text == "factual":
            return cls()
        factors: dict[int, float] = {}
        for part in text.split("+"):
            match = _INTERVENTION_PART.fullmatch(part)
            if match is None:
                raise ValueError(
                    f"malformed intervention {text!r} at {part!r}: expected 'factual' or "
                    "'au<k>x<factor>' parts joined by '+', e.g. 'au6x0+au12x0.5'"
                )
            factors[int(match[1])] = float(match[2])
        return cls(factors)

    @property
    def factors(self) -> dict[int, float]:
        """AU → factor of every AU it changes (a copy; AUs left at 1 are not listed)."""
        return dict(self._factors)

    @property
    def vector(self) -> np.ndarray:
        """Read-only float64 (len(ALL_AUS),) factor of every AU, indexed like :data:`ALL_AUS`."""
        return self._vector

    @property
    def is_identity(self) -> bool:
        """True when it changes nothing (renders the factual face)."""
        return not self._factors

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Intervention is immutable: cannot set {name!r}")

    def __reduce__(self) -> tuple:
        return Intervention, (dict(self._factors),)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Intervention) and self._factors == other._factors

    def __hash__(self) -> int:
        return hash(self._factors)

    def __str__(self) -> str:
        if not self._factors:
            return "factual"
        return "+".join(
            f"au{au}x{np.format_float_positional(f, trim='-')}" for au, f in self._factors
        )

    def __repr__(self) -> str:
        return f"Intervention({dict(self._factors)!r})"


_INTERVENTION_PART = re.compile(r"au(\d+)x(\d+(?:\.\d+)?)")


# ---------------------------------------------------------------------------------------------
# seeding and labels


def split_code(split: str) -> int:
    """The seed code of a split name (train=0, val=1, test=2); ValueError otherwise."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    return SPLITS[split]


def check_size(size: int) -> int:
    """``size`` if it is an int in [MIN_SIZE, MAX_SIZE], else ValueError naming it."""
    if isinstance(size, bool) or not isinstance(size, int | np.integer):
        raise ValueError(f"size must be an int in [{MIN_SIZE}, {MAX_SIZE}], got {size!r}")
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"size must be in [{MIN_SIZE}, {MAX_SIZE}] pixels, got {size}")
    return int(size)


def _stream(seed: int, split: str, index: int, child: int) -> np.random.Generator:
    """Generator of child ``child`` of ``SeedSequence([seed, split_code, index])``.

    Children: 0 nuisance factors, 1 AU intensities, 2 the label permutation of block ``index``,
    3 the difficulty's draws (occluder, noise, label noise), 4 the side of one-sided AUs.
    """
    for name, value in (("seed", seed), ("index", index)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
            raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    entropy = [int(seed), split_code(split), int(index)]
    return np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(child,)))


def label_of(seed: int, split: str, index: int, num_classes: int = 7) -> int:
    """The label of item ``index``: entry ``index % C`` of block ``index // C``'s permutation.

    Every block of C consecutive indices holds each class exactly once, in a random order.
    """
    block, slot = divmod(index, num_classes)
    return int(_stream(seed, split, block, 2).permutation(num_classes)[slot])


def given_label_of(seed: int, split: str, index: int, config: SynthConfig | None = None) -> int:
    """The label item ``index`` is given (:attr:`FaceParams.given_label`) without sampling the
    rest of the face: :func:`label_of`, unless ``config``'s training label noise changed it."""
    config = config or _DEFAULT_CONFIG
    label = label_of(seed, split, index, config.num_classes)
    if split != "train" or config.difficulty.label_noise == 0:
        return label
    rng = _stream(seed, split, index, 3)
    return draw_degradation(rng, config.difficulty, label, config.num_classes, True).label


# ---------------------------------------------------------------------------------------------
# sampling

_SKIN_TONES = np.array(
    [(255, 226, 200), (236, 192, 158), (205, 150, 112), (160, 108, 74), (112, 74, 52)], float
)
_HAIR_COLOURS = np.array(
    [(28, 22, 18), (62, 40, 25), (112, 74, 44), (196, 164, 104), (150, 68, 34), (168, 166, 160)],
    float,
)
_IRIS_COLOURS = np.array(
    [(88, 54, 30), (48, 30, 20), (116, 88, 48), (66, 106, 66), (66, 104, 156), (104, 114, 126)],
    float,
)
#: Per-channel colour jitter (±) of skin, hair and iris.
_COLOUR_JITTER = np.array([8.0, 10.0, 10.0])[:, None]


def _ranges(
    table: dict[str, tuple[float, float]],
) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    low, high = np.array(list(table.values()), dtype=float).T
    return tuple(table), low, high - low


#: Identity factors, drawn uniformly in (low, high): shape (unit-frame lengths or ratios), colour
#: positions along the palettes, and feature sizes.
_IDENTITY = _ranges(
    {
        "face_width": (0.9, 1.07),  # jaw x scale about the midline
        "jaw_length": (0.95, 1.05),  # jaw y scale below eye level
        "chin_width": (0.85, 1.1),  # extra x scale of the lower jaw (points 4-12)
        "eye_gap": (-0.02, 0.02),  # shift of each eye (and brow) away from the midline
        "eye_size": (0.85, 1.15),  # eye scale about its centre
        "eye_open": (0.8, 1.2),  # extra vertical eye scale
        "brow_raise": (-0.02, 0.02),  # brows up
        "brow_arch": (-0.01, 0.02),  # brow middle up
        "nose_length": (0.92, 1.06),  # nose y scale below the bridge top
        "nose_width": (0.85, 1.2),  # nostril x scale
        "mouth_width": (0.88, 1.12),  # mouth x scale
        "mouth_shift": (-0.015, 0.015),  # mouth down
        "upper_lip": (0.7, 1.3),  # upper lip thickness
        "lower_lip": (0.7, 1.3),  # lower lip thickness
        "skin_tone": (0, len(_SKIN_TONES) - 1),
        "hair_tone": (0, len(_HAIR_COLOURS) - 1),
        "iris_tone": (0, len(_IRIS_COLOURS) - 1),
        "brow_mix": (0.3, 0.7),  # brow colour: share of the (darkened) hair colour
        "lip_red": (0.8, 1.1),
        "sclera": (222, 242),
        "teeth": (215, 240),
        "bald": (0, 1),  # bald when above 0.85
        "hair_volume": (0.02, 0.08),
        "brow_width": (0.13, 0.2),  # IOD units
        "iris_radius": (0.1, 0.13),  # IOD units
        "forehead": (0.58, 0.66),
    }
)
#: Pose, light and shortcut draws.
_NUISANCE = _ranges(
    {
        "angle": (-15.0, 15.0),
        "scale": (0.5, 0.62),
        "shift_x": (-0.04, 0.04),
        "shift_y": (-0.04, 0.04),
        "gain": (0.82, 1.12),
        "slope": (0.0, 0.45),
        "direction": (0.0, 2 * math.pi),
        "cue_draw": (0.0, 1.0),  # patch drawn when below the shortcut probability
        "cue_corner": (0.0, 2.0),
        "cue_random": (0.0, 1.0),  # the decorrelated patch's class, as a fraction of C
    }
)
_N_CLUTTER = 6
_DEFAULT_CONFIG = SynthConfig()


def _uniform(rng: np.random.Generator, ranges: tuple) -> dict[str, float]:
    names, low, span = ranges
    return dict(zip(names, (low + span * rng.random(len(names))).tolist(), strict=True))


def _identity_shape(f: dict[str, float]) -> np.ndarray:
    """The neutral face (68, 2) of the shape factors ``f`` (see :data:`_IDENTITY`)."""
    u = MEAN_FACE.copy()
    x, y = u[:, 0], u[:, 1]
    x[:17] = 0.5 + (x[:17] - 0.5) * f["face_width"]
    y[1:16] = 0.25 + (y[1:16] - 0.25) * f["jaw_length"]
    x[4:13] = 0.5 + (x[4:13] - 0.5) * f["chin_width"]
    for eye, brow, out in ((slice(36, 42), slice(17, 22), -1), (slice(42, 48), slice(22, 27), 1)):
        centre = u[eye].mean(axis=0)
        u[eye] = centre + (u[eye] - centre) * (f["eye_size"], f["eye_size"] * f["eye_open"])
        x[eye] += out * f["eye_gap"]
        x[brow] += out * f["eye_gap"] * 0.8
    y[17:27] -= f["brow_raise"]
    y[[19, 20, 23, 24]] -= f["brow_arch"]
    y[27:36] = 0.27 + (y[27:36] - 0.27) * f["nose_length"]
    x[31:36] = 0.5 + (x[31:36] - 0.5) * f["nose_width"]
    x[48:68] = 0.5 + (x[48:68] - 0.5) * f["mouth_width"]
    y[48:68] += f["mouth_shift"] + (f["nose_length"] - 1) * 0.3
    seam = 0.5 * (y[60] + y[64])
    y[49:54] = seam + (y[49:54] - seam) * f["upper_lip"]
    y[55:60] = seam + (y[55:60] - seam) * f["lower_lip"]
    return u


def _palette(palette: np.ndarray, t: float, jitter: np.ndarray) -> np.ndarray:
    """The colour at position ``t`` ∈ [0, len − 1] along ``palette`` (linear), plus ``jitter``."""
    low = min(int(t), len(palette) - 2)
    colour = palette[low] + (palette[low + 1] - palette[low]) * (t - low)
    return np.clip(colour + jitter, 0, 255)


#: Identity factors that the ``identity`` knob stretches (shape, not colour).
_SHAPE_FACTORS = 14


def _sample_identity(rng: np.random.Generator, stretch: float = 1.0) -> Identity:
    f = _uniform(rng, _IDENTITY)
    if stretch != 1.0:
        names, low, span = (part[:_SHAPE_FACTORS] for part in _IDENTITY)
        values = np.array([f[name] for name in names])
        f.update(zip(names, scale_about_centre(values, low, span, stretch).tolist(), strict=True))
    jitter = (2 * rng.random((3, 3)) - 1) * _COLOUR_JITTER
    shape = _identity_shape(f)
    skin = _palette(_SKIN_TONES, f["skin_tone"], jitter[0])
    hair_colour = _palette(_HAIR_COLOURS, f["hair_tone"], jitter[1])
    brow_mix = f["brow_mix"]
    return Identity(
        shape=shape,
        iod=float(np.linalg.norm(shape[42:48].mean(0) - shape[36:42].mean(0))),
        skin=skin,
        hair_colour=hair_colour,
        brow_colour=brow_mix * np.minimum(hair_colour, skin * 0.5) + (1 - brow_mix) * skin * 0.3,
        lip=skin * (0.72, 0.48, 0.52) + f["lip_red"] * np.array((70.0, 12, 18)),
        iris=_palette(_IRIS_COLOURS, f["iris_tone"], jitter[2]),
        sclera=f["sclera"] - np.array((0.0, 4, 8)),
        teeth=f["teeth"] - np.array((0.0, 4, 20)),
        brow_width=f["brow_width"],
        iris_radius=f["iris_radius"],
        forehead=f["forehead"],
        hair=f["bald"] < 0.85,
        hair_volume=f["hair_volume"],
    )


def sample_params(
    seed: int, split: str, index: int, config: SynthConfig | None = None
) -> FaceParams:
    """The parameters of item ``index`` of ``split`` under ``seed`` (see the module docstring).

    Identity, pose, scene and shortcut come from one stream and AU intensities from another, both
    consumed identically whatever the label.
    """
    config = config or _DEFAULT_CONFIG
    difficulty = config.difficulty
    label = label_of(seed, split, index, config.num_classes)
    rng = _stream(seed, split, index, 0)
    identity = _sample_identity(rng, difficulty.identity)
    n = _uniform(rng, _NUISANCE)
    if difficulty.pose != 1.0:
        names, low, span = (part[:4] for part in _NUISANCE)  # angle, scale, shift_x, shift_y
        values = scale_about_centre(np.array([n[k] for k in names]), low, span, difficulty.pose)
        n.update(zip(names, values.tolist(), strict=True))
    scene = Scene(
        gradient=rng.integers(0, 256, (2, 2, 3), dtype=np.uint8),
        clutter=rng.random((_N_CLUTTER, 9)),
        light=np.array((n["gain"], n["slope"], n["direction"])),
        cue_corner=int(n["cue_corner"]),
    )
    cue_class = None
    if n["cue_draw"] < config.shortcut:
        random_class = int(n["cue_random"] * config.num_classes)
        cue_class = random_class if config.decorrelated(split) else label
    intensity = _stream(seed, split, index, 1).uniform(*difficulty.intensity, len(ALL_AUS))
    pose = Pose(n["angle"], n["scale"], np.array((n["shift_x"], n["shift_y"])))
    degradation = None
    if not difficulty.is_easy:
        degradation = draw_degradation(
            _stream(seed, split, index, 3), difficulty, label, config.num_classes, split == "train"
        )
    side = 0
    if config.one_sided and label == ONE_SIDED_CLASS:
        side = -1 if _stream(seed, split, index, 4).random() < 0.5 else 1
    return FaceParams(
        label, identity, pose, scene, intensity, cue_class, config.class_aus, difficulty,
        degradation, side,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# AU geometry: displacement fields


def _motion_table() -> np.ndarray:
    """(len(ALL_AUS), 68, 2) landmark displacements at full intensity, in IOD units.

    Written for the image-left half and the midline as ``(points, outward dx, dy)`` (outward: away
    from the midline, y down); image-right points get the mirrored move.
    """
    moves: dict[int, tuple[tuple[tuple[int, ...], float, float], ...]] = {
        1: (((20, 21), 0.0, -0.3), ((19,), 0.0, -0.08)),
        2: (((17, 18), 0.0, -0.3), ((19,), 0.0, -0.16)),
        4: (((19, 20, 21), -0.06, 0.15), ((17, 18), 0.0, 0.09)),
        5: (((37, 38), 0.0, -0.12),),
        7: (((40, 41), 0.0, -0.06), ((37, 38), 0.0, 0.035)),
        9: (((31, 32), 0.03, -0.07), ((33,), 0.0, -0.06)),
        10: (((49, 50, 61), 0.0, -0.12), ((51, 62), 0.0, -0.1)),
        12: (((48, 60), 0.12, -0.16), ((49, 59), 0.04, -0.07), ((61, 67), 0.03, -0.05)),
        14: (((48, 60), -0.05, -0.03),),
        15: (((48, 60), 0.0, 0.15), ((49, 59, 61, 67), 0.0, 0.05)),
        16: (((57, 66), 0.0, 0.13), ((58, 67), 0.0, 0.11), ((59,), 0.0, 0.04)),
        17: (((57, 58, 66, 67), 0.0, -0.05), ((59,), 0.0, -0.02), ((7, 8), 0.0, -0.05)),
        20: (((48, 60), 0.14, 0.03), ((49, 59, 61, 67), 0.05, 0.0)),
        23: (((49, 50, 51), 0.0, 0.04), ((57, 58, 59), 0.0, -0.04), ((48, 60), -0.03, 0.0)),
        24: (((61, 62), 0.0, 0.03), ((66, 67), 0.0, -0.03), ((50, 51), 0.0, 0.03)),
        25: (((61, 62), 0.0, -0.03), ((66, 67), 0.0, 0.1), ((57, 58), 0.0, 0.05)),
        26: (
            ((57, 58, 66, 67), 0.0, 0.16),
            ((59,), 0.0, 0.1),
            ((7, 8), 0.0, 0.14),
            ((6,), 0.0, 0.08),
        ),
        27: (((57, 58, 66, 67), 0.0, 0.16), ((59,), 0.0, 0.12), ((6, 7, 8), 0.0, 0.12)),
        43: (((37, 38), 0.0, 0.11), ((40, 41), 0.0, -0.01)),
    }
    side = np.sign(np.round(MEAN_FACE[:, 0] - 0.5, 6))
    table = np.zeros((len(ALL_AUS), NUM_LANDMARKS, 2))
    for au, entries in moves.items():
        for points, outward, dy in entries:
            for i in points:
                for j in {i, FLIP_PERMUTATION[i]}:
                    table[ALL_AUS.index(au), j] = (outward * side[j], dy)
    return table


#: Landmark displacement of each AU at full intensity (len(ALL_AUS), 68, 2), IOD units, y down.
MOTION: np.ndarray = _motion_table()
#: The half of the face each landmark lies in (68,): −1 (x < 0.5 in the unit frame), 0 (the
#: midline), +1.
_LANDMARK_SIDE = np.sign(np.round(MEAN_FACE[:, 0] - 0.5, 6)).astype(int)
_MOTION_FLAT = MOTION.reshape(len(ALL_AUS), -1)


# ---------------------------------------------------------------------------------------------
# AU appearance: marks placed around the AU's default region centres


class _Marks(NamedTuple):
    """An AU's marks around each of its region centres, in IOD units with x pointing outward.

    ``lines``: polylines (k, 2) of width ``width`` and colour ``tone``·base at full intensity;
    ``blobs``: filled ellipses ``(centre, semi-axes, tone)``; ``base``: the colour the tones scale.
    """

    lines: tuple[np.ndarray, ...] = ()
    blobs: tuple[tuple[tuple[float, float], tuple[float, float], float], ...] = ()
    tone: float = 0.6
    width: float = 0.06
    base: Literal["skin", "lip"] = "skin"


def _arc(x0: float, x1: float, y: float, bow: float, n: int = 5) -> np.ndarray:
    """n points from (x0, y) to (x1, y) bowed by ``bow`` in the middle (negative: upwards)."""
    t = np.linspace(-1.0, 1.0, n)
    return np.stack([x0 + (x1 - x0) * (t + 1) / 2, y + bow * (1 - t**2)], axis=1)


def _polyline(*points: tuple[float, float]) -> np.ndarray:
    return np.array(points, dtype=float)


_SPOT = (0.025, 0.025)
#: Marks drawn on the skin, before the brows, eyes, nose and mouth.
_SKIN_MARKS: dict[int, _Marks] = {
    1: _Marks(lines=(_arc(-0.22, 0.12, -0.08, -0.03), _arc(-0.22, 0.12, 0.06, -0.03))),
    2: _Marks(lines=(_arc(-0.16, 0.16, -0.06, -0.04), _arc(-0.14, 0.14, 0.07, -0.04))),
    4: _Marks(
        lines=(_polyline((-0.2, -0.14), (-0.16, 0.04)),),
        blobs=(((0.0, 0.02), (0.2, 0.08), 0.72),),
        tone=0.55,
    ),
    6: _Marks(
        lines=(_arc(-0.17, 0.17, -0.12, 0.05),),
        blobs=(((0.0, 0.04), (0.2, 0.12), 1.16),),
        tone=0.62,
    ),
    7: _Marks(blobs=(((0.0, 0.04), (0.25, 0.13), 0.72),)),
    9: _Marks(
        lines=tuple(_polyline((-0.07, y + 0.03), (0.08, y - 0.03)) for y in (-0.1, 0.0, 0.1)),
        tone=0.55,
    ),
    10: _Marks(lines=(_arc(-0.08, 0.12, -0.16, -0.03),)),
    12: _Marks(lines=(_polyline((0.09, -0.16), (0.14, -0.04), (0.14, 0.06), (0.1, 0.14)),)),
    14: _Marks(
        lines=(_polyline((0.0, -0.08), (0.02, 0.08)),),
        blobs=(((0.02, 0.0), (0.025, 0.03), 0.45),),
        tone=0.5,
    ),
    15: _Marks(
        lines=(_polyline((0.02, 0.04), (0.06, 0.12), (0.08, 0.22)),),
        blobs=(((0.0, 0.0), (0.07, 0.05), 0.72),),
        tone=0.58,
    ),
    16: _Marks(lines=(_arc(-0.14, 0.1, 0.0, 0.03),), tone=0.62),
    17: _Marks(
        lines=(_arc(-0.12, 0.1, -0.09, 0.04),),
        blobs=tuple((c, _SPOT, 0.6) for c in ((-0.06, 0.0), (0.05, 0.03), (-0.01, 0.08))),
    ),
    20: _Marks(lines=(_arc(-0.1, 0.12, -0.05, 0.01), _arc(-0.1, 0.12, 0.05, -0.01))),
    24: _Marks(lines=(_arc(-0.1, 0.1, -0.13, -0.02), _arc(-0.1, 0.1, 0.13, 0.02)), tone=0.6),
    26: _Marks(blobs=(((0.0, 0.04), (0.15, 0.08), 0.84),)),
    27: _Marks(blobs=(((0.0, 0.0), (0.18, 0.11), 0.82),)),
    43: _Marks(blobs=(((0.0, 0.02), (0.24, 0.1), 0.78),)),
}
#: Marks drawn over the lips, after the mouth.
_LIP_MARKS: dict[int, _Marks] = {
    23: _Marks(
        lines=tuple(_polyline((x, -0.07), (x, 0.07)) for x in (-0.07, 0.05)),
        tone=0.55,
        width=0.04,
        base="lip",
    ),
    24: _Marks(lines=(_polyline((-0.16, 0.0), (0.14, 0.0)),), tone=0.25, width=0.08, base="lip"),
}


class _PlacedMarks(NamedTuple):
    """:class:`_Marks` compiled against the AU's region centres ``weights @ face + offset·IOD``.

    ``flip`` (n, 1, 2) turns outward x into image x per centre; ``points`` (P, 2) holds every line's
    points, line j being ``points[spans[j][0]:spans[j][1]]``; blob arrays are (B, 2) and (B,).
    """

    au_index: int
    weights: np.ndarray
    offset: np.ndarray
    flip: np.ndarray
    points: np.ndarray
    spans: tuple[tuple[int, int], ...]
    blob_centres: np.ndarray
    blob_axes: np.ndarray
    blob_tones: tuple[float, ...]
    tone: float
    width: float
    base: str


def _place(au: int, marks: _Marks) -> _PlacedMarks:
    blobs = [b for b in DEFAULT_BLOBS if b.au == au]
    weights = np.zeros((len(blobs), NUM_LANDMARKS))
    for row, blob in enumerate(blobs):
        weights[row, list(blob.points)] = 1.0 / len(blob.points)
    side = np.sign(weights @ MEAN_FACE[:, 0] - 0.5)
    ends = np.cumsum([0] + [len(line) for line in marks.lines])
    return _PlacedMarks(
        au_index=ALL_AUS.index(au),
        weights=weights,
        offset=np.array([b.offset for b in blobs]),
        flip=np.stack([side, np.ones_like(side)], axis=1)[:, None, :],
        points=np.concatenate([*marks.lines, np.zeros((0, 2))]),
        spans=tuple(zip(ends[:-1].tolist(), ends[1:].tolist(), strict=True)),
        blob_centres=np.array([b[0] for b in marks.blobs]).reshape(-1, 2),
        blob_axes=np.array([b[1] for b in marks.blobs]).reshape(-1, 2),
        blob_tones=tuple(b[2] for b in marks.blobs),
        tone=marks.tone,
        width=marks.width,
        base=marks.base,
    )


_PLACED_SKIN = tuple(_place(au, m) for au, m in _SKIN_MARKS.items())
_PLACED_LIP = tuple(_place(au, m) for au, m in _LIP_MARKS.items())


# ---------------------------------------------------------------------------------------------
# rendering


def _pose_transform(pose: Pose, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(linear (2, 2), offset (2,))`` with pixels = unit_points @ linear.T + offset, i.e.
    p ↦ c + size·scale·R(angle)·(p − FACE_CENTRE), c = (size − 1)/2 + shift·size."""
    theta = math.radians(pose.angle)
    rotation = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    linear = pose.scale * size * rotation
    return linear, (size - 1) / 2 + pose.shift * size - linear @ FACE_CENTRE


class _Painter:
    """Draws on ``image`` through the pose transform, anti-aliased, in cv2 fixed point.

    ``fixed`` maps unit-frame points to int32 pixel coordinates ×16; ``fill`` and ``lines`` take
    those (so the 68 landmarks are transformed once and sliced), ``ellipses`` takes unit-frame
    centres and semi-axes.
    """

    def __init__(self, image: np.ndarray, pose: Pose) -> None:
        size = image.shape[0]
        self.image = image
        self.angle = pose.angle
        self.ppu = pose.scale * size  # pixels per unit-frame unit
        self.linear, self.offset = _pose_transform(pose, size)

    def to_pixels(self, points: np.ndarray) -> np.ndarray:
        """Unit-frame points (..., 2) → pixel coordinates (..., 2), float."""
        return points @ self.linear.T + self.offset

    def fixed(self, points: np.ndarray) -> np.ndarray:
        """Unit-frame points (..., 2) → int32 fixed-point pixel coordinates (..., 2)."""
        return np.rint(self.to_pixels(points) * _ONE).astype(np.int32)

    def thickness(self, width: float) -> int:
        """A line width in unit-frame units as whole pixels (at least 1)."""
        return max(1, round(width * self.ppu))

    def fill(self, polygons: list[np.ndarray], colour: np.ndarray) -> None:
        cv2.fillPoly(self.image, polygons, colour.tolist(), _AA, _SHIFT)

    def lines(
        self, polylines: list[np.ndarray], colour: np.ndarray, width: float, closed: bool = False
    ) -> None:
        cv2.polylines(
            self.image, polylines, closed, colour.tolist(), self.thickness(width), _AA, _SHIFT
        )

    def ellipses(self, centres: np.ndarray, axes: np.ndarray, colours: list[np.ndarray]) -> None:
        """Filled ellipses aligned with the face: unit-frame centres and semi-axes (k, 2)."""
        fixed_centres = self.fixed(centres).tolist()
        fixed_axes = np.rint(np.maximum(axes, 0) * (self.ppu * _ONE)).astype(np.int32).tolist()
        for centre, ax, colour in zip(fixed_centres, fixed_axes, colours, strict=True):
            cv2.ellipse(
                self.image, centre, ax, self.angle, 0, 360, colour.tolist(), -1, _AA, _SHIFT
            )


def _tone(base: np.ndarray, tone: float, intensity: float) -> np.ndarray:
    """``base`` scaled by 1 + (tone − 1)·intensity (tone > 0, intensity ≤ 1), capped at 255."""
    return np.minimum(base * (1.0 + (tone - 1.0) * intensity), 255.0)


@lru_cache(maxsize=64)
def _au_mask(aus: tuple[int, ...]) -> np.ndarray:
    return np.isin(ALL_AUS, aus)


def _intensities(params: FaceParams, expression: object) -> np.ndarray:
    """(len(ALL_AUS),) intensity of every AU for ``expression`` (label, name, or AU → intensity)."""
    if isinstance(expression, Mapping):
        unknown = sorted(set(expression) - set(ALL_AUS))
        if unknown:
            raise ValueError(f"unknown AUs {unknown}; drawable AUs are {list(ALL_AUS)}")
        out = np.array([float(expression.get(au, 0.0)) for au in ALL_AUS])
        if not ((out >= 0) & (out <= 1)).all():
            raise ValueError(f"AU intensities must lie in [0, 1], got {dict(expression)}")
        return out
    label = params.label if expression is None else int(parse_expression(expression))
    if label >= len(params.class_aus):
        raise ValueError(
            f"expression {EXPRESSIONS[label]} is not one of the {len(params.class_aus)} classes"
        )
    return np.where(_au_mask(params.class_aus[label]), params.au_intensity, 0.0)


def rendered_intensity(
    params: FaceParams,
    expression: Expression | int | str | Mapping[int, float] | None = None,
    intervention: Intervention | None = None,
) -> np.ndarray:
    """float64 (len(ALL_AUS),) intensity at which :func:`render` draws each AU (0: absent),
    indexed like :data:`ALL_AUS`: the expression's intensities (see :func:`render`) times the
    intervention's :attr:`~Intervention.vector`."""
    intensity = _intensities(params, expression)
    if intervention is None:
        return intensity
    if not isinstance(intervention, Intervention):
        raise TypeError(
            f"intervention must be an Intervention or None, got {type(intervention).__name__}"
        )
    return intensity * intervention.vector


def _unit_face(identity: Identity, intensity: np.ndarray, side: int = 0) -> np.ndarray:
    """Unit-frame landmarks (68, 2): ``shape + Σ_au intensity[au]·MOTION[au]·iod``, each AU's
    motion kept on the ``side`` half of the face only when ``side`` is not 0 (a one-sided face:
    every AU it shows is its class's, all drawn on that side)."""
    if side == 0:
        motion = intensity @ _MOTION_FLAT
    else:
        motion = intensity @ (MOTION * (side == _LANDMARK_SIDE)[None, :, None]).reshape(
            len(ALL_AUS), -1
        )
    return identity.shape + motion.reshape(NUM_LANDMARKS, 2) * identity.iod


def face_landmarks(
    params: FaceParams,
    size: int,
    expression: Expression | int | str | Mapping[int, float] | None = None,
    intervention: Intervention | None = None,
) -> np.ndarray:
    """The landmarks float32 (68, 2) that :func:`render` returns, without drawing anything."""
    size = check_size(size)
    linear, offset = _pose_transform(params.pose, size)
    a = rendered_intensity(params, expression, intervention)
    face = _unit_face(params.identity, a, _side(params, expression))
    return (face @ linear.T + offset).astype(np.float32)


def render(
    params: FaceParams,
    size: int,
    expression: Expression | int | str | Mapping[int, float] | None = None,
    intervention: Intervention | None = None,
) -> RenderedFace:
    """Draw the face of ``params`` at ``size``×``size`` pixels.

    ``expression`` selects the AU evidence: None → the params' label, an expression (id, name or
    :class:`Expression`) → its AU set with the params' intensities, or a mapping AU → intensity in
    [0, 1] (0 = absent). ``intervention`` then scales those intensities
    (:func:`rendered_intensity`). Everything else (identity, pose, scene, shortcut patch) stays
    fixed. The landmarks are :func:`face_landmarks`; every feature is drawn from them.
    """
    a = rendered_intensity(params, expression, intervention)
    return _render(params, check_size(size), a, _side(params, expression))


def _side(params: FaceParams, expression: object) -> int:
    """The params' one-sided half when drawn as their own class, else 0 (both sides)."""
    return params.side if expression is None else 0


def _render(params: FaceParams, size: int, a: np.ndarray, side: int = 0) -> RenderedFace:
    """:func:`render` with the AU intensities ``a`` (len(ALL_AUS),) given, drawn on one ``side``
    of the face only when it is not 0."""
    ident, scene = params.identity, params.scene
    face = _unit_face(ident, a, side)
    image = cv2.resize(scene.gradient, (size, size), interpolation=cv2.INTER_LINEAR)
    _draw_clutter(image, scene.clutter)
    paint = _Painter(image, params.pose)
    fixed = paint.fixed(face)
    _draw_head(paint, face, ident)
    lip = _tone(ident.lip, 0.7, a[ALL_AUS.index(23)])
    _draw_marks(paint, face, ident, _PLACED_SKIN, a, lip, side)
    _draw_brows(paint, face, ident)
    _draw_eyes(paint, face, fixed, ident, a[ALL_AUS.index(5)])
    _draw_nose(paint, face, fixed, ident)
    _draw_mouth(paint, face, fixed, ident, lip)
    _draw_marks(paint, face, ident, _PLACED_LIP, a, lip, side)
    worse = params.degradation
    iod = ident.iod * paint.ppu
    if worse is not None and worse.occluder is not None:  # anchored on the neutral face
        anchors = paint.to_pixels(ident.shape)
        draw_occluder(
            image, worse.occluder, worse.shape, anchors, iod, ident.skin, ident.hair_colour
        )
    if params.cue_class is not None:
        x0, y0, x1, y1 = cue_box(size, scene.cue_corner)
        image[y0:y1, x0:x1] = CUE_COLOURS[params.cue_class]
    _apply_light(image, scene.light)
    if worse is not None:
        degrade(image, params.difficulty, worse.noise_seed, iod)
    return RenderedFace(image, paint.to_pixels(face).astype(np.float32))


def render_sample(
    seed: int,
    split: str,
    index: int,
    size: int = 112,
    config: SynthConfig | None = None,
    intervention: Intervention | None = None,
) -> SynthSample:
    """Sample and render item ``index`` (its counterfactual under ``intervention``, if given):
    the one-call path of datasets and exports."""
    return render_as_sample(sample_params(seed, split, index, config), size, intervention)


def render_as_sample(
    params: FaceParams, size: int, intervention: Intervention | None = None
) -> SynthSample:
    """Render ``params`` with its own label (under ``intervention``, if given) as a sample."""
    intensity = rendered_intensity(params, None, intervention)
    image, landmarks = _render(params, check_size(size), intensity, params.side)
    return SynthSample(
        image,
        landmarks,
        params.given_label,
        params.cue_class is not None,
        intensity.astype(np.float32),
        params.side,
        -1 if params.cue_class is None else params.scene.cue_corner,
    )


def cue_box(size: int, corner: int) -> tuple[int, int, int, int]:
    """Pixel box (x0, y0, x1, y1), end-exclusive, of the shortcut patch: a square of side
    CUE_SIDE·size, CUE_MARGIN·size from the bottom and the left (corner 0) or right (1) border."""
    side, margin = round(CUE_SIDE * size), round(CUE_MARGIN * size)
    x0 = margin if corner == 0 else size - margin - side
    y0 = size - margin - side
    return x0, y0, x0 + side, y0 + side


_BOX = np.array([(-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0)])


def _draw_clutter(image: np.ndarray, clutter: np.ndarray) -> None:
    """Random ellipses (kind < 0.5), rotated rectangles (< 0.75) and thick lines (the rest)."""
    size = image.shape[0]
    centres = clutter[:, 1:3] * size
    axes = (0.03 + 0.2 * clutter[:, 3:5]) * size
    angles = 180.0 * clutter[:, 5]
    cos, sin = np.cos(np.radians(angles))[:, None], np.sin(np.radians(angles))[:, None]
    corners = _BOX * axes[:, None, :]  # (K, 4, 2) before rotation
    boxes = centres[:, None, :] + np.stack(
        [
            corners[..., 0] * cos - corners[..., 1] * sin,
            corners[..., 0] * sin + corners[..., 1] * cos,
        ],
        axis=-1,
    )
    ends = centres + axes[:, :1] * np.concatenate([cos, sin], axis=1)
    points = np.rint(np.concatenate([centres, axes, ends], axis=1) * _ONE).astype(np.int32)
    boxes = np.rint(boxes * _ONE).astype(np.int32)
    thickness = np.maximum(1, np.rint(0.02 * size * (1 + clutter[:, 4]))).astype(int).tolist()
    colours = (255.0 * clutter[:, 6:9]).tolist()
    for i, (kind, angle) in enumerate(zip(clutter[:, 0].tolist(), angles.tolist(), strict=True)):
        centre, ax, end = points[i].reshape(3, 2).tolist()
        if kind < 0.5:
            cv2.ellipse(image, centre, ax, angle, 0, 360, colours[i], -1, _AA, _SHIFT)
        elif kind < 0.75:
            cv2.fillPoly(image, [boxes[i]], colours[i], _AA, _SHIFT)
        else:
            cv2.line(image, centre, end, colours[i], thickness[i], _AA, _SHIFT)


_ARC = np.linspace(0.0, math.pi, 13)
_ARC_UNIT = np.stack([np.cos(_ARC), -np.sin(_ARC)], axis=1)  # upper half circle, right to left
_HAIRLINE_UNIT = np.stack([np.cos(_ARC), -(np.sin(_ARC) ** 0.25)], axis=1)  # flat-topped
_NECK = np.array([(0.05, -0.1), (-0.05, -0.1), (-0.05, 0.65), (0.05, 0.65)])
_EAR_OFFSET = np.array([(-0.02, -0.06), (0.02, -0.06)])


def _draw_head(paint: _Painter, face: np.ndarray, ident: Identity) -> None:
    """Neck, ears, hair behind the head, the head and the hair cap.

    The head is the jaw (points 0–16) closed by the skull: the upper half-ellipse over the jaw
    ends of height ``ident.forehead``. The hairline's top lies 0.12 below the skull's, well above
    the brows' AU regions.
    """
    skin = ident.skin
    centre = (face[0] + face[16]) / 2
    half = float(np.linalg.norm(face[16] - face[0])) / 2
    neck = face[[5, 11, 11, 5]] + _NECK
    ears = face[[1, 15]] + _EAR_OFFSET
    paint.fill([paint.fixed(neck)], skin * 0.88)
    paint.ellipses(ears, np.array([(0.05, 0.1), (0.05, 0.1)]), [skin * 0.9, skin * 0.9])
    skull = centre + _ARC_UNIT * (half, ident.forehead)
    if ident.hair:
        v = ident.hair_volume
        outer = centre + _ARC_UNIT * (half + v, ident.forehead + v)
        sideburns = face[[16, 0]] + np.array([(v, 0.1), (-v, 0.1)])
        hair = paint.fixed(np.concatenate([outer, sideburns]))
        paint.fill([hair], ident.hair_colour)
    paint.fill([paint.fixed(np.concatenate([face[:17], skull[1:-1]]))], skin)
    if ident.hair:
        hairline = centre + _HAIRLINE_UNIT * (half - 0.04, ident.forehead - 0.12)
        paint.fill([paint.fixed(np.concatenate([skull, hairline[::-1]]))], ident.hair_colour)


def _draw_marks(
    paint: _Painter,
    face: np.ndarray,
    ident: Identity,
    placed: tuple[_PlacedMarks, ...],
    intensity: np.ndarray,
    lip: np.ndarray,
    side: int = 0,
) -> None:
    """Draw the marks of every AU with a non-zero intensity at each of its region centres (on
    the ``side`` half of the face only, unless it is 0)."""
    iod = ident.iod
    for m in placed:
        a = intensity[m.au_index]
        if a <= 0:
            continue
        if side != 0:
            m = _one_side(m, side)
        base = ident.skin if m.base == "skin" else lip
        centres = (m.weights @ face + m.offset * iod)[:, None, :]  # (n, 1, 2)
        if m.spans:
            points = paint.fixed(centres + m.points * m.flip * iod)  # (n, P, 2)
            polylines = [side[i:j] for side in points for i, j in m.spans]
            paint.lines(polylines, _tone(base, m.tone, a), m.width * iod)
        if m.blob_tones:
            blob_centres = (centres + m.blob_centres * m.flip * iod).reshape(-1, 2)
            axes = np.concatenate([m.blob_axes * iod] * len(m.weights))
            colours = [_tone(base, t, a) for t in m.blob_tones] * len(m.weights)
            paint.ellipses(blob_centres, axes, colours)


def _one_side(m: _PlacedMarks, side: int) -> _PlacedMarks:
    """``m`` with only its region centres on ``side`` (midline centres kept)."""
    keep = (m.flip[:, 0, 0] == side) | (m.flip[:, 0, 0] == 0)
    return m._replace(weights=m.weights[keep], offset=m.offset[keep], flip=m.flip[keep])


_BROW_PROFILE = np.array([0.55, 0.85, 1.0, 1.0, 0.9])  # half-thickness, outer → inner end


def _draw_brows(paint: _Painter, face: np.ndarray, ident: Identity) -> None:
    """Each brow: a band around its 5 landmarks, thickest at the inner end."""
    half = np.zeros((2, 5, 2))
    half[0, :, 1] = half[1, :, 1] = 0.5 * ident.brow_width * ident.iod
    half[0, :, 1] *= _BROW_PROFILE
    half[1, :, 1] *= _BROW_PROFILE[::-1]
    brows = face[17:27].reshape(2, 5, 2)
    polygons = paint.fixed(np.concatenate([brows - half, (brows + half)[:, ::-1]], axis=1))
    paint.fill(list(polygons), ident.brow_colour)


_PUPIL = np.array((16.0, 14, 14))


def _draw_eyes(
    paint: _Painter, face: np.ndarray, fixed: np.ndarray, ident: Identity, raise_lid: float
) -> None:
    """Sclera (whiter with AU5), iris and pupil cut by the lids, lid lines and lid creases.

    The iris is centred on the mean of the eye's six landmarks; its vertical semi-axis is capped
    by half the lid opening, so closing lids hide it.
    """
    iod = ident.iod
    eyes = [fixed[36:42], fixed[42:48]]
    paint.fill(eyes, ident.sclera + (252.0 - ident.sclera) * raise_lid)
    pair = face[36:48].reshape(2, 6, 2)
    opening = 0.5 * (pair[:, [4, 5], 1].mean(1) - pair[:, [1, 2], 1].mean(1))  # (2,)
    radius = ident.iris_radius * iod
    open_eyes = opening > 0.01 * iod
    if open_eyes.any():
        centres = pair.mean(axis=1)[open_eyes]
        caps = opening[open_eyes]
        axes = [(radius, min(radius, c)) for c in caps] + [
            (0.45 * radius, min(0.45 * radius, c)) for c in caps
        ]
        colours = [ident.iris] * len(caps) + [_PUPIL] * len(caps)
        paint.ellipses(np.concatenate([centres, centres]), np.array(axes), colours)
    dark = ident.skin * 0.3
    paint.lines(eyes, dark, 0.025 * iod, closed=True)
    paint.lines([fixed[36:40], fixed[42:46]], dark, 0.055 * iod)
    crease = paint.fixed(pair[:, :4] - (0.0, 0.1 * iod))
    paint.lines(list(crease), ident.skin * 0.75, 0.025 * iod)


def _draw_nose(paint: _Painter, face: np.ndarray, fixed: np.ndarray, ident: Identity) -> None:
    """Bridge shading, the alar curve and two nostrils."""
    iod = ident.iod
    skin = ident.skin
    bridge = face[27:31] + np.array((0.03 * iod, 0.0))
    paint.lines([paint.fixed(bridge)], skin * 0.86, 0.05 * iod)
    paint.lines([fixed[31:36]], skin * 0.6, 0.03 * iod)
    nostrils = 0.5 * (face[[31, 34]] + face[[32, 35]]) - (0.0, 0.01 * iod)
    axes = np.array([(0.05, 0.028), (0.05, 0.028)]) * iod
    paint.ellipses(nostrils, axes, [skin * 0.35, skin * 0.35])


_MOUTH_INSIDE = np.array((58.0, 18, 24))


def _draw_mouth(
    paint: _Painter, face: np.ndarray, fixed: np.ndarray, ident: Identity, lip: np.ndarray
) -> None:
    """Lips, the opening between the inner lips, and teeth where the lips part.

    Teeth show where an inner-lip gap exceeds 0.08 IOD: the upper teeth fill up to 30% of the gap
    below the upper lip, the lower teeth up to 25% above the lower lip.
    """
    iod = ident.iod
    paint.fill([fixed[48:60]], lip)
    paint.fill([fixed[60:68]], _MOUTH_INSIDE)
    upper, lower = face[[60, 61, 62, 63, 64]], face[[60, 67, 66, 65, 64]]
    gap = lower - upper
    height = np.hypot(gap[:, 0], gap[:, 1])[:, None]
    shown = np.clip((height - 0.08 * iod) / np.maximum(height, 1e-9), 0.0, 1.0)
    if shown.max() > 0:
        upper_teeth = np.concatenate([upper, (upper + np.minimum(shown, 0.3) * gap)[::-1]])
        lower_teeth = np.concatenate([lower, (lower - np.minimum(shown, 0.25) * gap)[::-1]])
        paint.fill(list(paint.fixed(np.stack([upper_teeth, lower_teeth]))), ident.teeth)
    paint.lines([fixed[60:68]], lip * 0.6, 0.025 * iod, closed=True)


def _apply_light(image: np.ndarray, light: np.ndarray) -> None:
    """Multiply by the gain ramp g(x, y) = gain + slope·((x − c)cos φ + (y − c)sin φ)/size in
    place (saturating), with c the image centre and φ the ramp direction."""
    size = image.shape[0]
    gain, slope, direction = light.tolist()
    ramp = (np.arange(size, dtype=np.float32) - (size - 1) / 2) * np.float32(slope / size)
    across = np.repeat(ramp * math.cos(direction) + np.float32(gain), 3)  # (size·3,) per channel
    g = np.add.outer(ramp * math.sin(direction), across)  # (size, size·3) = gain per value
    rows = image.reshape(size, size * 3)
    cv2.multiply(rows, g, dst=rows, dtype=cv2.CV_8U)
