"""How hard the synthetic faces are: knobs beyond the AU evidence, named presets, and the drawing
of what they add (occluders, blur, pixel noise) for :mod:`aubench.faces.synth`.

Each knob, and what it does to the AU evidence:

- ``intensity`` (low, high): the range each AU's intensity is drawn from, as a fraction of full
  (default 0.6–1). Lower values mean subtler expressions: smaller landmark displacements and
  fainter marks (a mark's colour fades into the skin as its intensity falls), so classes differ
  by less.
- ``noise``: σ of Gaussian pixel noise in grey levels (0–255), independent per pixel and channel
  (a window of one bank of normal values, placed per face), added last; it masks faint marks
  (wrinkles, shading) but not geometry.
- ``blur``: σ of a Gaussian blur in inter-ocular distances (IOD; 0.05 ≈ 0.7 px at 64 px);
  it erases thin lines (AU1/2 forehead wrinkles, AU9 nasal wrinkles, AU17 stipple) first.
- ``occluders``: the probability that a face gets one occluder, a hand over one side of the
  mouth and chin (hiding lip-corner and chin AUs: 12, 14, 15, 17, 20, 23, 24 on that side), glasses
  (frames around the eyes, tinted lenses half of the time: AU5, 6, 7, 43 partly hidden) or a hair
  fringe over the forehead, down to or over the brows (AU1, 2, 4). The AU heatmaps still mark the
  hidden regions (the AUs are there; the pixels no longer show them).
- ``pose``: scales the pose ranges about their centres (in-plane rotation ±15°·pose, scale
  0.56 ± 0.06·pose, shift ±0.04·pose of the side); larger poses move AU regions off the usual
  place and partly out of the image.
- ``identity``: scales the identity shape ranges about their centres (face, eye, brow, nose and
  mouth geometry; colours keep their palettes): neutral faces then differ as much as some AUs do
  (a high brow looks like AU1+2, thick lips like AU23's absence).
- ``label_noise``: the probability that a *training* face's label is replaced by a uniformly
  random other class (the face still shows its true class's AUs; ``val`` and ``test`` are clean).

Presets (:data:`DIFFICULTIES`): ``easy`` is the faces as they were before the knobs (every knob
at its neutral value; bit for bit the same images), ``moderate`` (:data:`DEFAULT_DIFFICULTY` of
data specs and ``aubench synth``) and ``hard`` add every knob,
calibrated on the default small config's baseline (``moderate``: 90.0 % test accuracy, in the
80–92 % band of a real dataset such as RAF-DB; ``hard``: 51.7 %). The
draws they need come from a stream of their own (child 3 of the face's seed), consumed the same
way whatever the knobs, so an easy face never changes and a face keeps its occluder and noise in
every counterfactual.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

#: The AU intensity range of the easy faces (fraction of full).
EASY_INTENSITY = (0.6, 1.0)
#: Side of the square bank of normal values the pixel noise is cut from, and its seed.
NOISE_BANK, NOISE_SEED = 512, 20261206
#: Occluder kinds, in the order their draw picks them.
OCCLUDERS = ("hand", "glasses", "fringe")
_SHIFT = 4
_ONE = 1 << _SHIFT
_AA = cv2.LINE_AA


def _check(name: str, value: object, top: float, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= top:
        raise ValueError(f"difficulty {name} must be {what}, got {value!r}")


@dataclass(frozen=True)
class Difficulty:
    """The knobs of the module docstring; the defaults are the easy faces."""

    intensity: tuple[float, float] = EASY_INTENSITY
    noise: float = 0.0
    blur: float = 0.0
    occluders: float = 0.0
    pose: float = 1.0
    identity: float = 1.0
    label_noise: float = 0.0

    def __post_init__(self) -> None:
        low, high = (float(v) for v in self.intensity)
        if not 0.0 < low <= high <= 1.0:
            raise ValueError(
                f"difficulty intensity must be (low, high) with 0 < low ≤ high ≤ 1, "
                f"got {self.intensity!r}"
            )
        object.__setattr__(self, "intensity", (low, high))
        for name, top in (("noise", 255.0), ("blur", 1.0), ("pose", 3.0), ("identity", 3.0)):
            _check(name, getattr(self, name), top, f"a number in [0, {top:g}]")
        for name in ("occluders", "label_noise"):
            _check(name, getattr(self, name), 1.0, "a probability in [0, 1]")

    @property
    def is_easy(self) -> bool:
        """Whether every knob is at the easy faces' value (images unchanged)."""
        return self == DIFFICULTIES["easy"]

    def describe(self) -> dict:
        """The knobs as a JSON-ready dict."""
        out = dataclasses.asdict(self)
        out["intensity"] = list(self.intensity)
        return out


