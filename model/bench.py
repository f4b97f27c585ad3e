"""Speed of the model alone: ``python -m model.bench``.

For each model (``--model``, repeatable) and each input size it is offered — square, 4:3
landscape and 3:4 portrait sources, as ``input_size`` maps them, at the model's short side or
at each of ``--short-sides`` — prints images/s at batch sizes
1, 8 and 16, and the share of the time spent outside the VGG16 body: the readout, upsampling,
blur, centre bias and softmax, timed on their own on body-sized features and divided by the
whole model's time. Each figure is the best of ``--repeats`` timed runs after one warm-up run,
which keeps other processes' load out of it as far as possible.
"""

import argparse
import sys
import time

import numpy as np


def best_time(fn, x, repeats):
    fn(x)  # warm-up: traces the graph for this shape
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.asarray(fn(x))
        times.append(time.perf_counter() - start)
    return min(times)


def head_of(model):
    """The model minus its body (readout … softmax), with the trained weights, and its input layers."""
    from model import network

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
                   "outside_body_share": t_head / t_model}
            log(f"| {model.name} | {h}×{w} | {b} | {row['images_per_s']:.2f} | "
                f"{row['ms_per_image']:.0f} | {100 * row['outside_body_share']:.1f}% |")
            rows.append(row)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m model.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append",
                   help="'default', 'tiny' or a readout weights file; repeatable (default: default)")
    p.add_argument("--short-sides", type=int, nargs="+",
                   help="input short sides to time (default: the model's own); the model is "
                        "fully convolutional, so its speed at another size is measured as is")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 16])
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)

    import tensorflow as tf

    from model import load_model
    from model.loading import input_size

    print(f"TensorFlow {tf.__version__}, {tf.config.threading.get_inter_op_parallelism_threads() or 'auto'} "
          f"inter-op threads, devices: {[d.device_type for d in tf.config.list_physical_devices()]}")
    print("| model | input | batch | images/s | ms/image | outside VGG body |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in args.model or ["default"]:
        model = load_model(name)
        sizes = []
        for short_side in args.short_sides or [model.short_side]:
            for source in [(1000, 1000), (768, 1024), (1024, 768)]:
                if input_size(*source, short_side) not in sizes:
                    sizes.append(input_size(*source, short_side))
        bench(model, sizes, args.batch_sizes, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
