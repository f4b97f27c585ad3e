"""`gazecrop crop FILE...`: the crops of a few pictures, printed (and written with --output), no Beam job.

Each file goes through `gazecrop.crop` (the pipeline's decoder, model call and crop search, `core/api.py`),
and crop files are cut and encoded by `gazecrop.encode`, as the write stage does; so the numbers and the
bytes are those of `gazecrop run` with the same options (tests/test_api.py compares them).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from pathlib import Path

from gazecrop.pipeline.argtypes import parse_model, parse_ratios
from gazecrop.search import DEFAULT_ASPECT_RATIOS, CropConfig, parse_aspect_ratios, ratio_dirname

DESCRIPTION = """Crop a few pictures in this process, with no Beam job: the boxes `gazecrop run` writes for them.

With --json, one JSON object per line and file:
  {"source", "width", "height", "model_version",
   "crops": [{"aspect_ratio", "rank", "x", "y", "width", "height", "focal_x", "focal_y", "saliency_kept"}]}
(pixels of the upright picture, after its EXIF orientation); else a short table. With --output DIR, each
crop is also written as DIR/<ratio>/<file name>.jpg (DIR/16x9/photo.png.jpg; with --candidates, rank k > 0
as photo.png.rank<k>.jpg), the JPEG `gazecrop run` writes; where two files share a name (a/x.jpg, b/x.jpg),
each gets a name made unique as `gazecrop run` makes its names (x.jpg%=<hash of its path>).

Exit status: 0 every file cropped; 1 a file could not be read or decoded (each named on stderr, the others
still cropped); 2 a usage error (nothing done).
"""

# The pipeline's default crop encoding (`gazecrop run` without --output_format, --jpeg_quality).
JPEG_QUALITY = 90


class _Parser(argparse.ArgumentParser):
    """argparse, but an error is one line (no usage dump before it), as `gazecrop run`'s."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gazecrop crop", description=DESCRIPTION,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", metavar="FILE", help="image files (any format `gazecrop run` reads)")
    parser.add_argument("--aspect_ratios", default=",".join(f"{a}:{b}" for a, b in DEFAULT_ASPECT_RATIOS),
                        type=parse_ratios, help="comma-separated W:H ratios (also WxH, W/H, 1.91:1), as "
                                                  "`gazecrop run` takes them (default: %(default)s)")
    parser.add_argument("--model", default="default", type=parse_model,
                        help="'default', 'fast', 'tiny' or a readout weights file (default: %(default)s)")
    parser.add_argument("--candidates", default=1, type=int, metavar="N",
                        help="ranked crops per ratio, as `gazecrop run --candidates` (default: %(default)s)")
    parser.add_argument("--min_scale", default=1.0, type=float, metavar="S",
                        help="smallest crop tried, as `gazecrop run --min_scale` (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per line and file")
    parser.add_argument("--output", metavar="DIR", type=Path,
                        help="also write the crops, as JPEG, to DIR/<ratio>/<file name>.jpg")
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's own log lines on the console (else they go to a temporary log)")
    return parser


def output_names(files: list[str]) -> dict[str, str]:
    """Each file's output name (the `<relpath>` of `DIR/<ratio>/<relpath>.jpg`): its file name made safe,
    or, where files at two paths share that name (after case folding), the pipeline's unique name for each."""
    from gazecrop.paths import output_relpath, safe_relpath

    names = {f: safe_relpath(os.path.basename(f)) for f in files}
    paths: dict[str, set[str]] = {}
    for f, name in names.items():
        paths.setdefault(name.casefold(), set()).add(os.path.abspath(f))
    return {f: name if len(paths[name.casefold()]) == 1 else output_relpath(os.path.abspath(f), os.path.basename(f))
            for f, name in names.items()}


def write_crops(path: str, cropped, root: Path, name: str) -> list[Path]:
    """Cut `cropped`'s crops from the full-resolution source and write them under `root`; the files written."""
    from gazecrop.decode import decode_full
    from gazecrop.encode import cut, encode

    pixels = decode_full(Path(path).read_bytes())
    written = []
    for box in cropped.crops:
        suffix = f".rank{box.rank}" if box.rank else ""
        target = root / ratio_dirname(parse_aspect_ratios(box.aspect_ratio)[0]) / f"{name}{suffix}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f"{target.name}.{uuid.uuid4().hex}.tmp")
        temporary.write_bytes(encode(cut(pixels, box, 0), "jpeg", JPEG_QUALITY))
        os.replace(temporary, target)  # never a half-written file at the final name
        written.append(target)
    return written


def table(cropped) -> str:
    """A few lines per picture: its size, then one line per crop."""
    lines = [f"{cropped.source}  {cropped.width}x{cropped.height}"]
    for box in cropped.crops:
        rank = f" #{box.rank}" if box.rank else ""
        size = f"{box.width}x{box.height}"
        lines.append(f"  {box.aspect_ratio + rank:<10} x={box.x:<5} y={box.y:<5} {size:<11} "
                     f"focal=({box.focal_x}, {box.focal_y})  kept={box.saliency_kept:.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:  # the crop options' own checks (`gazecrop.search.CropConfig`), before any file is read
        CropConfig(aspect_ratios=args.aspect_ratios, candidates=args.candidates, min_scale=args.min_scale)
    except ValueError as exc:
        parser.error(str(exc))
    if args.output is not None and args.output.exists() and not args.output.is_dir():
        parser.error(f"--output {args.output} is not a folder")
    from gazecrop.api import crop

    names = output_names(args.files) if args.output is not None else {}
    failed = 0
    for path in args.files:
        try:
            cropped = crop(path, args.aspect_ratios, args.model, candidates=args.candidates,
                           min_scale=args.min_scale)
            written = write_crops(path, cropped, args.output, names[path]) if args.output is not None else []
        except Exception as exc:  # noqa: BLE001 (one file's failure, named; the others are still cropped)
            print(f"gazecrop crop: cannot crop {path}: {_reason(exc, path)}", file=sys.stderr, flush=True)
            failed += 1
            continue
        if args.json:
            print(json.dumps(cropped.to_dict()), flush=True)
        else:
            print(table(cropped), flush=True)
            for target in written:
                print(f"  wrote {target}", flush=True)
    return 1 if failed else 0


def _reason(exc: Exception, path: str) -> str:
    """Why a file failed, without its name again: an OSError's reason (`No such file or directory`), a
    decode error's message (`gazecrop.crop` puts the path first), else the error's type and message."""
    from gazecrop.decode import DecodeError

    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, DecodeError):
        return str(exc).removeprefix(f"{path}: ")
    return f"{type(exc).__name__}: {exc}"
