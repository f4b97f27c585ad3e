"""Fine-tunes the top of the VGG16 body with the readout: ``python -m gazecrop.tools.tune``.

``gazecrop.tools.train`` trains the readout on a frozen body. This tool starts from a trained readout file
(``--init``, the bundled default) and trains, on the same cached features, the readout together with a
**low-rank change** of the body's last convolutions (block5_conv1..3): each kernel becomes
``W_body + reshape(A @ B)`` with A (3·3·in, r) and B (r, out), B starting at 0, so training starts from the
``--init`` model exactly. block5's input, ``block4_pool``, is in the feature cache, so a step never runs blocks
1–4. Only A and B are stored (``model.loading.BODY_DELTA_KEY``): about 1 MB at rank 32 instead of 14 MB.
``--rank 0`` trains the readout alone with the same loss (the control).

Loss: ``--nll-weight`` λ times the negative log-likelihood of the human fixations plus (1 − λ) times the
cross-entropy to the ``--init`` model's own density on the same image (distillation from the current model, a
regulariser that keeps the tuned body near what the readout was trained on). Early stopping and the printed
metrics are ``gazecrop.tools.train``'s (mean over datasets of val IG); its data, cache and metric code are
imported, not copied. The ``--init`` file's centre-bias prior, feature standardisation and face prior are kept.

The block5 convolutions compute in bfloat16 (``--precision mixed_bfloat16``, the default here: about 2.4× faster
on CPUs with AMX; weights stay float32, as ``gazecrop.tools.train_fast --precision``); the readout and the finaliser
stay float32.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

from gazecrop.model import faces, loading, network
from gazecrop.tools import train as base
from gazecrop.tools.data import BUNDLED_DATASETS, default_cache_dir

#: The body layers that are cached as the tuned layers' input, and those tuned.
INPUT_LAYER = "block4_pool"
TUNED_LAYERS = ("block5_conv1", "block5_conv2", "block5_conv3")


def low_rank_conv_layer():
    """The class of a 3×3 "same" ReLU convolution whose kernel is a frozen base plus ``A @ B`` (built lazily,
    so that importing this module does not import Keras)."""
    import keras
    from keras import ops

    class LowRankConv(keras.layers.Layer):
        def __init__(self, kernel, bias, rank, compute="float32", **kwargs):
            super().__init__(**kwargs)
            self.base_kernel, self.base_bias = np.asarray(kernel, np.float32), np.asarray(bias, np.float32)
            self.rank, self.compute = int(rank), compute

        def build(self, input_shape):
            kh, kw, cin, cout = self.base_kernel.shape
            self.kernel = self.add_weight(name="base_kernel", shape=self.base_kernel.shape, trainable=False,
                                          initializer=keras.initializers.Constant(self.base_kernel))
            self.bias = self.add_weight(name="base_bias", shape=(cout,), trainable=False,
                                        initializer=keras.initializers.Constant(self.base_bias))
            # A as LoRA's: random, scaled as a He-initialised kernel; B zero, so the delta starts at 0.
            self.a = self.add_weight(name="delta_a", shape=(kh * kw * cin, self.rank),
                                     initializer=keras.initializers.RandomNormal(stddev=1.0 / np.sqrt(kh * kw * cin)))
            self.b = self.add_weight(name="delta_b", shape=(self.rank, cout), initializer="zeros")

        def call(self, x):
            kernel = self.kernel + ops.reshape(ops.matmul(self.a, self.b), self.kernel.shape)
            y = ops.conv(ops.cast(x, self.compute), ops.cast(kernel, self.compute), padding="same")
            return ops.relu(ops.cast(y, "float32") + self.bias)

    return LowRankConv


def build_student(args, init_model, head):
    """The trained network on cached features (B, h/16, w/16, block4_pool + block5_conv3 channels): with a rank,
    block5 recomputed from the cached block4_pool by ``LowRankConv`` layers initialised from the body, then
    ``head``; at rank 0 the cached features straight into ``head``."""
    import keras
    from keras import ops

    inputs = keras.Input(shape=(None, None, 1024), dtype="float32", name="cached")
    if not args.rank:
        return keras.Model(inputs, head(inputs), name="student")
    conv = low_rank_conv_layer()
    pool = keras.layers.Lambda(lambda t: t[..., :512], name="cached_block4_pool")(inputs)
    x = pool
    for name in TUNED_LAYERS:
        kernel, bias = init_model.keras_model.get_layer(name).get_weights()
        compute = "bfloat16" if args.precision == "mixed_bfloat16" else "float32"
        x = conv(kernel, bias, args.rank, compute, name=name)(x)
    feats = keras.layers.Lambda(lambda ts: ops.concatenate(ts, axis=-1), name="features")([pool, x])
    return keras.Model(inputs, head(feats), name="student")


def init_head(args, init_model, *, dropout):
    """``network.deepgaze_head`` with the ``--init`` file's readout, blur, centre bias and standardisation."""
    config = init_model.config
    head = network.deepgaze_head(channels=1024, short_side=config["short_side"],
                                 blur_kernel_size=config["blur_kernel_size"],
                                 centre_bias_grid=config["centre_bias_grid"], dropout=dropout)
    for layer in loading.readout_layers(init_model.keras_model):
        head.get_layer(layer.name).set_weights(layer.get_weights())
    return head


