"""``gazecrop report ROOT [--output FILE]``: a self-contained HTML contact sheet of a run's crops.

Per source image: the source with its saliency heat map (when the run saved ``ROOT/saliency/``) and
every aspect ratio's crop rectangle drawn in, the crops as thumbnails, and ``saliency_kept`` per crop.
Images come least confident first (lowest ``saliency_kept`` of their main crops): what a person should
review. Failed images are listed from ``ROOT/errors/``. Everything is embedded (``data:`` URIs, inline
CSS), so the file can be mailed or opened offline; every name and value from the tables is escaped.

Steps: ``read_tables`` (Parquet under ROOT) -> ``image_entries`` (group rows by source, order by
confidence) -> ``render_entry`` per image (thumbnails, heat map, rectangles) -> ``render_page``.
All files are read and written through Beam's ``FileSystems`` (local paths, gs://, s3://).
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import html
import io
import sys
from typing import Optional

import cv2
import numpy as np

#: One colour per aspect ratio, in order (CSS); rank > 0 rectangles are dashed.
COLOURS = ("#ff00ff", "#00e5ff", "#ffd400", "#39ff14", "#ff6a00", "#8a5cff", "#ff1744", "#ffffff")

DEFAULT_LIMIT = 200          # images shown (least confident first); the rest are counted
DEFAULT_THUMB = 480          # long side of a source thumbnail, pixels
DEFAULT_CROP_THUMB = 180     # long side of a crop thumbnail, pixels


def _join(root: str, *parts: str) -> str:
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.join(root.rstrip("/"), *parts)


def _read_bytes(uri: str) -> bytes:
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(uri, compression_type="uncompressed") as f:
        return f.read()


def _glob(pattern: str) -> list[str]:
    from apache_beam.io.filesystems import FileSystems

    try:
        result = FileSystems.match([pattern])[0]
    except Exception:  # no match raises on some filesystems
        return []
    return sorted(m.path for m in result.metadata_list)


def read_tables(root: str):
    """(metadata rows, error rows) as lists of dicts from ``ROOT/metadata/*.parquet`` and ``ROOT/errors/``."""
    import pyarrow.parquet as pq

    def rows(name):
        out = []
        for path in _glob(_join(root, name, "*.parquet")):
            out += pq.read_table(io.BytesIO(_read_bytes(path))).to_pylist()
        return out

    return rows("metadata"), rows("errors")


@dataclasses.dataclass
class Entry:
    """One source image of the report."""

    source_uri: str
    width: int
    height: int
    rows: list            # metadata rows, by ratio order then rank
    confidence: float     # lowest saliency_kept of the rank-0 crops


def image_entries(metadata: list) -> list[Entry]:
    """Groups metadata rows by source; least confident first (ties by name)."""
    by_source: dict[str, list] = {}
    for row in metadata:
        by_source.setdefault(row["source_uri"], []).append(row)
    entries = []
    for uri, rows in by_source.items():
        rows.sort(key=lambda r: (_ratio_key(r["aspect_ratio"]), int(r.get("rank") or 0)))
        main = [float(r["saliency_kept"]) for r in rows if int(r.get("rank") or 0) == 0] or [0.0]
        entries.append(Entry(uri, int(rows[0]["source_width"]), int(rows[0]["source_height"]), rows,
                             min(main)))
    entries.sort(key=lambda e: (e.confidence, e.source_uri))
    return entries


def _ratio_key(label: str):
    try:
        a, b = (int(v) for v in str(label).split(":"))
        return (0, -a / b, str(label))
    except ValueError:
        return (1, 0.0, str(label))


# ----------------------------------------------------------------------------------------------
# Pictures
# ----------------------------------------------------------------------------------------------

def _decode(data: bytes, long_side: int, full_size=None) -> Optional[np.ndarray]:
    """BGR image (EXIF orientation applied) shrunk to ``long_side``; reduced decoding for big JPEGs."""
    flags = cv2.IMREAD_COLOR
    if full_size is not None:
        factor = max(full_size) / max(long_side, 1)
        for reduced, flag in ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
                              (2, cv2.IMREAD_REDUCED_COLOR_2)):
            if factor >= reduced:
                flags = flag
                break
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if image is None or image.size == 0:
        return None
    scale = min(1.0, long_side / max(image.shape[:2]))
    if scale < 1.0:
        size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return image


def _data_uri(image: np.ndarray, quality=82) -> str:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def heat_overlay(bgr: np.ndarray, log_density: np.ndarray, strength=0.6) -> np.ndarray:
    """The image darkened and tinted by its density (colour map INFERNO), same size as ``bgr``."""
    h, w = bgr.shape[:2]
    ld = np.asarray(log_density, dtype=np.float64)
    ld = np.where(np.isfinite(ld), ld, -np.inf)
    density = np.exp(ld - ld.max()) if np.isfinite(ld.max()) else np.zeros_like(ld)
    density = cv2.resize(density.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    level = np.clip(density / max(float(density.max()), 1e-12), 0, 1)
    colour = cv2.applyColorMap((level * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)
    alpha = (strength * np.sqrt(level))[..., None]
    base = (bgr.astype(np.float32) * 0.55)
    return np.clip(base * (1 - alpha) + colour.astype(np.float32) * alpha, 0, 255).astype(np.uint8)


def _saliency_uri(root: str, entry: Entry) -> Optional[str]:
    """``ROOT/saliency/<relpath>.npy`` for the entry, found from its crops' output URIs."""
    from transforms.write import relpath_of_output  # the write stage's naming rule, inverted

    for row in entry.rows:
        try:
            rel = relpath_of_output(root, str(row.get("output_uri") or ""), int(row.get("rank") or 0))
        except (ValueError, IndexError):
            continue
        uri = _join(root, "saliency", rel + ".npy")
        if _glob(uri):
            return uri
    return None


# ----------------------------------------------------------------------------------------------
# HTML
# ----------------------------------------------------------------------------------------------

def _e(value) -> str:
    return html.escape(str(value), quote=True)


def render_entry(root: str, entry: Entry, colours: dict, *, thumb=DEFAULT_THUMB,
                 crop_thumb=DEFAULT_CROP_THUMB) -> str:
    notes = []
    source = None
    w, h = entry.width, entry.height
    scale = min(1.0, thumb / max(w, h, 1))
    tw, th = max(1, round(w * scale)), max(1, round(h * scale))
    try:
        source = _decode(_read_bytes(entry.source_uri), thumb, (entry.width, entry.height))
        if source is None:
            notes.append("source could not be decoded")
    except Exception as e:  # missing or unreadable source: the report still lists its crops
        notes.append(f"source unreadable: {type(e).__name__}: {e}")
    if source is not None:
        # The rectangles are drawn in source coordinates over a thumbnail of the source's shape.
        source = cv2.resize(source, (tw, th), interpolation=cv2.INTER_AREA)
        saliency = _saliency_uri(root, entry)
        if saliency:
            try:
                source = heat_overlay(source, np.load(io.BytesIO(_read_bytes(saliency))))
            except Exception as e:
                notes.append(f"saliency map unreadable: {type(e).__name__}")
        else:
            notes.append("no saliency map saved (run with --save_saliency to see it)")
    stroke = max(2.0, max(w, h) / 200)
    shapes = []
    for row in entry.rows:
        colour = colours.get(row["aspect_ratio"], "#ffffff")
        rank = int(row.get("rank") or 0)
        dash = f' stroke-dasharray="{stroke * 4:.1f} {stroke * 3:.1f}"' if rank else ""
        shapes.append(
            f'<rect x="{int(row["crop_x"])}" y="{int(row["crop_y"])}" width="{int(row["crop_width"])}" '
            f'height="{int(row["crop_height"])}" fill="none" stroke="{_e(colour)}" '
            f'stroke-width="{stroke:.1f}"{dash}><title>{_e(row["aspect_ratio"])} rank {rank}: '
            f'saliency_kept {float(row["saliency_kept"]):.3f}</title></rect>')
    focal = entry.rows[0]
    if focal.get("focal_x") is not None and focal.get("focal_y") is not None:
        r = stroke * 3
        shapes.append(f'<circle cx="{int(focal["focal_x"])}" cy="{int(focal["focal_y"])}" r="{r:.1f}" '
                      f'fill="none" stroke="#ffffff" stroke-width="{stroke:.1f}"><title>focal point'
                      f'</title></circle>')
    if source is not None:
        picture = (f'<img class="source" src="{_data_uri(source)}" alt="{_e(entry.source_uri)}" '
                   f'width="{source.shape[1]}" height="{source.shape[0]}">')
    else:
        picture = f'<div class="missing" style="width:{tw}px;height:{th}px"></div>'
    overlay = (f'<svg class="boxes" viewBox="0 0 {w} {h}" preserveAspectRatio="none" '
               f'xmlns="http://www.w3.org/2000/svg">{"".join(shapes)}</svg>')
    crops = []
    for row in entry.rows:
        colour = colours.get(row["aspect_ratio"], "#ffffff")
        rank = int(row.get("rank") or 0)
        label = f'{_e(row["aspect_ratio"])}' + (f" #{rank + 1}" if rank else "")
        try:
            crop = _decode(_read_bytes(str(row["output_uri"])), crop_thumb,
                           (int(row.get("output_width") or 0), int(row.get("output_height") or 0)))
            img = (f'<img class="crop" src="{_data_uri(crop)}" alt="{label} crop" '
                   f'width="{crop.shape[1]}" height="{crop.shape[0]}">' if crop is not None
                   else '<div class="nocrop">crop not decodable</div>')
        except Exception as e:
            img = f'<div class="nocrop">crop missing: {_e(type(e).__name__)}</div>'
        crops.append(
            f'<figure style="border-color:{_e(colour)}">{img}<figcaption><b>{label}</b> '
            f'kept <span class="kept">{float(row["saliency_kept"]):.3f}</span><br>'
            f'{int(row["crop_width"])}&times;{int(row["crop_height"])} at '
            f'({int(row["crop_x"])}, {int(row["crop_y"])})</figcaption></figure>')
    note = "".join(f'<p class="note">{_e(n)}</p>' for n in notes)
    return (f'<section class="entry" data-confidence="{entry.confidence:.6f}">'
            f'<h2>{_e(entry.source_uri)}</h2>'
            f'<p class="meta">{w}&times;{h} px &middot; least kept {entry.confidence:.3f} &middot; model '
            f'{_e(entry.rows[0].get("model_version", ""))}</p>{note}'
            f'<div class="row"><div class="frame">{picture}{overlay}</div>'
            f'<div class="crops">{"".join(crops)}</div></div></section>')


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:16px;background:#1e1f22;color:#e8e8e8}
h1{font-size:20px}h2{font-size:15px;margin:0 0 2px;word-break:break-all}
.entry{background:#2b2d31;border-radius:6px;padding:12px;margin:0 0 16px}
.meta,.note{margin:0 0 8px;color:#b0b3b8}.note{color:#ffb74d}
.row{display:flex;gap:16px;align-items:flex-start;flex-wrap:wrap}
.frame{position:relative;line-height:0}.frame .boxes{position:absolute;left:0;top:0;width:100%;height:100%}
.missing{background:repeating-linear-gradient(45deg,#444 0 8px,#333 8px 16px)}
.crops{display:flex;flex-wrap:wrap;gap:10px}
figure{margin:0;border:3px solid;border-radius:4px;padding:4px;background:#111}
figcaption{line-height:1.3;font-size:12px;margin-top:4px}
.nocrop{width:120px;height:80px;color:#ffb74d;font-size:12px}
.legend span{display:inline-block;padding:1px 8px;margin-right:6px;border:3px solid;border-radius:4px}
table{border-collapse:collapse}td,th{border:1px solid #555;padding:3px 6px;text-align:left}
"""

# Counts the images that loaded (naturalWidth > 0) once the page is loaded, and writes the counts
# into <body data-images-loaded=... data-images-broken=...>; broken images are also flagged on the
# page. It touches nothing else.
_SCRIPT = """
window.addEventListener("load", function () {
  var imgs = document.images, ok = 0, broken = 0;
  for (var i = 0; i < imgs.length; i++) {
    if (imgs[i].complete && imgs[i].naturalWidth > 0) { ok++; }
    else { broken++; imgs[i].classList.add("broken"); }
  }
  document.body.dataset.imagesLoaded = ok;
  document.body.dataset.imagesBroken = broken;
  if (broken) { var p = document.createElement("p"); p.className = "note";
    p.textContent = broken + " image(s) failed to load"; document.body.prepend(p); }
});
"""


def render_page(root: str, metadata: list, errors: list, *, limit=DEFAULT_LIMIT, thumb=DEFAULT_THUMB,
                crop_thumb=DEFAULT_CROP_THUMB) -> str:
    """The whole report as one HTML string."""
    entries = image_entries(metadata)
    labels = sorted({r["aspect_ratio"] for r in metadata}, key=_ratio_key)
    colours = {label: COLOURS[i % len(COLOURS)] for i, label in enumerate(labels)}
    shown = entries[:limit] if limit else entries
    legend = "".join(f'<span style="border-color:{_e(colours[l])}">{_e(l)}</span>' for l in labels)
    summary = []
    for label in labels:
        kept = [float(r["saliency_kept"]) for r in metadata
                if r["aspect_ratio"] == label and int(r.get("rank") or 0) == 0]
        summary.append(f"<td>{_e(label)}</td><td>{len(kept)}</td><td>{np.mean(kept):.3f}</td>"
                       f"<td>{min(kept):.3f}</td>")
    summary_table = ("<table><tr><th>ratio</th><th>crops</th><th>mean kept</th><th>least kept</th></tr>"
                     + "".join(f"<tr>{s}</tr>" for s in summary) + "</table>") if summary else ""
    error_rows = "".join(
        f"<tr><td>{_e(e.get('source_uri', ''))}</td><td>{_e(e.get('stage', ''))}</td>"
        f"<td>{_e(e.get('error_type', ''))}</td><td>{_e(e.get('message', ''))}</td></tr>"
        for e in sorted(errors, key=lambda e: str(e.get("source_uri", ""))))
    errors_html = (f'<h1 id="errors">{len(errors)} failed</h1><table><tr><th>source</th><th>stage</th>'
                   f"<th>error</th><th>message</th></tr>{error_rows}</table>") if errors else ""
    more = (f'<p class="note">showing the {len(shown)} least confident of {len(entries)} images '
            f'(--limit)</p>') if len(shown) < len(entries) else ""
    body = "".join(render_entry(root, e, colours, thumb=thumb, crop_thumb=crop_thumb) for e in shown)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width">'
            f"<title>gazecrop report: {_e(root)}</title><style>{_CSS}</style></head><body>"
            f"<h1>gazecrop report: {_e(root)}</h1>"
            f'<p class="meta">{len(entries)} images, {len(metadata)} crops, {len(errors)} failed; '
            f"least confident first (lowest share of saliency kept). Rectangles: solid = main crop, "
            f"dashed = other candidates; circle = saliency peak.</p>"
            f'<p class="legend">{legend}</p>{summary_table}{more}{body}{errors_html}'
            f"<script>{_SCRIPT}</script></body></html>")


def write_report(root: str, output: Optional[str] = None, **kwargs) -> str:
    """Reads the run under ``root``, writes the report (default ``ROOT/report.html``), returns its path."""
    from apache_beam.io.filesystems import FileSystems

    metadata, errors = read_tables(root)
    if not metadata and not errors:
        raise FileNotFoundError(f"no metadata or errors tables under {root} (expected "
                                f"{_join(root, 'metadata', '*.parquet')})")
    page = render_page(root, metadata, errors, **kwargs)
    output = output or _join(root, "report.html")
    with FileSystems.create(output, mime_type="text/html") as f:
        f.write(page.encode("utf-8"))
    return output


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="gazecrop report", description=__doc__.split("\n\n")[0])
    p.add_argument("root", metavar="ROOT", help="output root of a gazecrop run (local, gs://, s3://)")
    p.add_argument("--output", help="report file (default: ROOT/report.html)")
    p.add_argument("--limit", type=int, default=DEFAULT_LIMIT,
                   help="show at most this many images, least confident first; 0 = all "
                        "(default: %(default)s)")
    p.add_argument("--thumb_size", type=int, default=DEFAULT_THUMB,
                   help="long side of the source pictures, pixels (default: %(default)s)")
    args = p.parse_args(argv)
    try:
        path = write_report(args.root, args.output, limit=args.limit, thumb=args.thumb_size)
    except FileNotFoundError as e:
        print(f"gazecrop report: {e}", file=sys.stderr)
        return 2
    print(f"report written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
