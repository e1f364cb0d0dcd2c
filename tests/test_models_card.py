"""Model cards: the fixed keys, YAML files and flags that override them, class names matched to
the canonical order by name, and errors that name the file, the key and the value."""

from __future__ import annotations

import re

import pytest

from aubench.faces.codebook import EXPRESSIONS
from aubench.models import CardError, ModelCard, canonical_class, load_card
from tests.user_models import USER_CLASSES

CARD = """\
input_size: 48
channels: 1
mean: [0.5]
std: [0.5]
classes: [angry, disgust, fear, happy, sad, surprise, neutral]
layers: [layers.conv3]
crop: as-is
output: probabilities
"""


def test_a_yaml_card_is_read_and_normalised(tmp_path):
    file = tmp_path / "card.yaml"
    file.write_text(CARD)
    card = load_card(file)
    assert card == ModelCard(
        input_size=(48, 48),
        channels=1,
        mean=(0.5,),
        std=(0.5,),
        classes=USER_CLASSES,
        layers=("layers.conv3",),
        crop="as-is",
        output="probabilities",
    )
    assert tuple(ModelCard.model_fields) == (
        "input_size",
        "channels",
        "mean",
        "std",
        "classes",
        "layers",
        "crop",
        "output",
    )


def test_flags_override_the_card_and_none_flags_are_not_applied(tmp_path):
    file = tmp_path / "card.yaml"
    file.write_text(CARD)
    card = load_card(file, input_size=[40, 56], layers="layers.conv1, layers.conv2", crop=None)
    assert card.input_size == (40, 56) and card.crop == "as-is"
    assert card.layers == ("layers.conv1", "layers.conv2")


def test_defaults_describe_an_aubench_timm_model():
    card = load_card()
    assert (card.input_size, card.channels, card.mean, card.std) == ((224, 224), 3, None, None)
    assert (card.classes, card.layers, card.crop, card.output) == (None, (), "align", "logits")
    assert card.output_map(8) == tuple(range(8))


def test_one_mean_and_std_value_broadcast_over_the_channels():
    card = load_card({"mean": 0.5, "std": [0.25]})
    assert card.mean == (0.5, 0.5, 0.5) and card.std == (0.25, 0.25, 0.25)


@pytest.mark.parametrize(
    ("name", "index"),
    [
        ("Angry", 4),
        ("anger", 4),
        ("happy", 1),
        ("HAPPINESS", 1),
        ("sad", 6),
        ("surprised", 2),
        ("fearful", 3),
        ("disgusted", 5),
        (" neutral ", 0),
        ("contempt", 7),
    ],
)
def test_class_names_and_synonyms_map_to_the_canonical_order(name, index):
    assert canonical_class(name) == index


def test_an_unknown_class_name_lists_the_accepted_ones():
    with pytest.raises(ValueError, match=r"unknown class name 'joyful'.*accepted: neutral"):
        canonical_class("joyful")


def test_output_map_reorders_the_model_classes_into_the_canonical_order():
    card = load_card({"classes": [*USER_CLASSES, "contempt"]})
    order = card.output_map(7)
    assert [USER_CLASSES[k] for k in order] == [
        "neutral",
        "happy",
        "surprise",
        "fear",
        "angry",
        "disgust",
        "sad",
    ]
    assert card.output_map(8)[7] == 7


def test_a_dataset_class_the_model_lacks_is_named():
    card = load_card({"classes": [name for name in USER_CLASSES if name != "neutral"]})
    with pytest.raises(ValueError, match="lack neutral, which the dataset has"):
        card.output_map(7)
    with pytest.raises(ValueError, match="lack neutral, contempt"):
        card.output_map(8)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"input_sise": 48}, r"key 'input_sise': unknown card key; did you mean input_size\?"),
        ({"classes": ["angry", "feer"]}, r"classes.*unknown class name 'feer'; did you mean fear"),
        ({"classes": ["angry", "anger"]}, r"'angry' and 'anger' are the same class"),
        ({"classes": []}, r"key 'classes': list the model's classes"),
        ({"channels": 2}, r"key 'channels': Input should be 1 or 3 \(got 2\)"),
        ({"mean": [0.5, 0.5], "std": [1, 1]}, r"key 'mean': expected 1 or 3 values"),
        ({"std": [0.0], "mean": [0.5]}, r"key 'std': every std must be > 0"),
        ({"mean": [0.5]}, r"give mean and std together"),
        ({"crop": "centre"}, r"key 'crop': Input should be 'align' or 'as-is'"),
        ({"output": "logit"}, r"key 'output': Input should be 'logits' or 'probabilities'"),
        ({"input_size": 0}, r"key 'input_size': sides must be ≥ 1 px"),
    ],
)
def test_a_bad_card_names_the_key_and_the_value(values, expected):
    with pytest.raises(CardError, match=expected):
        load_card(values)


def test_errors_name_the_file_or_the_flag(tmp_path):
    file = tmp_path / "card.yaml"
    file.write_text("channels: 1\nmean: [0.5]\nstd: [0.5]\nclasses: [angry, sadd]\n")
    with pytest.raises(CardError, match=re.escape(f"model card {file}: key 'classes'")):
        load_card(file)
    with pytest.raises(CardError, match="flag output: Input should be"):
        load_card(None, output="scores")
    with pytest.raises(CardError, match="flag layres: unknown card key; did you mean layers"):
        load_card(None, layres="layers.conv1")
    file.write_text("channels: [1\n")
    with pytest.raises(CardError, match=re.escape(f"model card {file}: not valid YAML")):
        load_card(file)
    with pytest.raises(FileNotFoundError, match=r"nowhere\.yaml"):
        load_card(tmp_path / "nowhere.yaml")


def test_the_canonical_order_is_the_faces_one():
    assert tuple(canonical_class(name) for name in EXPRESSIONS) == tuple(range(len(EXPRESSIONS)))
