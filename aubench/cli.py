"""The ``aubench`` command line.

Commands: ``synth`` (export the built-in synthetic AU faces with a preview grid) and ``list``
(codebooks, region models, expressions, action units, a model's layers). Errors in user input
exit with status 2 and one line naming the problem.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from aubench import __version__


def _synth(args: argparse.Namespace) -> None:
    from aubench.data.synthetic import SyntheticFaces, export_synthetic
    from aubench.report.preview import save_synthetic_preview

    dataset = SyntheticFaces(
        args.n, args.size, args.split, args.seed, args.num_classes, shortcut=args.shortcut
    )
    out = export_synthetic(dataset, args.out, progress=not args.quiet)
    written = "labels.csv, images/"
    if not args.no_preview:
        save_synthetic_preview(dataset, out / "preview.png")
        written += ", preview.png"
    print(f"wrote {len(dataset)} faces to {out} ({written})")


def _list(args: argparse.Namespace) -> None:
    from aubench.faces.codebook import AU_NAMES, EXPRESSIONS, get_codebook, list_codebooks
    from aubench.faces.heatmaps import REGION_MODELS

    if args.what == "codebooks":
        for name in list_codebooks():
            book = get_codebook(name)
            print(name)
            for label, expression in enumerate(EXPRESSIONS):
                aus = book.aus_of(label)
                shown = " ".join(f"AU{au}" for au in aus) if aus else "— (invalid heatmap)"
                print(f"  {expression:<10} {shown}")
    elif args.what == "regions":
        for name, codebook in REGION_MODELS.items():
            print(f"{name:<20} default codebook: {codebook or '— (label-agnostic)'}")
    elif args.what == "expressions":
        for label, expression in enumerate(EXPRESSIONS):
            print(f"{label}  {expression}")
    elif args.what == "aus":
        for au, name in AU_NAMES.items():
            print(f"AU{au:<3} {name}")
    else:
        _list_layers(args)


def _list_layers(args: argparse.Namespace) -> None:
    from aubench.models import create, list_layers

    if not args.model:
        raise ValueError("`aubench list layers` needs a model name, e.g. `list layers resnet18`")
    model = create(args.model, num_classes=7, img_size=args.size)
    print(f"{'layer':<32} {'stage':>5}  {'module':<20} output ({args.size}×{args.size} input)")
    for info in list_layers(model, args.size, depth=args.depth):
        stage = "" if info.stage is None else str(info.stage)
        grid = "" if info.spatial is None else f"  grid {info.spatial[0]}×{info.spatial[1]}"
        shape = "×".join(str(n) for n in info.shape[1:])
        print(f"{info.name:<32} {stage:>5}  {info.kind:<20} {shape}{grid}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aubench",
        description="Does your facial-expression classifier look where a FACS expert looks?",
    )
    parser.add_argument("--version", action="version", version=f"aubench {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    synth = commands.add_parser(
        "synth", help="export synthetic AU faces (images + labels.csv with 68 landmarks + preview)"
    )
    synth.add_argument("--n", type=int, default=64, help="number of faces (default 64)")
    synth.add_argument("--size", type=int, default=112, help="image side in px, 64-224 (112)")
    synth.add_argument("--out", required=True, help="output folder (created; resumable)")
    synth.add_argument("--split", default="train", choices=["train", "val", "test"])
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--num-classes", type=int, default=7, choices=[7, 8])
    synth.add_argument(
        "--shortcut", type=float, default=0.0, help="probability ρ of a class-coloured shortcut cue"
    )
    synth.add_argument("--no-preview", action="store_true", help="skip preview.png")
    synth.add_argument("--quiet", action="store_true", help="no progress bar")
    synth.set_defaults(handler=_synth)

    listing = commands.add_parser(
        "list", help="list codebooks, region models, expressions, AUs, or a model's layers"
    )
    listing.add_argument("what", choices=["codebooks", "regions", "expressions", "aus", "layers"])
    listing.add_argument("model", nargs="?", help="timm model name (for `list layers`)")
    listing.add_argument("--size", type=int, default=224, help="input side in px (layers; 224)")
    listing.add_argument(
        "--depth", type=int, default=2, help="module-name depth shown (layers; default 2)"
    )
    listing.set_defaults(handler=_list)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError) as err:
        print(f"aubench {args.command}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into a pager or `head` that stopped reading
        sys.stderr.close()
    except KeyboardInterrupt:
        print(f"aubench {args.command}: interrupted (finished work is kept)", file=sys.stderr)
        return 130
    return 0
