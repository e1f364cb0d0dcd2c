import subprocess
import sys

import pytest

from aubench.cli import main


def test_list_codebooks_shows_the_paper_quirk(capsys):
    assert main(["list", "codebooks"]) == 0
    out = capsys.readouterr().out
    assert "belharbi2024\n" in out and "belharbi2024-fixed\n" in out
    paper = out.split("belharbi2024-fixed")[0]
    assert "disgust    AU9 AU5 AU16 AU17 AU25 AU26" in paper


def test_list_regions_and_aus(capsys):
    assert main(["list", "regions"]) == 0
    assert "landmark-gaussians" in capsys.readouterr().out
    assert main(["list", "aus"]) == 0
    assert "AU10  upper lip raiser" in capsys.readouterr().out


def test_module_entry_point_and_bad_arguments():
    ok = subprocess.run([sys.executable, "-m", "aubench", "--version"], capture_output=True)
    assert ok.returncode == 0 and ok.stdout.startswith(b"aubench ")
    bad = subprocess.run([sys.executable, "-m", "aubench", "list", "suits"], capture_output=True)
    assert bad.returncode == 2 and b"invalid choice: 'suits'" in bad.stderr


LIGHT_COMMANDS = [
    ["--help"],
    ["train", "--help"],
    ["run", "--help"],
    ["list", "suites"],
    ["list", "codebooks"],
    ["list", "aus"],
    ["run"],  # usage error: --suite is required
    ["list", "suits"],  # usage error: invalid choice
    ["check", "no-such-run", "--baseline", "b.json"],  # a user error, one line
]


@pytest.mark.parametrize("argv", LIGHT_COMMANDS, ids=" ".join)
def test_help_listings_and_usage_errors_do_not_import_torch(argv, tmp_path):
    """The command line answers these before torch (≈ 3–6 s to import) is loaded."""
    code = (
        "import sys\nfrom aubench.cli import main\ntry:\n    code = main(sys.argv[1:])\n"
        "except SystemExit as stop:\n    code = stop.code\n"
        "heavy = sorted(m for m in ('torch', 'timm', 'captum') if m in sys.modules)\n"
        "print('HEAVY', heavy, code, file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=tmp_path
    )
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("HEAVY [] "), done.stderr
    assert last.split()[-1] in {"0", "2", "None"}, done.stderr


def test_an_error_in_a_dataloader_worker_is_told_in_one_line():
    from torch.utils.data import DataLoader, Dataset

    from aubench.cli import user_message
    from aubench.data.table import ImageReadError

    class Broken(Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, index):
            raise ImageReadError("cannot decode image file /data/a.png (truncated)")

    with pytest.raises(ImageReadError) as caught:
        next(iter(DataLoader(Broken(), num_workers=1)))
    assert "Original Traceback" in str(caught.value)  # what torch re-raises
    assert user_message(caught.value) == "cannot decode image file /data/a.png (truncated)"
    assert user_message(ValueError("plain")) == "plain"
