"""Trains the readout on human fixations: ``python -m gazecrop.tools.train``.

DeepGaze II recipe: the VGG16 body is frozen and its features cached once; the readout, the
blur width and the centre-bias weight are trained to minimise the negative log-likelihood of the
training fixations under the predicted density; early stopping on the val split's likelihood.
The centre-bias prior is fitted to the training fixations (normalised coordinates) first; its
smoothing bandwidth is chosen on val. Each epoch prints the train loss and the val information
gain over the centre bias (bits per fixation, at model resolution); the best epoch's weights are
written to ``--output``.

``--dataset`` takes one or more dataset folders: the readout trains on the union of their train
splits and the centre-bias prior is fitted on the union's train fixations. The val splits choose
(bandwidth, best epoch) by the *mean over datasets* of each one's val log-likelihood per fixation,
so a small val split counts as much as a large one; with one dataset this is its val likelihood,
as before. Samples, fixations and sizes are keyed by (dataset, image name).

Reproduce the bundled model with the command in ``model/README.md``.
"""

import argparse
import json
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from gazecrop.model import faces, loading, network
from gazecrop.tools.data import BUNDLED_DATASETS, dataset_label, default_cache_dir, read_fixations, read_split
from gazecrop.tools.features import CACHED_LAYERS, FeatureCache
from gazecrop.model.images import read_image_rgb
from gazecrop.model.saliency import centre_bias_log_density, fit_centre_bias

LN2 = np.log(2.0)

#: Centre-bias smoothing bandwidths tried (fraction of the image side); the best on val is kept.
CENTRE_BIAS_BANDWIDTHS = (0.01, 0.015, 0.02, 0.03, 0.04, 0.06)


def image_sizes(dataset_dir, names, cache_dir):
    """(height, width) of each stimulus, cached in ``cache_dir/sizes-<dataset>.json``."""
    path = Path(cache_dir) / f"sizes-{dataset_label(dataset_dir)}.json"
    sizes = json.loads(path.read_text()) if path.exists() else {}
    missing = [n for n in names if n not in sizes]
    for n in missing:
        sizes[n] = list(read_image_rgb(Path(dataset_dir) / "stimuli" / n).shape[:2])
    if missing:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(sizes))
    return {n: tuple(sizes[n]) for n in names}


class Sample:
    """One training example: cached features and fixation counts at model resolution. ``key`` is
    (dataset folder name, image name): image names may repeat across datasets."""

    def __init__(self, name, flipped, features, rows, cols, size, dataset=""):
        self.name, self.flipped, self.features = name, flipped, features
        self.rows, self.cols, self.size = rows, cols, size
        self.key = (dataset, name)

    def counts(self):
        c = np.zeros(self.size, np.float32)
        np.add.at(c, (self.rows, self.cols), 1.0)
        return c


def make_samples(cache, names, fixations, sizes, layers, *, flips, dataset=""):
    """Loads features and maps fixations from stimulus pixels to model-input pixels."""
    samples = []
    for name in names:
        height, width = sizes[name]
        h, w = cache.input_size(height, width)
        fx = fixations[name]
        rows = np.clip((fx.y * h / height).astype(np.int64), 0, h - 1)
        cols = np.clip((fx.x * w / width).astype(np.int64), 0, w - 1)
        for flipped in ((False, True) if flips else (False,)):
            feats = cache.load(name, flipped, layers)
            samples.append(Sample(name, flipped, feats, rows, w - 1 - cols if flipped else cols, (h, w), dataset))
    return samples


def batches(samples, batch_size, rng):
    """Shuffled batches of samples with equal feature shapes."""
    groups = {}
    for s in samples:
        groups.setdefault(s.features.shape, []).append(s)
    out = []
    for group in groups.values():
        order = rng.permutation(len(group))
        out += [[group[i] for i in order[k:k + batch_size]] for k in range(0, len(group), batch_size)]
    return [out[i] for i in rng.permutation(len(out))]


