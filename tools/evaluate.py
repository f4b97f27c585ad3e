"""Scores the model against human fixations: ``python -m gazecrop.tools.evaluate --dataset DIR``.

DIR holds ``stimuli/`` and ``fixations.csv`` (the layout of ``../shared/data/mit1003``). The
models are scored side by side, each as a log-density at the stimulus resolution:

- the DeepGaze models (``--model``, repeatable: ``--model default --model fast``; default the
  bundled full model), one row each, named by their ``load_model`` spec;
- the centre-bias baseline: the prior stored with the first model (fitted to MIT1003 train fixations in
  normalised coordinates) alone;
- OpenCV-style spectral-residual saliency (Hou & Zhang 2007), made a density by normalising and
  mixing in 5% uniform (only for its information gain; NSS, AUC and CC use the map itself).

Metrics (pysaliency's definitions, see ``tools/metrics.py``): information gain over the centre
bias (bits per fixation) and NSS averaged over fixations; AUC (Judd) and CC averaged over images.
CC compares with ``DIR/fixation_maps/<image stem>.jpg`` where present (MIT1003's benchmark maps),
else with the fixations blurred by a Gaussian of 3.4% of the long side (about one degree).
"""

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from gazecrop.tools import metrics
from gazecrop.tools.data import read_fixations, read_image_list
from gazecrop.model.images import read_image_rgb
from gazecrop.model.predict import predict_images
from gazecrop.model.saliency import centre_bias_log_density

#: Blur of the empirical saliency map when the dataset ships none, as a share of the long side.
FIXATION_MAP_SIGMA = 0.034


def empirical_map(dataset_dir, name, rows, cols, shape):
    path = Path(dataset_dir) / "fixation_maps" / (Path(name).stem + ".jpg")
    if path.is_file():
        m = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if m is not None:
            if m.shape != shape:
                m = cv2.resize(m, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
            return m.astype(np.float64), "dataset"
    sigma = FIXATION_MAP_SIGMA * max(shape)
    return metrics.blurred_fixation_map(rows, cols, shape, sigma), "blurred fixations"


def evaluate(models, dataset_dir, names, *, batch_size=4, log=print):
    """Scores ``models`` (a ``SaliencyModel`` or a list), the centre bias and spectral residual on
    ``names``; returns a dict whose ``results`` are keyed by model name."""
    models_in = list(models) if isinstance(models, (list, tuple)) else [models]
    fixations = read_fixations(dataset_dir)
    missing = [n for n in names if n not in fixations]
    if missing:
        raise ValueError(f"{len(missing)} images have no fixations in {dataset_dir}/fixations.csv, "
                         f"e.g. {missing[:3]}")
    prior = models_in[0].keras_model.get_layer("centre_bias").log_prior.numpy()
    models = tuple(m.name for m in models_in) + ("centre bias", "spectral residual")
    if len(set(models)) != len(models):
        raise ValueError(f"models must have distinct names. Received: {[m.name for m in models_in]}")
    ig = {m: [] for m in models}
    nss = {m: [] for m in models}
    auc = {m: [] for m in models}
    cc = {m: [] for m in models}
    sources = set()
    start = time.time()
    for k in range(0, len(names), batch_size):
        chunk = names[k:k + batch_size]
        images = [read_image_rgb(Path(dataset_dir) / "stimuli" / n) for n in chunk]
        predictions = [predict_images(m, images, batch_size=batch_size) for m in models_in]
        for i, (name, rgb) in enumerate(zip(chunk, images)):
            shape = rgb.shape[:2]
            rows, cols = fixations[name].int_coords(*shape)
            base = centre_bias_log_density(prior, shape)
            sr = metrics.spectral_residual(rgb)
            maps = {m.name: (p[i], np.exp(p[i].astype(np.float64))) for m, p in zip(models_in, predictions)}
            maps["centre bias"] = (base, np.exp(base.astype(np.float64)))
            maps["spectral residual"] = (metrics.saliency_map_to_log_density(sr), sr)
            target, source = empirical_map(dataset_dir, name, rows, cols, shape)
            sources.add(source)
            for m, (log_density, saliency) in maps.items():
                ig[m].append(metrics.information_gain(log_density, base, rows, cols))
                nss[m].append(metrics.nss(saliency, rows, cols))
                auc[m].append(metrics.auc_judd(saliency, rows, cols))
                cc[m].append(metrics.cc(saliency, target))
        log(f"  {min(k + batch_size, len(names))}/{len(names)} images, {time.time() - start:.0f} s")
    results = {m: {"IG": float(np.mean(np.concatenate(ig[m]))),
                   "NSS": float(np.mean(np.concatenate(nss[m]))),
                   "AUC": float(np.nanmean(auc[m])),
                   "CC": float(np.mean(cc[m]))} for m in models}
    return {"results": results, "images": len(names),
            "fixations": int(sum(len(fixations[n]) for n in names)),
            "cc_target": " and ".join(sorted(sources)),
            "models": {m.name: {"version": m.version, "short_side": m.short_side} for m in models_in}}


def format_table(report):
    described = ", ".join(f"{name} (version {m['version']}, short side {m['short_side']})"
                          for name, m in report["models"].items())
    lines = [f"{report['images']} images, {report['fixations']} fixations; models {described}; "
             f"CC against {report['cc_target']} maps",
             "",
             "| model | IG (bits/fix) | NSS | AUC (Judd) | CC |",
             "| --- | --- | --- | --- | --- |"]
    for name, r in report["results"].items():
        lines.append(f"| {name} | {r['IG']:.3f} | {r['NSS']:.3f} | {r['AUC']:.4f} | {r['CC']:.3f} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m gazecrop.tools.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, type=Path, help="folder with stimuli/ and fixations.csv")
    p.add_argument("--images", type=Path,
                   help="text file of image names, one a line (default: every image in fixations.csv)")
    p.add_argument("--model", action="append",
                   help="'default', 'fast', 'tiny' or a weights file; repeatable to compare models "
                        "(default: default)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = p.parse_args(argv)

    from gazecrop.model import load_model

    models = [load_model(spec) for spec in args.model or ["default"]]
    if args.images:
        names = read_image_list(args.images)
    else:
        names = sorted(read_fixations(args.dataset))
    report = evaluate(models, args.dataset, names, batch_size=args.batch_size)
    print(format_table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
