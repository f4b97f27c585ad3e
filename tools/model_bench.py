"""Speed of the models alone: ``python -m gazecrop.tools.model_bench``.

For each model (``--model``, repeatable; default the full model and the fast one, in one run so
they share the machine's load) and each input size it is offered — square, 4:3 landscape and 3:4
portrait sources, as ``input_size`` maps them, at the model's short side or at each of
``--short-sides`` — prints images/s at batch sizes 1, 8 and 16, the multiply-adds per image, and
the share of the time spent outside the body: the readout, upsampling, blur, centre bias and
softmax, timed on their own on body-sized features and divided by the whole model's time. Each
figure is the best of ``--repeats`` timed runs (more, up to one second of runs, for fast models)
after one warm-up run, which keeps other processes' load out of it as far as possible.

A head-to-head summary follows: per model, for a square source at its own short side (224×224
for the full model, 128×128 for the fast one), parameters, G multiply-adds per image, images/s at
the smallest and largest batch, and the speed-up over the first model. There the models are timed
in turn, round after round (each for at least ``SLOT_SECONDS`` a round, best call kept), so that
the load of other processes on a shared machine falls on all of them alike.
"""

import argparse
import sys
import time

import numpy as np


def best_time(fn, x, repeats, min_seconds=1.0):
    """Fastest of at least ``repeats`` timed runs and at least ``min_seconds`` of runs (so a
    model that takes milliseconds is timed often enough to find a quiet moment)."""
    fn(x)  # warm-up: traces the graph for this shape
    times = []
    while len(times) < repeats or sum(times) < min_seconds:
        start = time.perf_counter()
        np.asarray(fn(x))
        times.append(time.perf_counter() - start)
    return min(times)


def head_of(model):
    """The model minus its body (readout … softmax), with the trained weights, and its input layers."""
    from gazecrop.model import network

    km = model.keras_model
    config = model.config
    channels = km.get_layer("readout_norm").mean.shape[0]
    head = network.deepgaze_head(channels=channels, short_side=model.short_side,
                                 blur_kernel_size=config.get("blur_kernel_size"),
                                 centre_bias_grid=config.get("centre_bias_grid", 64))
    for layer in head.layers:
        if layer.weights:
            layer.set_weights(km.get_layer(layer.name).get_weights())
    return head, channels


def multiply_adds(model, height, width):
    """Multiply-adds per image at input (height, width): every convolution (body, readout,
    transposed upsampling) plus the blur's two matrix products; the other ops are negligible."""
    import keras

    km = model.keras_model
    convs = [l for l in km.layers if isinstance(l, (keras.layers.Conv2D, keras.layers.Conv2DTranspose))]
    probe = keras.Model(km.input, [l.output for l in convs])
    total = 0
    for layer, out in zip(convs, probe(np.zeros((1, height, width, 3), np.float32))):
        kh, kw = layer.kernel.shape[:2]
        if isinstance(layer, keras.layers.Conv2DTranspose):
            # Each input cell scatters a kh×kw patch: input cells = (out - k) / stride + 1.
            cells = np.prod([(o - k) // s + 1 for o, k, s in zip(out.shape[1:3], (kh, kw), layer.strides)])
        else:
            cells = out.shape[1] * out.shape[2]
        total += int(cells) * kh * kw * layer.kernel.shape[2] * layer.kernel.shape[3]
    return total + height * height * width + height * width * width


#: Seconds each model runs per round in ``head_to_head``.
SLOT_SECONDS = 0.5


def head_to_head(models, batch_sizes, rounds):
    """{(model name, batch): images/s} on a square input at each model's short side, the models
    timed in turn for ``rounds`` rounds; each figure is the fastest call."""
    rng = np.random.default_rng(0)
    inputs = {(m.name, b): rng.uniform(0, 255, (b, m.short_side, m.short_side, 3)).astype(np.float32)
              for m in models for b in batch_sizes}
    best = {}
    for m in models:
        for b in batch_sizes:
            m.predict(inputs[m.name, b])  # warm-up
    for _ in range(rounds):
        for b in batch_sizes:
            for m in models:
                x, slot_start = inputs[m.name, b], time.perf_counter()
                while True:
                    start = time.perf_counter()
                    m.predict(x)
                    t = time.perf_counter() - start
                    best[m.name, b] = min(best.get((m.name, b), np.inf), t)
                    if time.perf_counter() - slot_start >= SLOT_SECONDS:
                        break
    return {key: key[1] / t for key, t in best.items()}


def bench(model, sizes, batch_sizes, repeats, log=print):
    import tensorflow as tf

    head, channels = head_of(model)
    head_fn = tf.function(lambda f: head(f, training=False), reduce_retracing=True)
    rows = []
    rng = np.random.default_rng(0)
    for h, w in sizes:
        for b in batch_sizes:
            x = rng.uniform(0, 255, (b, h, w, 3)).astype(np.float32)
            feats = rng.standard_normal((b, h // 16, w // 16, channels)).astype(np.float32)
            t_model = best_time(model.predict, x, repeats)
            t_head = best_time(head_fn, feats, repeats)
            row = {"model": model.name, "size": f"{h}x{w}", "batch": b,
                   "images_per_s": b / t_model, "ms_per_image": 1000 * t_model / b,
                   "outside_body_share": t_head / t_model, "gmac": multiply_adds(model, h, w) / 1e9}
            log(f"| {model.name} | {h}×{w} | {b} | {row['images_per_s']:.2f} | "
                f"{row['ms_per_image']:.1f} | {row['gmac']:.2f} | {100 * row['outside_body_share']:.1f}% |")
            rows.append(row)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m gazecrop.tools.model_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append",
                   help="'default', 'fast', 'tiny' or a weights file; repeatable "
                        "(default: default and fast)")
    p.add_argument("--short-sides", type=int, nargs="+",
                   help="input short sides to time (default: the model's own); the model is "
                        "fully convolutional, so its speed at another size is measured as is")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 16])
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)

    import tensorflow as tf

    from gazecrop.model import load_model
    from gazecrop.model.loading import input_size

    print(f"TensorFlow {tf.__version__}, {tf.config.threading.get_inter_op_parallelism_threads() or 'auto'} "
          f"inter-op threads, devices: {[d.device_type for d in tf.config.list_physical_devices()]}")
    print("| model | input | batch | images/s | ms/image | GMAC/image | outside body |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    models = []
    for name in args.model or ["default", "fast"]:
        model = load_model(name)
        models.append(model)
        sizes = []
        for short_side in args.short_sides or [model.short_side]:
            for source in [(1000, 1000), (768, 1024), (1024, 768)]:
                if input_size(*source, short_side) not in sizes:
                    sizes.append(input_size(*source, short_side))
        bench(model, sizes, args.batch_sizes, args.repeats)

    low, high = min(args.batch_sizes), max(args.batch_sizes)
    speed = head_to_head(models, sorted({low, high}), max(args.repeats, 3))
    first = models[0].name
    print("\nHead to head: square source, each model at its own short side, timed in turn:\n")
    print(f"| model | version | input | parameters | GMAC/image | images/s, batch {low} | "
          f"images/s, batch {high} | speed-up, batch {low} | speed-up, batch {high} |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for m in models:
        s = m.short_side
        print(f"| {m.name} | {m.version} | {s}×{s} | {m.keras_model.count_params() / 1e6:.2f} M | "
              f"{multiply_adds(m, s, s) / 1e9:.2f} | {speed[m.name, low]:.2f} | {speed[m.name, high]:.2f} | "
              f"{speed[m.name, low] / speed[first, low]:.1f}× | {speed[m.name, high] / speed[first, high]:.1f}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
