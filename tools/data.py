"""Eye-fixation datasets in the MIT1003 layout.

A dataset folder holds ``stimuli/<image>`` and ``fixations.csv`` with columns
``image, subject, index, x, y, duration_ms`` (0-based pixels of the stored image, x right, y down),
optionally ``splits/<split>.txt`` (one image name a line) and ``fixation_maps/<image>`` (the
benchmark's blurred fixation maps, same name with a .jpg suffix).
"""

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Default dataset folder: ../shared/data/mit1003 next to the repository.
DEFAULT_DATASET = Path(__file__).resolve().parents[2] / "shared" / "data" / "mit1003"
#: The bundled default model's training data: MIT1003 and NUS Scene, next to the repository.
BUNDLED_DATASETS = (DEFAULT_DATASET, DEFAULT_DATASET.parent / "scene")


def default_cache_dir():
    """Feature cache folder: $GAZECROP_CACHE, else ~/.cache/gazecrop (never inside the repo)."""
    return Path(os.environ.get("GAZECROP_CACHE", Path.home() / ".cache" / "gazecrop"))


@dataclass(frozen=True)
class Fixations:
    """The fixations on one image, as float pixel coordinates of the stored image."""

    x: np.ndarray
    y: np.ndarray
    subject: np.ndarray

    def __len__(self):
        return len(self.x)

    def int_coords(self, height, width):
        """Integer (rows, cols) of the fixated pixels (truncated, as pysaliency does, and clipped)."""
        cols = np.clip(self.x.astype(np.int64), 0, width - 1)
        rows = np.clip(self.y.astype(np.int64), 0, height - 1)
        return rows, cols


def dataset_label(dataset_dir) -> str:
    """A dataset's short name, its folder's name: it keys training samples, the feature, size and teacher-map
    caches and the logs (image names may repeat across datasets)."""
    return Path(dataset_dir).resolve().name


def read_fixations(dataset_dir):
    """Reads ``fixations.csv`` → {image name: Fixations}."""
    path = Path(dataset_dir) / "fixations.csv"
    if not path.is_file():
        raise FileNotFoundError(f"fixations file {path} not found; a dataset folder holds "
                                f"stimuli/ and fixations.csv (columns image, subject, index, x, y, duration_ms)")
    rows = {}
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = {"image", "subject", "x", "y"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"fixations file {path} lacks columns {sorted(missing)}. "
                             f"Received: columns={reader.fieldnames}")
        for r in reader:
            rows.setdefault(r["image"], []).append((float(r["x"]), float(r["y"]), int(r["subject"])))
    out = {}
    for name, values in rows.items():
        a = np.asarray(values, np.float64)
        out[name] = Fixations(x=a[:, 0], y=a[:, 1], subject=a[:, 2].astype(np.int64))
    return out


def read_split(dataset_dir, split):
    """Image names listed in ``splits/<split>.txt``."""
    path = Path(dataset_dir) / "splits" / f"{split}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"split file {path} not found. Received: split={split!r}")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def read_image_list(path):
    """Image names from a text file, one a line (blank lines and #-comments skipped)."""
    lines = Path(path).read_text().splitlines()
    return [l.strip() for l in lines if l.strip() and not l.strip().startswith("#")]