#: Named difficulties (module doc), with the test accuracy the default small config's baseline
#: reaches on them (ResNet-10-T, 64 px, 3 epochs, 3,000 faces, seed 0, one run on a 2-core CPU):
#: easy 99.6 %, moderate 90.0 %, hard 51.7 %.
DIFFICULTIES: dict[str, Difficulty] = {
    "easy": Difficulty(),
    "moderate": Difficulty(
        intensity=(0.5, 1.0), noise=4.0, blur=0.02, occluders=0.15, pose=1.1, identity=1.1,
        label_noise=0.05,
    ),
    "hard": Difficulty(
        intensity=(0.35, 0.85), noise=8.0, blur=0.03, occluders=0.25, pose=1.3, identity=1.3,
        label_noise=0.05,
    ),
}  # fmt: skip
#: The preset a data spec (``synthetic:``) and ``aubench synth`` use when none is named: the one
#: calibrated to a real dataset's accuracy band. ``SyntheticFaces`` itself defaults to the
#: knob-free ``easy`` faces, the renderer's base.
DEFAULT_DIFFICULTY = "moderate"
KNOBS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Difficulty))


def get_difficulty(spec: str | Difficulty | Mapping | None = None, **overrides) -> Difficulty:
    """A :class:`Difficulty` from a preset name (default ``easy``), an instance, or a mapping of
    knobs (``{"preset": "moderate", "noise": 4}`` or bare knobs over ``easy``); ``overrides``
    replace knobs of the result. Unknown names and knobs are errors naming the choices."""
    if isinstance(spec, Difficulty):
        base, knobs = spec, {}
    elif spec is None or isinstance(spec, str):
        name = spec or "easy"
        if name not in DIFFICULTIES:
            known = ", ".join(DIFFICULTIES)
            raise ValueError(f"unknown difficulty {name!r}; expected one of {known}")
        base, knobs = DIFFICULTIES[name], {}
    elif isinstance(spec, Mapping):
        knobs = dict(spec)
        base = get_difficulty(knobs.pop("preset", None))
    else:
        raise TypeError(f"difficulty must be a name, a Difficulty or a mapping, got {spec!r}")
    knobs.update(overrides)
    unknown = sorted(set(knobs) - set(KNOBS))
    if unknown:
        raise ValueError(f"unknown difficulty knobs {unknown}; knobs are {', '.join(KNOBS)}")
    if "intensity" in knobs and not isinstance(knobs["intensity"], tuple):
        knobs["intensity"] = tuple(knobs["intensity"])
    return dataclasses.replace(base, **knobs) if knobs else base


@dataclass(frozen=True, eq=False)
class Degradation:
    """What a face's difficulty adds to it, drawn once per face (child 3 of its seed).

    ``occluder``: an index into :data:`OCCLUDERS` or None; ``shape`` (3,) in [0, 1): the
    occluder's side, size and look; ``noise_seed``: the seed of its pixel noise; ``label``: the
    label the face is given (its true label unless label noise changed it).
    """

    occluder: int | None
    shape: np.ndarray
    noise_seed: int
    label: int


def draw_degradation(
    rng: np.random.Generator, difficulty: Difficulty, label: int, num_classes: int, train: bool
) -> Degradation:
    """The per-face draws of ``difficulty`` from ``rng`` (always 7 uniforms and one integer, in
    the same order, whatever the knobs)."""
    u = rng.random(7)
    noise_seed = int(rng.integers(0, 2**63 - 1))
    occluder = int(u[1] * len(OCCLUDERS)) if u[0] < difficulty.occluders else None
    given = label
    if train and u[5] < difficulty.label_noise:
        given = (label + 1 + int(u[6] * (num_classes - 1))) % num_classes
    return Degradation(occluder, u[2:5], noise_seed, given)