def choose_centre_bias(datasets, grid, log):
    """Fits the centre-bias prior on the train fixations of all ``datasets`` (normalised coordinates);
    picks the bandwidth with the best val LL (the mean over datasets). Returns ``(val LL, bandwidth,
    prior, val LL per dataset)``."""
    xs, ys, ws, hs = [], [], [], []
    for d in datasets:
        for n in d.train_names:
            fx, (height, width) = d.fixations[n], d.sizes[n]
            xs.append(fx.x), ys.append(fx.y)
            ws.append(np.full(len(fx), width)), hs.append(np.full(len(fx), height))
    xs, ys, ws, hs = (np.concatenate(a) for a in (xs, ys, ws, hs))
    best = None
    for bandwidth in CENTRE_BIAS_BANDWIDTHS:
        prior = fit_centre_bias(xs, ys, ws, hs, grid=grid, bandwidth=bandwidth)
        per_dataset = [centre_bias_ll(prior, d.val_samples) for d in datasets]
        ll = float(np.mean(per_dataset))
        log(f"centre bias bandwidth {bandwidth}: val log-likelihood {ll:.4f} bits/fixation"
            + per_dataset_text(datasets, per_dataset, "{:.4f}"))
        if best is None or ll > best[0]:
            best = (ll, bandwidth, prior, per_dataset)
    return best


def per_dataset_text(datasets, values, fmt):
    """`` (mit1003 0.93, scene 0.85)`` with several datasets; empty with one, so that the single-dataset
    log reads as it did."""
    if len(datasets) < 2:
        return ""
    return " (" + ", ".join(f"{d.label} {fmt.format(v)}" for d, v in zip(datasets, values)) + ")"


def centre_bias_ll(prior, samples):
    """Mean log-likelihood (bits/fixation, relative to uniform) of a prior at model resolution."""
    total, count = 0.0, 0
    maps = {}
    for s in samples:
        if s.size not in maps:
            maps[s.size] = centre_bias_log_density(prior, s.size)
        ld = maps[s.size]
        total += float(np.sum(ld[s.rows, s.cols] + np.log(ld.size)))
        count += len(s.rows)
    return total / count / LN2


def feature_statistics(samples):
    """Per-channel mean and std of the training features (over all positions)."""
    flat = np.concatenate([s.features.reshape(-1, s.features.shape[-1]) for s in samples]).astype(np.float64)
    mean = flat.mean(axis=0)
    std = flat.std(axis=0)
    return mean.astype(np.float32), np.maximum(std, 1e-3).astype(np.float32)


def val_report(head, samples, fixations, sizes, prior, dataset_dir, *, batch_size=8):
    """Full val metrics at stimulus resolution from cached features (as ``gazecrop.tools.evaluate``)."""
    from gazecrop.tools import metrics
    from gazecrop.tools.evaluate import empirical_map
    from gazecrop.model.saliency import resize_log_density

    ig, nss, auc, cc = [], [], [], []
    for batch in batches(samples, batch_size, np.random.default_rng(0)):
        lds = np.asarray(head(np.stack([s.features for s in batch]).astype(np.float32), training=False))
        for s, ld in zip(batch, lds):
            shape = sizes[s.name]
            ld = resize_log_density(ld, shape)
            rows, cols = fixations[s.name].int_coords(*shape)
            base = centre_bias_log_density(prior, shape)
            density = np.exp(ld.astype(np.float64))
            ig.append(metrics.information_gain(ld, base, rows, cols))
            nss.append(metrics.nss(density, rows, cols))
            auc.append(metrics.auc_judd(density, rows, cols))
            cc.append(metrics.cc(density, empirical_map(dataset_dir, s.name, rows, cols, shape)[0]))
    return {"IG": float(np.mean(np.concatenate(ig))), "NSS": float(np.mean(np.concatenate(nss))),
            "AUC": float(np.mean(auc)), "CC": float(np.mean(cc))}


