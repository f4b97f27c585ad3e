"""Predicting saliency: the model loaded once per process, applied to model inputs; and a command.

``load_cached`` and ``predict_with_faces`` (``predict_log_densities``) are what the pipeline's inference stage
(``gazecrop.transforms.inference``) and ``gazecrop.crop`` both call, so both load a model the same way
and give the same log-density for the same input. Neither imports TensorFlow until a model is loaded.

``python -m gazecrop.model.predict --input PATH_OR_GLOB --output DIR`` writes, for each image,
``<stem>.npy``: a float32 log-density at the source image's resolution (after its EXIF orientation),
``logsumexp == 0``. ``--heatmap`` also writes ``<stem>.png``, the image with the saliency overlaid.
Unreadable images are reported (file and reason) and skipped; the command exits 1 if any image failed.
"""

import argparse
import functools
import glob
import os
import sys
import threading
from pathlib import Path

import cv2
import numpy as np

from gazecrop.model.images import ImageReadError, read_image_rgb, resize_for_model
from gazecrop.model.saliency import resize_log_density
from gazecrop.records import group_by_shape_of

#: The bundled models ``load_model`` takes by name; any other spec is a readout weights file.

# TensorFlow otherwise reserves nearly all GPU memory in the first process that touches the GPU (the one
# that loads the model first: with an in-process runner, the one that also built the job); growing on
# demand lets the worker that serves the model have the rest. Set
# before TensorFlow is imported, and passed to Beam's model handler for its worker processes.
TF_ENV_VARS = {"TF_FORCE_GPU_ALLOW_GROWTH": "true"}

# Building Keras models from several threads at once is not safe (the DirectRunner runs DoFns in
# threads; two of them swapping in a watched model at once hung the job).
_LOAD_LOCK = threading.Lock()


def load_cached(spec):
    """``load_model(spec)`` ("default", "fast", "tiny" or a weights path), once per process and spec, one
    load at a time: the pipeline's launcher, its in-process workers and ``gazecrop.crop`` share it."""
    with _LOAD_LOCK:
        return _load_once(str(spec))


@functools.lru_cache(maxsize=2)
def _load_once(spec):
    for name, value in TF_ENV_VARS.items():
        os.environ.setdefault(name, value)
    from gazecrop.model.loading import load_model
    return load_model(spec)


def predict_log_densities(model, inputs):
    """The log-density at model resolution of each model input: one ``model.predict`` call per input shape.

    Args:
        model: a ``SaliencyModel``, or anything with its ``predict`` (Beam's proxy of a shared model).
        inputs: uint8 (h, w, 3) RGB model inputs (``gazecrop.decode.decode_for_model``'s ``pixels``),
            each h and w a multiple of 16; shapes may differ.
    Returns:
        A list of float32 (h, w) log-densities (``logsumexp == 0``), in the order of ``inputs``.

    Inputs go to the model as uint8 (the model casts them): where the model is shared across processes
    each batch is pickled to the process that holds it, and uint8 is a quarter of the bytes.
    """
    return predict_with_faces(model, inputs)[0]


def predict_with_faces(model, inputs):
    """``predict_log_densities``, and the faces the model's face prior found on each input (the crop search's
    face boxes): ``(log_densities, faces)``, ``faces`` a list of (K, 5) float32 arrays (x0, y0, x1, y1, score,
    normalised to the source) or of None where the model has no face prior (or no ``predict_with_faces``: a
    stand-in model)."""
    out = [None] * len(inputs)
    found = [None] * len(inputs)
    with_faces = getattr(model, "predict_with_faces", None)
    for indices in group_by_shape_of(inputs).values():
        batch = np.stack([inputs[i] for i in indices])
        if with_faces is None:
            log_density, faces = model.predict(batch), None
        else:
            log_density, faces = with_faces(batch)
        log_density = np.asarray(log_density, dtype=np.float32)
        for row, i in enumerate(indices):
            out[i] = log_density[row]
            found[i] = None if faces is None else np.asarray(faces[row], np.float32).reshape(-1, 5)
    return out, found


def predict_images(model, images, *, batch_size=8):
    """Log-densities at source resolution for uint8 RGB images, batched by model input size.

    Args:
        model: a ``SaliencyModel``.
        images: a list of uint8 (H, W, 3) RGB arrays.
    Returns:
        A list of float32 (H, W) log-densities, in the order of ``images``.
    """
    out = [None] * len(images)
    groups = {}
    for i, rgb in enumerate(images):
        groups.setdefault(model.input_size(*rgb.shape[:2]), []).append(i)
    for size, indices in groups.items():
        for k in range(0, len(indices), batch_size):
            chunk = indices[k:k + batch_size]
            batch = np.stack([resize_for_model(images[i], size) for i in chunk])
            for i, ld in zip(chunk, model.predict(batch)):
                out[i] = resize_log_density(ld, images[i].shape[:2])
    return out


def heatmap_overlay(rgb, log_density, *, alpha=0.5):
    """The image with its saliency overlaid (JET colour map on the density scaled to its max)."""
    density = np.exp(log_density - log_density.max())
    colours = cv2.applyColorMap((255 * density).astype(np.uint8), cv2.COLORMAP_JET)
    colours = cv2.cvtColor(colours, cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(rgb, 1.0 - alpha, colours, alpha, 0.0)


def expand_inputs(pattern):
    """A file, a folder (its files), or a glob pattern → sorted list of paths."""
    path = Path(pattern)
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file())
    if path.exists():
        return [path]
    return sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m gazecrop.model.predict", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", required=True, help="an image file, a folder, or a glob pattern")
    p.add_argument("--output", required=True, type=Path, help="folder for <stem>.npy (and .png)")
    p.add_argument("--heatmap", action="store_true", help="also write <stem>.png overlays")
    p.add_argument("--model", default="default", help="'default', 'fast', 'tiny' or a weights file")
    p.add_argument("--batch-size", type=int, default=8)
    args = p.parse_args(argv)

    paths = expand_inputs(args.input)
    if not paths:
        print(f"no input files match {args.input}", file=sys.stderr)
        return 1
    from gazecrop.model import load_model

    model = load_model(args.model)
    print(f"model {model.name} version {model.version}, {len(paths)} input files")
    args.output.mkdir(parents=True, exist_ok=True)
    failed = 0
    for k in range(0, len(paths), args.batch_size):
        chunk, images = [], []
        for path in paths[k:k + args.batch_size]:
            try:
                images.append(read_image_rgb(path))
                chunk.append(path)
            except ImageReadError as e:
                print(f"FAILED {path}: {e}", file=sys.stderr)
                failed += 1
        for path, rgb, ld in zip(chunk, images, predict_images(model, images, batch_size=args.batch_size)):
            np.save(args.output / f"{path.stem}.npy", ld.astype(np.float32))
            if args.heatmap:
                overlay = heatmap_overlay(rgb, ld)
                cv2.imwrite(str(args.output / f"{path.stem}.png"), cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
            print(f"{path} -> {args.output / (path.stem + '.npy')} {rgb.shape[1]}x{rgb.shape[0]}")
    print(f"{len(paths) - failed} written, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