def draw_occluder(
    image: np.ndarray,
    kind: int,
    shape: np.ndarray,
    points: np.ndarray,
    iod: float,
    skin: np.ndarray,
    hair: np.ndarray,
) -> None:
    """Draw occluder ``kind`` on ``image`` (uint8 (S, S, 3), in place) over the face whose
    neutral landmarks are ``points`` (68, 2) pixels, ``iod`` pixels apart; ``shape`` (3,) from
    :class:`Degradation`; ``skin`` and ``hair`` RGB of the face (the hand's and fringe's tone)."""
    name = OCCLUDERS[kind]
    side, size, look = (float(v) for v in shape)
    if name == "hand":
        corner = points[48] if side < 0.5 else points[54]
        inward = np.sign(points[51, 0] - corner[0]) or 1.0
        centre = corner + iod * np.array((-0.15 * inward, 0.55))
        palm = iod * np.array((0.55, 0.45)) * (0.9 + 0.3 * size)
        tone = np.clip(skin * (0.9 + 0.15 * look), 0, 255)
        fingers = []
        for k in range(4):  # fingers over the mouth corner, pointing up and inward
            base = centre + iod * np.array(((-0.3 + 0.2 * k) * inward, -0.2))
            fingers.append((base, base + iod * np.array((0.25 * inward, -0.6 - 0.05 * k))))
        for colour, grow in ((tone * 0.65, 0.04 * iod), (tone, 0.0)):  # outline, then fill
            _ellipse(image, centre, palm + grow, 0.0, colour)
            for base, tip in fingers:
                _line(image, base, tip, colour, 0.17 * iod + 2 * grow)
    elif name == "glasses":
        frame = np.full(3, 20.0 + 60.0 * look)
        eyes = [points[36:42].mean(0), points[42:48].mean(0)]
        axes = iod * np.array((0.33, 0.22)) * (0.9 + 0.3 * size)
        if side < 0.5:  # tinted lenses
            overlay = image.copy()
            for eye in eyes:
                _ellipse(overlay, eye, axes, 0.0, frame)
            cv2.addWeighted(overlay, 0.45, image, 0.55, 0.0, dst=image)
        for eye in eyes:
            _ellipse(image, eye, axes, 0.0, frame, thickness=max(1, round(0.07 * iod)))
        _line(image, eyes[0] + (axes[0], 0), eyes[1] - (axes[0], 0), frame, 0.06 * iod)
    else:  # fringe: hair from above the forehead down to the brows (or over them)
        brows = points[17:27]
        bottom = brows[:, 1].mean() - iod * (0.25 - 0.35 * size)
        x = np.linspace(points[17, 0] - 0.1 * iod, points[26, 0] + 0.1 * iod, 13)
        strands = bottom + iod * 0.12 * (np.arange(13) % 2) * (0.5 + look)
        top = bottom - 1.2 * iod
        polygon = np.concatenate([np.stack([x, strands], 1), [(x[-1], top), (x[0], top)]])
        cv2.fillPoly(image, [np.rint(polygon * _ONE).astype(np.int32)], hair.tolist(), _AA, _SHIFT)


def degrade(image: np.ndarray, difficulty: Difficulty, noise_seed: int, iod: float) -> None:
    """Blur (σ = ``difficulty.blur``·``iod`` pixels), then add the face's pixel noise, in place
    on uint8 (S, S, 3) ``image``; nothing when both knobs are 0.

    The noise is ``difficulty.noise`` times a window of :func:`noise_bank` (standard normal values
    drawn once), placed by ``noise_seed``: drawing 3·S² normals per face cost 0.4 ms at 112 px,
    half the rendering; a window costs a slice."""
    if difficulty.blur > 0:
        cv2.GaussianBlur(image, (0, 0), difficulty.blur * iod, dst=image)
    if difficulty.noise > 0:
        height, width = image.shape[:2]
        bank = noise_bank()
        y = noise_seed % (len(bank) - height + 1)
        x = (noise_seed // len(bank)) % (len(bank) - width + 1)
        window = bank[y : y + height, x : x + width]
        noisy = cv2.scaleAdd(window, float(difficulty.noise), image.astype(np.float32))
        image[...] = np.clip(np.rint(noisy, out=noisy), 0, 255, out=noisy).astype(np.uint8)


@lru_cache(maxsize=1)
def noise_bank() -> np.ndarray:
    """float32 (:data:`NOISE_BANK`, :data:`NOISE_BANK`, 3) standard normal values, drawn once
    from a fixed seed: the source of every face's pixel noise (read-only)."""
    bank = np.random.default_rng(NOISE_SEED).standard_normal((NOISE_BANK, NOISE_BANK, 3))
    bank = bank.astype(np.float32)
    bank.flags.writeable = False
    return bank


def _ellipse(image, centre, axes, angle, colour, thickness: int = -1) -> None:
    c = np.rint(np.asarray(centre) * _ONE).astype(np.int32).tolist()
    a = np.rint(np.maximum(axes, 1.0) * _ONE).astype(np.int32).tolist()
    cv2.ellipse(image, c, a, angle, 0, 360, np.asarray(colour).tolist(), thickness, _AA, _SHIFT)


def _line(image, start, end, colour, width: float) -> None:
    p = np.rint(np.array([start, end]) * _ONE).astype(np.int32).tolist()
    thickness = max(1, round(width))
    cv2.line(image, p[0], p[1], np.asarray(colour).tolist(), thickness, _AA, _SHIFT)


def scale_about_centre(values: np.ndarray, low: np.ndarray, span: np.ndarray, factor: float):
    """Uniform draws in (low, low + span) stretched by ``factor`` about the range's centre
    (returned unchanged, bit for bit, when ``factor`` is 1)."""
    if factor == 1.0:
        return values
    centre = low + span / 2
    return centre + (values - centre) * factor


__all__ = [
    "DIFFICULTIES",
    "EASY_INTENSITY",
    "KNOBS",
    "OCCLUDERS",
    "Degradation",
    "Difficulty",
    "degrade",
    "draw_degradation",
    "draw_occluder",
    "get_difficulty",
    "noise_bank",
    "scale_about_centre",
]