class DatasetData(NamedTuple):
    """One dataset's splits, their fixations and stimulus sizes, and its samples."""
    dir: Path
    label: str
    train_names: list
    val_names: list
    fixations: dict
    sizes: dict
    train_samples: list
    val_samples: list


class TrainingData(NamedTuple):
    """What ``load_data`` gathers: one ``DatasetData`` per ``--dataset``; training runs on all their
    train samples together, val is scored per dataset."""
    datasets: list

    @property
    def train_samples(self):
        return [s for d in self.datasets for s in d.train_samples]

    @property
    def train_images(self):
        return sum(len(d.train_names) for d in self.datasets)


def train(args, log=print):
    """Steps: ``load_data`` -> ``choose_centre_bias`` -> ``build_head`` -> ``fit`` (``train_epoch``,
    ``val_log_likelihood`` per epoch) -> ``val_report`` -> ``save_model``. Returns the best epoch's
    ``(val LL, epoch, layer weights)``."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(args.seed)
    tf.config.experimental.enable_op_determinism()
    data = load_data(args, log)
    cb_ll, bandwidth, prior, cb_per_dataset = choose_centre_bias(data.datasets, args.centre_bias_grid, log)
    head, config = build_head(args, data.train_samples, prior)
    log(f"centre bias alone: val log-likelihood {cb_ll:.4f} bits/fixation "
        f"(bandwidth {bandwidth})")
    best = fit(head, args, data, cb_per_dataset, log)
    log(f"best epoch {best[1]}: val LL {best[0]:.4f}, IG over centre bias {best[0] - cb_ll:+.4f} "
        f"bits/fixation (model resolution)"
        + per_dataset_text(data.datasets, np.subtract(best[3], cb_per_dataset), "{:+.4f}"))
    reports = {}
    for d in data.datasets:
        reports[d.label] = val_report(head, d.val_samples, d.fixations, d.sizes, prior, d.dir)
        log(f"val at stimulus resolution{f' ({d.label})' if len(data.datasets) > 1 else ''}: "
            + "  ".join(f"{k} {v:.4f}" for k, v in reports[d.label].items()))
    save_model(head, config, args, training_metadata(head, args, data, best, cb_ll, bandwidth, reports))
    log(f"wrote {args.output}")
    return best


def training_metadata(head, args, data, best, cb_ll, bandwidth, reports):
    """What the readout file records about its training: the best epoch, its val metrics (those of
    the first dataset under ``val_stimulus_res``, every dataset's under ``val_stimulus_res_by_dataset``
    when there are several), the learnt blur and centre-bias weight, and the command."""
    first = reports[data.datasets[0].label]
    metadata = {
        "best_epoch": best[1], "val_ll_bits": round(best[0], 5),
        "val_ig_model_res_bits": round(best[0] - cb_ll, 5),
        "val_stimulus_res": {k: round(v, 5) for k, v in first.items()},
        "blur_sigma_px": float(np.exp(head.get_layer("blur").log_sigma.numpy())),
        "centre_bias_weight": float(head.get_layer("centre_bias").weight.numpy()),
        "centre_bias_bandwidth": bandwidth, "train_images": data.train_images,
        "flips": bool(args.flips), "command": "python -m gazecrop.tools.train " + " ".join(args.argv)}
    if len(data.datasets) > 1:
        metadata["datasets"] = [d.label for d in data.datasets]
        metadata["val_stimulus_res_by_dataset"] = {
            label: {k: round(v, 5) for k, v in r.items()} for label, r in reports.items()}
    return metadata


def load_data(args, log) -> TrainingData:
    """Each ``--dataset``'s data (``load_dataset``), sharing one body for the feature cache."""
    labels = dataset_labels(args.dataset)
    cache = FeatureCache(args.cache_dir, backbone=args.backbone, short_side=args.short_side)
    return TrainingData([load_dataset(cache, d, label, args, log) for d, label in zip(args.dataset, labels)])