def compiled_steps(student, teacher, args, n_train):
    """``(train_step, log_likelihood_sum)`` as ``gazecrop.tools.train.compiled_steps``, with the distillation
    term and two AdamW optimisers: ``--lr`` for the readout, ``--body-lr`` for the low-rank factors."""
    import keras
    import tensorflow as tf

    steps = max(1, n_train // args.batch_size) * 10
    body = [v for v in student.trainable_variables if "delta_" in v.path]
    readout = [v for v in student.trainable_variables if "delta_" not in v.path]
    groups = [(readout, keras.optimizers.AdamW(keras.optimizers.schedules.ExponentialDecay(args.lr, steps, 0.5),
                                               weight_decay=0.0))]
    if body:
        groups.append((body, keras.optimizers.AdamW(keras.optimizers.schedules.ExponentialDecay(
            args.body_lr, steps, 0.5), weight_decay=0.0)))
    variables = [v for group, _ in groups for v in group]
    lam = float(args.nll_weight)

    @tf.function(reduce_retracing=True)
    def train_step(feats, counts):
        target = tf.exp(teacher(feats, training=False))
        with tf.GradientTape() as tape:
            ld = student(feats, training=True)
            nll = -tf.reduce_sum(counts * ld) / tf.reduce_sum(counts)
            cross_entropy = -tf.reduce_mean(tf.reduce_sum(target * ld, axis=[1, 2]))
            loss = lam * nll + (1.0 - lam) * cross_entropy
        grads = tape.gradient(loss, variables)
        k = 0
        for group, optimizer in groups:
            optimizer.apply_gradients(zip(grads[k:k + len(group)], group))
            k += len(group)
        return nll

    @tf.function(reduce_retracing=True)
    def log_likelihood_sum(feats, counts):
        return tf.reduce_sum(counts * student(feats, training=False))

    return train_step, log_likelihood_sum


def tune(args, log=print):
    """Loads the data (``gazecrop.tools.train.load_data``), builds teacher and student from ``--init``, trains with
    early stopping on the mean val IG, writes ``--output``. Returns the best ``(val LL, epoch, ...)``."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(args.seed)
    tf.config.experimental.enable_op_determinism()
    init_model = loading.load_model(args.init)
    config = init_model.config
    if config.get("features") != [INPUT_LAYER, "block5_conv3"] or loading.BODY_DELTA_KEY in config:
        raise ValueError(f"--init must read block4_pool and block5_conv3 of an untuned body. Received: {args.init}")
    args.features, args.backbone, args.short_side = [INPUT_LAYER, "block5_conv3"], init_model.config["backbone"], \
        init_model.config["short_side"]
    data = base.load_data(args, log)
    prior = init_model.keras_model.get_layer("centre_bias").log_prior.numpy()
    cb_per_dataset = [base.centre_bias_ll(prior, d.val_samples) for d in data.datasets]
    teacher = init_head(args, init_model, dropout=0.0)
    head = init_head(args, init_model, dropout=args.dropout)
    student = build_student(args, init_model, head)
    # Epoch 0 is the --init model, scored first, so that a tuning that never improves on it says so and keeps it.
    best = base.fit(student, args, data, cb_per_dataset, log, head=student.get_layer("deepgaze_head"),
                    steps=compiled_steps(student, teacher, args, len(data.train_samples)), start_label="--init")
    log(f"best epoch {best[1]}: IG over centre bias {best[0] - np.mean(cb_per_dataset):+.4f} bits/fixation "
        f"(model resolution)" + base.per_dataset_text(data.datasets, np.subtract(best[3], cb_per_dataset), "{:+.4f}"))
    save(student, head, init_model, args, best, data, cb_per_dataset)
    log(f"wrote {args.output}")
    return best


def save(student, head, init_model, args, best, data, cb_per_dataset):
    """Writes the tuned readout and the low-rank factors into a readout file whose config is ``--init``'s (the face
    prior as ``--face-prior`` says), plus ``BODY_DELTA_KEY`` when a rank was trained."""
    config = {k: v for k, v in init_model.config.items() if k != faces.FACE_PRIOR_KEY}
    if args.face_prior:
        config[faces.FACE_PRIOR_KEY] = dict(faces.DEFAULT_FACE_PRIOR)
    delta = {}
    if args.rank:
        config[loading.BODY_DELTA_KEY] = {"layers": list(TUNED_LAYERS), "rank": args.rank}
        delta = {name: (student.get_layer(name).a.numpy(), student.get_layer(name).b.numpy()) for name in TUNED_LAYERS}
    full = network.deepgaze(**loading.network_kwargs(config))
    for layer in loading.readout_layers(full):
        layer.set_weights(head.get_layer(layer.name).get_weights())
    metadata = {"best_epoch": best[1], "val_ig_model_res_bits": round(best[0] - float(np.mean(cb_per_dataset)), 5),
                "val_ig_model_res_by_dataset": {d.label: round(v - c, 5) for d, v, c in
                                                zip(data.datasets, best[3], cb_per_dataset)},
                "init": str(args.init), "init_version": init_model.version, "train_images": data.train_images,
                "command": "python -m gazecrop.tools.tune " + " ".join(args.argv)}
    loading.save_readout(full, config, args.output, metadata=metadata, body_delta=delta)


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m gazecrop.tools.tune", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--init", default="default", help="readout file (or bundled name) to start from and distil from")
    p.add_argument("--output", type=Path, required=True, help="readout file to write")
    p.add_argument("--dataset", type=Path, nargs="+", default=list(BUNDLED_DATASETS))
    p.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    p.add_argument("--flips", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--face-prior", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--rank", type=int, default=32, help="rank of each kernel change; 0: the readout alone")
    p.add_argument("--nll-weight", type=float, default=0.5,
                   help="λ: weight of the fixations' NLL; 1 − λ goes to the cross-entropy to --init's density")
    p.add_argument("--lr", type=float, default=5e-4, help="readout learning rate (halved every 10 epochs)")
    p.add_argument("--body-lr", type=float, default=1e-4, help="learning rate of the low-rank factors")
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--precision", choices=("float32", "mixed_bfloat16"), default="mixed_bfloat16",
                   help="arithmetic of the tuned block5 convolutions (weights stay float32), as train_fast's "
                        "option: mixed_bfloat16 pays on cores with AVX-512 BF16 / AMX (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--patience", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-train", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    args.argv = list(argv)
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    tune(parse_args(argv))


if __name__ == "__main__":
    main()
