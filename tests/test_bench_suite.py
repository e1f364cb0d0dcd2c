"""bench/suite + plan: built-ins validate, overrides, errors name the field, models are reused."""

from __future__ import annotations

import pytest

from aubench.bench.runner import describe_plan, plan, suite_hash
from aubench.bench.suite import SuiteError, list_suites, load_suite
from aubench.cli import main

BUILTINS = [
    "cam-methods", "counterfactual", "evidence", "faithfulness", "lambda", "laterality", "layers",
    "quick", "sanity", "shortcut",
]  # fmt: skip


def test_builtin_suites_are_listed_and_valid():
    assert list_suites() == BUILTINS
    for name in BUILTINS:
        suite = load_suite(name)
        assert suite.name == name and suite.description
        assert {v.guided for v in suite.variants} == {False, True}


def test_same_training_config_is_one_cached_model_across_suites():
    methods = plan(load_suite("cam-methods"))
    cam = {c.variant: c.config.hash() for c in methods if c.config.method == "cam"}
    faith = {c.variant: c.config.hash() for c in plan(load_suite("faithfulness"))}
    lam = {c.variant: c.config.hash() for c in plan(load_suite("lambda"))}
    assert cam == faith
    assert lam["baseline"] == cam["baseline"] and lam["lam-4"] == cam["guided"]
    assert len(set(lam.values())) == 6


def test_overrides_set_nested_fields_parsed_as_yaml():
    suite = load_suite(
        "quick", ["train.epochs=1", "models=[resnet18, convnext_atto]", "eval.max_images=8"]
    )
    assert suite.train == {"size": 64, "epochs": 1}
    assert suite.models == ("resnet18", "convnext_atto")
    assert suite.eval.max_images == 8
    cells = plan(suite)
    assert [c.key for c in cells] == [
        "resnet18__baseline__0__test",
        "resnet18__guided__0__test",
        "convnext_atto__baseline__0__test",
        "convnext_atto__guided__0__test",
    ]
    assert cells[1].config.guided and cells[1].config.lam == 4 and cells[1].config.epochs == 1
    assert not cells[0].config.guided


def test_a_variant_trains_with_settings_of_its_own_and_keeps_older_hashes():
    """A variant's ``train`` (guided by each image's AUs: ``evidence: facs``) goes over the
    suite's and the method's train; left empty, it is out of the dump, so older suites keep
    their hash and their models."""
    plain = load_suite("quick")
    assert all("train" not in v for v in plain.dump()["variants"])
    same = load_suite(
        "quick", ["variants=[{name: baseline}, {name: guided, guided: true, train: {}}]"]
    )
    assert suite_hash(same) == suite_hash(plain)
    own = "{name: guided, guided: true, train: {evidence: facs, epochs: 2}}"
    suite = load_suite("quick", [f"variants=[{{name: baseline}}, {own}]"])
    assert suite.dump()["variants"][1]["train"] == {"evidence": "facs", "epochs": 2}
    baseline, guided = (cell.config for cell in plan(suite))
    assert (baseline.evidence, baseline.epochs) == ("codebook", 3)
    assert (guided.evidence, guided.epochs, guided.guided, guided.lam) == ("facs", 2, True, 4)
    assert baseline.hash() == plan(plain)[0].config.hash()  # the same cached baseline model


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("eval.splt=val", "suite 'quick': eval.splt: unknown field 'splt'; did you mean split?"),
        ("explainers=[gradcm]", "explainers: unknown name 'gradcm'; did you mean gradcam"),
        ("metrics=[cosin]", "metrics: unknown name 'cosin'; did you mean cosine"),
        ("train.epoch=1", "unknown config key 'epoch'; did you mean epochs?"),
        ("variants=[{name: a, guided: true, lam: -1}]", "variants.0.lam: Input should be greater"),
        ("variants=[{name: a}, {name: a}]", "variant names must be unique; repeated: ['a']"),
        ("seeds=[]", "seeds: must not be empty"),
        ("seeds=[0, 0]", "seeds: 0 listed more than once; each entry must be unique"),
        ("models=[resnet10t, resnet18, resnet10t]", "models: 'resnet10t' listed more than once"),
        ("explainers=[cam, gradcam, cam]", "explainers: 'cam' listed more than once"),
        ("metrics=[cosine, cosine]", "metrics: 'cosine' listed more than once"),
        ("layers=[stage:5, stage:5]", "layers: 'stage:5' listed more than once"),
        ("controls=[noise]", "controls: unknown name 'noise'"),
        ("oops", "--set 'oops': expected KEY=VALUE"),
        (
            "variants=[{name: g, guided: true, train: {lam: 2}}]",
            "variants.0.train: 'lam' is set by the variant itself (lam: …), not by the variant's "
            "train",
        ),
        ("variants=[{name: g, train: {seed: 1}}]", "'seed' is set by the suite (data, models"),
        ("variants=[{name: g, train: {evidence: fac}}]", "unknown evidence 'fac'; did you mean"),
    ],
)
def test_bad_suites_name_the_field(override, message):
    with pytest.raises(SuiteError) as err:
        load_suite("quick", [override])
    assert message in str(err.value)


def test_unknown_suite_suggests_builtins(tmp_path):
    with pytest.raises(
        SuiteError, match=r"no built-in suite or file named 'cam-method'.*cam-methods"
    ):
        load_suite("cam-method")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(SuiteError, match=r"bad\.yaml: not valid YAML"):
        load_suite(str(bad))


def test_dry_run_prints_the_plan(tmp_path, capsys):
    code = main(
        [
            "run",
            "--suite",
            "quick",
            "--dry-run",
            "--runs-root",
            str(tmp_path),
            "--set",
            "seeds=[0,1]",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "suite quick" in out and "4 cells" in out
    assert "resnet10t__guided__1__test" in out and "train 3 epochs" in out
    assert "4 model(s) to train" in out
    assert "8 map producers at 8 (producer, layer) pairs × 5 metric(s) = 40 scores per image" in out
    assert describe_plan(load_suite("quick"), tmp_path).count("train 3 epochs") == 2


def test_dry_run_opens_the_data(tmp_path, capsys):
    missing = tmp_path / "no-such-faces"
    argv = ["run", "--suite", "quick", "--dry-run", "--data", f"folder:{missing}"]
    assert main([*argv, "--runs-root", str(tmp_path / "runs")]) == 2
    assert f"folder dataset {missing} does not exist" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_bad_shard_is_an_error(capsys):
    assert main(["run", "--suite", "quick", "--shard", "2/2"]) == 2
    assert "expected i/n with 0 ≤ i < n" in capsys.readouterr().err


def test_cli_lists_suites(capsys):
    assert main(["list", "suites"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert names == BUILTINS