def dataset_labels(dataset_dirs):
    """A short name for each dataset folder (its name): they key samples, the feature and size caches
    and the log, so two folders of the same name are refused."""
    labels = [dataset_label(d) for d in dataset_dirs]
    if len(set(labels)) < len(labels):
        raise ValueError("dataset folders must have distinct names. "
                         f"Received: --dataset {' '.join(map(str, dataset_dirs))}")
    return labels


def load_dataset(cache, dataset_dir, label, args, log) -> DatasetData:
    """One dataset's train and val splits (train cut to ``--max-train``), their body features (computed
    into the cache where missing), fixations and sizes, as ``Sample``s (train mirrored too with ``--flips``)."""
    features = tuple(args.features)
    cache = cache.for_dataset(dataset_dir)
    train_names = read_split(dataset_dir, "train")
    if args.max_train:
        train_names = train_names[: args.max_train]
    val_names = read_split(dataset_dir, "val")
    cache.fill(dataset_dir, val_names, flips=False, log=log)
    cache.fill(dataset_dir, train_names, flips=args.flips, log=log)
    fixations = read_fixations(dataset_dir)
    sizes = image_sizes(dataset_dir, train_names + val_names, args.cache_dir)

    log(f"loading cached features of {label} …")
    train_samples = make_samples(cache, train_names, fixations, sizes, features, flips=args.flips, dataset=label)
    val_samples = make_samples(cache, val_names, fixations, sizes, features, flips=False, dataset=label)
    log(f"{label}: {len(train_samples)} training samples ({len(train_names)} images"
        f"{', mirrored too' if args.flips else ''}), {len(val_samples)} val images")
    return DatasetData(Path(dataset_dir), label, train_names, val_names, fixations, sizes,
                       train_samples, val_samples)


