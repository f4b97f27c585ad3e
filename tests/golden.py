"""Golden outputs: the crops and metadata rows of a fixed set of fixture photos, as digests.

`gazecrop run` (the installed command, in a subprocess) crops a copy of the photos below with the bundled
default model and the fast model; `digest` reduces the output folder to one JSON object: the SHA-256 of
every crop file by its path under the output root, and every metadata row with the input and output
roots replaced by `IN` and `OUT` (`processed_at` left out: it is the only column that changes between
reruns). The manifest committed in tests/data/golden_outputs.json was made before the code moved into
the `gazecrop` package (issue 15); tests/test_golden.py checks that today's code gives the same bytes.

    python tests/golden.py --write   # remake the manifest (only when a change is meant to alter crops)
    python tests/golden.py           # compare, print the differences, exit 1 on any
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "data" / "golden_outputs.json"
FIXTURES = Path(os.environ.get("GAZECROP_SHARED", HERE.parent.parent / "shared")) / "data" / "fixtures"

# Real photos of the kinds users crop (landscape, portrait, people, animals, EXIF-rotated, CMYK, gray,
# alpha), small enough that the real model crops them all in well under a minute on 2 cores.
PHOTOS = [
    "kodak/kodim04.png", "kodak/kodim05.png", "kodak/kodim14.png", "kodak/kodim23.png",
    "skimage/astronaut.png", "skimage/chelsea.png", "skimage/coffee.png",
    "people_portrait/800px-Christophe_Henner_-_June_2016.jpg",
    "people_portrait/Giunchedi__Filippo_January_2015_01-cmyk-orientation-exif.jpg",
    "exif_orientation/Portrait_6.jpg",
    "edge_cases/pillow_hopper_gray.jpg",
    "alpha_png/sharp_embedgravitybird.png",
]
FIXED_MTIME = 1_700_000_000  # 2023-11-14T22:13:20Z
RUNS = {
    "default": ["--model", "default", "--aspect_ratios", "1:1,16:9,4:5,9:16", "--candidates", "2"],
    "fast": ["--model", "fast", "--aspect_ratios", "1:1,16:9", "--output_format", "png"],
}


def copy_photos(into: Path) -> None:
    for relpath in PHOTOS:
        target = into / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(FIXTURES / relpath, target)
        # source_modified is compared, so every copy gets the same mtime wherever ../shared came from
        os.utime(target, (FIXED_MTIME, FIXED_MTIME))


def run(name: str, workdir: Path) -> dict:
    inputs, output = workdir / f"in-{name}", workdir / f"out-{name}"
    copy_photos(inputs)
    command = ["gazecrop", "run", "--input", f"{inputs}/**", "--output", str(output),
               *RUNS[name]]
    gazecrop = Path(sys.executable).with_name("gazecrop")
    command[0] = str(gazecrop) if gazecrop.exists() else command[0]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, cwd=workdir)
    return digest(inputs, output)


def digest(inputs: Path, output: Path) -> dict:
    def relative(text):
        return text.replace(str(inputs), "IN").replace(str(output), "OUT") if isinstance(text, str) else text

    crops = {str(path.relative_to(output)): hashlib.sha256(path.read_bytes()).hexdigest()
             for path in sorted(output.rglob("*"))
             if path.is_file() and path.parts[len(output.parts)] not in ("metadata", "errors")
             and path.suffix != ".html"}
    rows = pq.read_table(output / "metadata").to_pylist()
    rows = [{key: (value.isoformat() if hasattr(value, "isoformat") else relative(value))
             for key, value in row.items() if key != "processed_at"} for row in rows]
    rows.sort(key=lambda row: (row["source_uri"], row["aspect_ratio"], row["rank"]))
    errors = pq.read_table(output / "errors").num_rows
    return {"crops": crops, "metadata": rows, "error_rows": errors}


def differences(expected: dict, actual: dict) -> list[str]:
    found = []
    for name in sorted(set(expected) | set(actual)):
        want, got = expected.get(name, {}), actual.get(name, {})
        for path in sorted(set(want.get("crops", {})) | set(got.get("crops", {}))):
            if want.get("crops", {}).get(path) != got.get("crops", {}).get(path):
                found.append(f"{name}: crop {path}: {want.get('crops', {}).get(path)} -> "
                             f"{got.get('crops', {}).get(path)}")
        for before, after in zip(want.get("metadata", []), got.get("metadata", [])):
            if before != after:
                changed = {k: (before.get(k), after.get(k)) for k in set(before) | set(after)
                           if before.get(k) != after.get(k)}
                found.append(f"{name}: row {before.get('source_uri')} {before.get('aspect_ratio')}: {changed}")
        if len(want.get("metadata", [])) != len(got.get("metadata", [])):
            found.append(f"{name}: {len(want.get('metadata', []))} rows -> {len(got.get('metadata', []))}")
        if want.get("error_rows") != got.get("error_rows"):
            found.append(f"{name}: error rows {want.get('error_rows')} -> {got.get('error_rows')}")
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="remake the manifest instead of comparing")
    args = parser.parse_args(argv)
    # A fixed folder, not a random one: output names carry a hash of the source URI.
    workdir = Path(tempfile.gettempdir()) / "gazecrop-golden"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir()
    try:
        actual = {name: run(name, workdir) for name in RUNS}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.write:
        MANIFEST.parent.mkdir(exist_ok=True)
        MANIFEST.write_text(json.dumps(actual, indent=1, sort_keys=True) + "\n")
        print(f"wrote {MANIFEST}: {sum(len(v['crops']) for v in actual.values())} files, "
              f"{sum(len(v['metadata']) for v in actual.values())} rows")
        return 0
    found = differences(json.loads(MANIFEST.read_text()), actual)
    print("\n".join(found) if found else "outputs identical to the manifest")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
