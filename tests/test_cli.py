import subprocess
import sys

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