def build_head(args, train_samples, prior):
    """The readout network on cached features, initialised: feature normalisation from (up to 400 of)
    the training samples, the fitted centre-bias ``prior``; blur width and centre-bias weight frozen
    unless learnt. Returns ``(head, config)``, config being what ``loading.save_readout`` records."""
    config = {"body": "vgg16", "backbone": args.backbone, "features": list(args.features),
              "short_side": args.short_side, "centre_bias_grid": args.centre_bias_grid}
    head = network.deepgaze_head(channels=train_samples[0].features.shape[-1],
                                 short_side=args.short_side,
                                 centre_bias_grid=args.centre_bias_grid, dropout=args.dropout)
    config["blur_kernel_size"] = head.get_layer("blur").kernel_size
    mean, std = feature_statistics(train_samples[:: max(1, len(train_samples) // 400)])
    head.get_layer("readout_norm").mean.assign(mean)
    head.get_layer("readout_norm").std.assign(std)
    head.get_layer("centre_bias").log_prior.assign(prior)
    if not args.learn_blur:
        head.get_layer("blur").log_sigma.trainable = False
    if not args.learn_centre_bias:
        head.get_layer("centre_bias").weight.trainable = False
    return head, config


def compiled_steps(head, args, n_train):
    """``(train_step, log_likelihood_sum)``: one AdamW step on a batch (the learning rate halved every
    10 epochs; the loss is the fixations' mean negative log-density), and a batch's summed log-density
    at the fixations, both as ``tf.function``s."""
    import keras
    import tensorflow as tf

    schedule = keras.optimizers.schedules.ExponentialDecay(
        args.lr, decay_steps=max(1, n_train // args.batch_size) * 10, decay_rate=0.5)
    optimizer = keras.optimizers.AdamW(schedule, weight_decay=args.weight_decay)
    # Decay only the readout kernels, not biases, the blur width or the centre-bias weight.
    optimizer.exclude_from_weight_decay(var_names=["bias", "log_sigma", "weight"])
    variables = head.trainable_variables

    @tf.function(reduce_retracing=True)
    def train_step(feats, counts):
        with tf.GradientTape() as tape:
            ld = head(feats, training=True)
            loss = -tf.reduce_sum(counts * ld) / tf.reduce_sum(counts)
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    @tf.function(reduce_retracing=True)
    def log_likelihood_sum(feats, counts):
        ld = head(feats, training=False)
        return tf.reduce_sum(counts * ld)

    return train_step, log_likelihood_sum


def stack(batch):
    """A batch's features (float32) and fixation counts, stacked."""
    return (np.stack([s.features for s in batch]).astype(np.float32), np.stack([s.counts() for s in batch]))


def uniform_log_likelihood(batch):
    """Minus the summed log-likelihood of a batch's fixations under the uniform density (nats)."""
    return float(sum(len(s.rows) * np.log(s.size[0] * s.size[1]) for s in batch))


def train_epoch(samples, batch_size, rng, train_step):
    """One pass over the shuffled samples; their mean log-likelihood in bits/fixation relative to
    uniform, as the batches were trained."""
    losses, counts_seen = 0.0, 0
    for batch in batches(samples, batch_size, rng):
        feats, counts = stack(batch)
        n = float(counts.sum())
        losses += float(train_step(feats, counts)) * n - uniform_log_likelihood(batch)
        counts_seen += n
    return -losses / counts_seen / LN2


def val_log_likelihood(samples, batch_size, log_likelihood_sum):
    """Mean log-likelihood in bits/fixation relative to uniform, at model resolution."""
    total, count = 0.0, 0
    for batch in batches(samples, batch_size, np.random.default_rng(0)):
        feats, counts = stack(batch)
        total += float(log_likelihood_sum(feats, counts))
        total += uniform_log_likelihood(batch)
        count += int(counts.sum())
    return total / count / LN2


def fit(model, args, data: TrainingData, cb_per_dataset, log, *, steps=None, head=None, start_label=None):
    """Trains ``model`` for up to ``--epochs``, stopping after ``--patience`` epochs without a val gain,
    and leaves it with the best epoch's weights. The val criterion is the mean over datasets of each
    one's val LL (so of its IG over the centre bias). Returns ``(val LL, epoch, weights, val LL per
    dataset)`` of the best epoch.

    ``steps``: ``(train_step, log_likelihood_sum)``, by default ``compiled_steps(model, ...)``; ``head``: the
    ``deepgaze_head`` whose blur and centre-bias weight the epoch lines print (default ``model`` itself);
    ``start_label``: score ``model`` as it is before training, as epoch 0 so labelled, so that training that
    never improves on a starting model keeps it (``gazecrop.tools.tune``).
    """
    rng = np.random.default_rng(args.seed)
    train_samples = data.train_samples
    train_step, log_likelihood_sum = steps or compiled_steps(model, args, len(train_samples))
    head = model if head is None else head
    cb_ll = float(np.mean(cb_per_dataset))

    def val():
        return [val_log_likelihood(d.val_samples, args.batch_size, log_likelihood_sum) for d in data.datasets]

    def ig_text(per_dataset):
        return per_dataset_text(data.datasets, np.subtract(per_dataset, cb_per_dataset), "{:+.4f}")

    best = (-np.inf, 0, None, None)
    if start_label is not None:
        per_dataset = val()
        best = (float(np.mean(per_dataset)), 0, model.get_weights(), per_dataset)
        log(f"epoch   0 ({start_label})  val IG {best[0] - cb_ll:+.4f}{ig_text(per_dataset)} bits/fix")
    stale = 0
    for epoch in range(1, args.epochs + 1):
        start = time.time()
        train_ll = train_epoch(train_samples, args.batch_size, rng, train_step)
        per_dataset = val()
        ll = float(np.mean(per_dataset))
        improved = ll > best[0] + 1e-4
        log(epoch_line(head, epoch, train_ll, ll, cb_ll, time.time() - start, improved, ig_text(per_dataset)))
        if improved:
            best = (ll, epoch, model.get_weights(), per_dataset)
            stale = 0
        else:
            stale += 1
            if stale >= args.patience:
                log(f"early stop: no val improvement for {args.patience} epochs")
                break
    model.set_weights(best[2])
    return best


def epoch_line(head, epoch, train_ll, ll, cb_ll, seconds, improved, ig_text=""):
    """The progress line of one epoch: likelihoods, information gain (per dataset too, ``ig_text``), the
    learnt blur and centre-bias weight."""
    sigma = float(np.exp(head.get_layer("blur").log_sigma.numpy()))
    cb_weight = float(head.get_layer("centre_bias").weight.numpy())
    return (f"epoch {epoch:3d}  train LL {train_ll:.4f}  val LL {ll:.4f}  "
            f"val IG {ll - cb_ll:+.4f}{ig_text} bits/fix  blur sigma {sigma:.1f} px  "
            f"centre-bias weight {cb_weight:.2f}  {seconds:.1f} s"
            f"{'  *' if improved else ''}")


def save_model(head, config, args, metadata):
    """Copies the trained layers into the full network and writes the readout file ``--output`` (with the face
    prior in its config unless ``--no-face-prior``)."""
    if args.face_prior:
        config = {**config, faces.FACE_PRIOR_KEY: dict(faces.DEFAULT_FACE_PRIOR)}
    full = network.deepgaze(**loading.network_kwargs(config))
    for layer in loading.readout_layers(full):
        layer.set_weights(head.get_layer(layer.name).get_weights())
    loading.save_readout(full, config, args.output, metadata=metadata)


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m gazecrop.tools.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", type=Path, nargs="+", default=list(BUNDLED_DATASETS),
                   help="one or more folders, each with stimuli/, fixations.csv, splits/train.txt and val.txt: "
                        "trains on the union of their train splits, chooses on the mean over their val splits "
                        f"(default: {' '.join(str(d) for d in BUNDLED_DATASETS)})")
    p.add_argument("--cache-dir", type=Path, default=default_cache_dir(),
                   help="feature cache, outside the repo (default: $GAZECROP_CACHE or %(default)s)")
    p.add_argument("--output", type=Path, default=loading.BUNDLED["default"],
                   help="readout weights file to write (default: %(default)s)")
    p.add_argument("--backbone", choices=loading.BACKBONES, default="hed")
    p.add_argument("--short-side", type=int, default=224, help="input short side in pixels")
    p.add_argument("--features", nargs="+", default=["block4_pool", "block5_conv3"],
                   choices=CACHED_LAYERS, help="body layers the readout reads")
    p.add_argument("--flips", action=argparse.BooleanOptionalAction, default=True,
                   help="also train on mirrored images (default: on, as the bundled model; on MIT1003 alone they did "
                        "not help, see model/README.md)")
    p.add_argument("--face-prior", action=argparse.BooleanOptionalAction, default=True,
                   help="record the face prior (gazecrop.model.faces.DEFAULT_FACE_PRIOR) in the written file, as the "
                        "bundled model (default: on; it is applied at prediction, not in training)")
    p.add_argument("--fixed-blur", dest="learn_blur", action="store_false",
                   help="keep the blur width at its initial value")
    p.add_argument("--fixed-centre-bias", dest="learn_centre_bias", action="store_false",
                   help="keep the centre-bias weight at 1")
    p.add_argument("--centre-bias-grid", type=int, default=64)
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--patience", type=int, default=6, help="early-stopping patience in epochs")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-3, help="AdamW learning rate (halved every 10 epochs)")
    p.add_argument("--dropout", type=float, default=0.3,
                   help="share of feature channels dropped while training (default: %(default)s)")
    p.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay")
    p.add_argument("--max-train", type=int, default=0, help="use only the first N training images")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    args.argv = list(argv)
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    train(parse_args(argv))


if __name__ == "__main__":
    main()
