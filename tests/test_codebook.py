import pytest
import torch

from aubench.faces.codebook import (
    ALL_AUS,
    AU_NAMES,
    EXPRESSIONS,
    Expression,
    get_codebook,
    list_codebooks,
    parse_expression,
)


def test_canonical_expression_order():
    assert EXPRESSIONS == (
        "neutral", "happiness", "surprise", "fear", "anger", "disgust", "sadness", "contempt",
    )  # fmt: skip
    assert parse_expression("Fear") is Expression.FEAR
    assert parse_expression(5) is Expression.DISGUST


def test_paper_codebook_is_exactly_the_reference_code():
    book = get_codebook("belharbi2024")
    assert book.aus_of("happiness") == (6, 12, 25)
    assert book.aus_of("surprise") == (1, 2, 5, 26, 27)
    assert book.aus_of("fear") == (1, 2, 4, 5, 20, 25, 26, 27)
    assert book.aus_of("anger") == (4, 5, 7, 10, 17, 23, 24, 25, 26)
    assert book.aus_of("disgust") == (9, 5, 16, 17, 25, 26)  # the upper *lid* raiser quirk
    assert book.aus_of("sadness") == (1, 4, 6, 15, 17)
    assert book.aus_of("neutral") == ()
    assert book.aus_of("contempt") == ()


def test_fixed_codebook_differs_only_in_disgust():
    paper, fixed = get_codebook("belharbi2024"), get_codebook("belharbi2024-fixed")
    assert fixed.aus_of("disgust") == (9, 10, 16, 17, 25, 26)
    for e in Expression:
        if e is not Expression.DISGUST:
            assert paper.aus_of(e) == fixed.aus_of(e)


def test_emfacs_and_generic():
    emfacs = get_codebook("emfacs")
    assert emfacs.aus_of("contempt") == (12, 14)
    assert emfacs.aus_of("happiness") == (6, 12)
    generic = get_codebook("generic")
    assert all(generic.aus_of(e) == ALL_AUS for e in Expression)
    assert set(list_codebooks()) == {"belharbi2024", "belharbi2024-fixed", "emfacs", "generic"}


def test_every_builtin_codebook_uses_only_known_aus_and_distinct_sets():
    for name in list_codebooks():
        book = get_codebook(name)
        assert set(book.aus) <= set(AU_NAMES)
        if name != "generic":
            sets = [frozenset(book.aus_of(e)) for e in Expression if book.aus_of(e)]
            assert len(sets) == len(set(sets)), f"{name}: two expressions share an AU set"


def test_matrix_indexes_labels_into_au_masks():
    book = get_codebook("belharbi2024")
    mask = book.matrix()[torch.tensor([0, 1, 5])]
    assert mask.shape == (3, len(ALL_AUS)) and mask.dtype == torch.bool
    assert not mask[0].any()
    assert [ALL_AUS[k] for k in mask[1].nonzero().flatten()] == [6, 12, 25]
    assert [ALL_AUS[k] for k in mask[2].nonzero().flatten()] == [5, 9, 16, 17, 25, 26]


def test_custom_mapping_and_yaml(tmp_path):
    book = get_codebook({"happiness": ["AU6", 12], 6: [1, 4, 15]})
    assert book.aus_of("happiness") == (6, 12)
    assert book.aus_of("sadness") == (1, 4, 15)
    path = tmp_path / "mine.yaml"
    path.write_text("happiness: [6, 12]\nsurprise: [AU1, AU2, 26]\n")
    book = get_codebook(path)
    assert book.name == "mine"
    assert book.aus_of(Expression.SURPRISE) == (1, 2, 26)
    assert get_codebook(str(path)).aus_of("happiness") == (6, 12)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("belharbi", "did you mean 'belharbi2024'"),
        ({"hapiness": [6]}, "unknown expression 'hapiness'.*did you mean 'happiness'"),
        ({"happiness": [11]}, "unknown AU 11 for happiness"),
        ({"happiness": ["AUx"]}, "unknown AU 'AUx'"),
        ({"happiness": 6}, "must be a list"),
        ({9: [6]}, "unknown expression id 9"),
    ],
)
def test_bad_codebooks_name_the_problem(spec, message):
    with pytest.raises(ValueError, match=message):
        get_codebook(spec)


def test_bad_yaml_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.yaml"):
        get_codebook(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match=r"bad\.yaml must hold a mapping"):
        get_codebook(bad)
    broken = tmp_path / "broken.yml"
    broken.write_text("happiness: [6, 12\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        get_codebook(broken)
