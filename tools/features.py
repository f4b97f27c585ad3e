"""Body-feature cache: VGG16 features of every training image, computed once, stored as float16.

Training the readout then never runs the body again, so an epoch takes seconds. The cache lives
outside the repository (``--cache-dir``, default ``$GAZECROP_CACHE`` or ``~/.cache/gazecrop``),
one ``.npz`` per image and flip, keyed by the body weights' hash, the input short side and the
cached layers, so a changed body never reuses stale features, and then by the dataset folder's name,
since image names may repeat across datasets.
"""

import copy
import hashlib
import time
from pathlib import Path

import keras
import numpy as np

from gazecrop.model import loading, network
from gazecrop.model.images import read_image_rgb, resize_for_model
from gazecrop.tools.data import dataset_label

#: Body layers cached (all on the 1/16 grid); the readout reads a subset of them.
CACHED_LAYERS = ("block4_pool", "block5_conv1", "block5_conv3")


def body_model(backbone="hed", body_weights=None):
    """The VGG16 body with its weights, returning the cached layers."""
    full = network.deepgaze()
    if backbone == "hed":
        loading.load_hed_body(full, body_weights)
    elif backbone == "imagenet":
        loading.load_imagenet_body(full)
    else:
        raise ValueError(f"backbone must be one of {loading.BACKBONES}. Received: backbone={backbone!r}")
    outputs = [full.get_layer(n).output for n in CACHED_LAYERS]
    return keras.Model(full.input, outputs, name="vgg16_body")


def body_hash(body):
    digest = hashlib.sha256()
    for layer in body.layers:
        for w in layer.get_weights():
            digest.update(np.ascontiguousarray(w, np.float32).tobytes())
    return digest.hexdigest()[:12]


class FeatureCache:
    """Reads and fills the per-image feature files of one (body, short side) pair."""

    def __init__(self, cache_dir, *, backbone="hed", short_side=224, body_weights=None):
        self.body = body_model(backbone, body_weights)
        self.short_side = int(short_side)
        key = f"{backbone}-{body_hash(self.body)}-s{self.short_side}-{'+'.join(CACHED_LAYERS)}"
        self.dir = Path(cache_dir) / "features" / key
        self.dir.mkdir(parents=True, exist_ok=True)

    def for_dataset(self, dataset_dir):
        """This cache (the same body) with its files in a folder of their own for ``dataset_dir``,
        named as the folder is, as the size cache is: image names may repeat across datasets."""
        view = copy.copy(self)
        view.dir = self.dir / dataset_label(dataset_dir)
        view.dir.mkdir(parents=True, exist_ok=True)
        return view

    def input_size(self, height, width):
        return loading.input_size(height, width, self.short_side)

    def path(self, name, flipped):
        return self.dir / f"{Path(name).stem}{'-flip' if flipped else ''}.npz"

    def fill(self, dataset_dir, names, *, flips=True, batch_size=4, log=print):
        """Computes the missing feature files for ``names`` (and their mirror images)."""
        import tensorflow as tf

        forward = tf.function(lambda x: self.body(x, training=False), reduce_retracing=True,
                              input_signature=[tf.TensorSpec((None, None, None, 3), tf.float32)])
        # Unflipped images first, so a partial cache is already usable.
        todo = [(n, f) for f in ((False, True) if flips else (False,)) for n in names
                if not self.path(n, f).exists()]
        log(f"feature cache {self.dir}: {len(todo)} of "
            f"{len(names) * (2 if flips else 1)} to compute")
        # Group by input shape so batches are uniform.
        pending, start, done = {}, time.time(), 0
        for name, flipped in todo:
            rgb = read_image_rgb(Path(dataset_dir) / "stimuli" / name)
            size = self.input_size(*rgb.shape[:2])
            x = resize_for_model(rgb, size)
            if flipped:
                x = x[:, ::-1]
            group = pending.setdefault(size, [])
            group.append((name, flipped, x))
            if len(group) == batch_size:
                done += self._run(forward, pending.pop(size))
                log(f"  {done}/{len(todo)} images, {done / (time.time() - start):.2f} images/s")
        for group in pending.values():
            done += self._run(forward, group)
        log(f"  {done}/{len(todo)} images in {time.time() - start:.0f} s")

    def _run(self, forward, group):
        batch = np.stack([x for _, _, x in group])
        outs = [np.asarray(o) for o in forward(batch)]
        for i, (name, flipped, _) in enumerate(group):
            arrays = {layer: o[i].astype(np.float16) for layer, o in zip(CACHED_LAYERS, outs)}
            tmp = self.path(name, flipped).with_suffix(".tmp.npz")
            np.savez(tmp, **arrays)
            tmp.replace(self.path(name, flipped))
        return len(group)

    def load(self, name, flipped, layers):
        """(h/16, w/16, C) float16 features of ``layers`` concatenated on the channel axis."""
        with np.load(self.path(name, flipped)) as z:
            return np.concatenate([z[l] for l in layers], axis=-1)


def main(argv=None):
    """Fills the cache for a dataset's train and val splits: ``python -m gazecrop.tools.features``."""
    import argparse

    from gazecrop.tools.data import DEFAULT_DATASET, default_cache_dir, read_split

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    p.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    p.add_argument("--short-side", type=int, default=224)
    p.add_argument("--backbone", choices=loading.BACKBONES, default="hed")
    p.add_argument("--splits", nargs="+", default=["train", "val"])
    p.add_argument("--no-flips", action="store_true", help="skip the mirrored copies")
    p.add_argument("--max-train", type=int, default=0,
                   help="only the first N images of the train split (as gazecrop.tools.train --max-train)")
    args = p.parse_args(argv)
    cache = FeatureCache(args.cache_dir, backbone=args.backbone, short_side=args.short_side).for_dataset(args.dataset)
    names = []
    for split in args.splits:
        split_names = read_split(args.dataset, split)
        names += split_names[: args.max_train] if split == "train" and args.max_train else split_names
    cache.fill(args.dataset, names, flips=not args.no_flips)


if __name__ == "__main__":
    main()
