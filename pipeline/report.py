"""``gazecrop report ROOT [--output FILE]``: a self-contained HTML page to review and fix a run's crops.

Per source image: the source with its saliency heat map and every aspect ratio's crop rectangle drawn in,
the crops as thumbnails, and ``saliency_kept`` per crop. Images come least confident first (lowest
``saliency_kept`` of their main crops): what a person should review. Failed images are listed from
``ROOT/errors/``. Headings name each source by its path relative to the inputs' common folder.

The heat map comes from ``ROOT/saliency/<relpath>.npy`` (``--save_saliency``) or else from the small
preview every run writes by default (``ROOT/saliency/<relpath>.png``, ``gazecrop.transforms.write.saliency_preview``):
the report never runs the model.

The page's inline script (no external file: it works offline and can be mailed) adds:

* filters: a ratio (only that ratio's rectangles and crops; an image shows if its main crop of that ratio
  passes the threshold) and a ``saliency_kept`` threshold (images whose main crop keeps at most that share);
* click to enlarge: a crop thumbnail opens large; the source's button shows the source large;
* click to fix: click the subject on a source picture (a point) or drag a box around it; the hints are
  collected as a ``--focus`` table (``source,x,y,width,height`` in pixels of the upright source) shown in
  ``<textarea id="focus-csv">`` and downloaded as ``hints.csv``. ``gazecrop run`` with the same --input
  and --output plus ``--focus hints.csv --incremental`` re-crops exactly the hinted images.

Steps: ``read_tables`` (Parquet under ROOT) -> ``image_entries`` (group rows by source, order by
confidence, short names) -> ``render_entry`` per image (``source_picture`` with the heat map,
``crop_shapes``, ``crop_figures``) -> ``render_page`` (controls, summary, entries, errors, script).
Everything is embedded (``data:`` URIs, inline CSS and script); every name and value from the tables is
escaped. All files are read and written through Beam's ``FileSystems`` (local paths, gs://, s3://).
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

from gazecrop.transforms.write import relative_density, relpath_of_output, saliency_preview_uri, saliency_uri

#: One colour per aspect ratio, in order (CSS); rank > 0 rectangles are dashed.
COLOURS = ("#ff00ff", "#00e5ff", "#ffd400", "#39ff14", "#ff6a00", "#8a5cff", "#ff1744", "#ffffff")

DEFAULT_LIMIT = 200          # images shown (least confident first); the rest are counted
DEFAULT_THUMB = 480          # long side of a source thumbnail, pixels
DEFAULT_CROP_THUMB = 180     # long side of a crop thumbnail as shown, pixels
DEFAULT_CROP_SIZE = 360      # long side of a crop as embedded: what a click on its thumbnail enlarges to
CROP_QUALITY = 72            # JPEG quality of the embedded crops (shown at half their size by default)


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
    name: str             # the source's path relative to the inputs' common folder (the heading)
    width: int
    height: int
    rows: list            # metadata rows, by ratio order then rank
    confidence: float     # lowest saliency_kept of the rank-0 crops


def common_folder(uris) -> str:
    """The deepest folder holding every URI (``gs://b/photos`` for ``gs://b/photos/a.jpg`` and
    ``gs://b/photos/x/b.jpg``); "" where they share none."""
    folders = [uri.split("/")[:-1] for uri in uris]
    common = []
    for segments in zip(*folders):
        if any(s != segments[0] for s in segments):
            break
        common.append(segments[0])
    return "/".join(common)


def short_name(uri: str, folder: str) -> str:
    """``uri`` relative to ``folder`` (``common_folder``); the whole URI when it is not under it."""
    prefix = folder + "/"
    return uri[len(prefix):] if folder and uri.startswith(prefix) else uri


def image_entries(metadata: list, folder: str = "") -> list[Entry]:
    """Groups metadata rows by source; least confident first (ties by name); each named relative to
    ``folder``."""
    by_source: dict[str, list] = {}
    for row in metadata:
        by_source.setdefault(row["source_uri"], []).append(row)
    entries = []
    for uri, rows in by_source.items():
        rows.sort(key=lambda r: (_ratio_key(r["aspect_ratio"]), int(r.get("rank") or 0)))
        main = [float(r["saliency_kept"]) for r in rows if int(r.get("rank") or 0) == 0] or [0.0]
        entries.append(Entry(uri, short_name(uri, folder), int(rows[0]["source_width"]),
                             int(rows[0]["source_height"]), rows, min(main)))
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


def tint(bgr: np.ndarray, level: np.ndarray, strength=0.6) -> np.ndarray:
    """The image darkened and tinted by ``level`` (density relative to its peak, any size, resized to
    the image; colour map INFERNO), same size as ``bgr``."""
    h, w = bgr.shape[:2]
    level = cv2.resize(np.asarray(level, np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    level = np.clip(level / max(float(level.max()), 1e-12), 0, 1)
    colour = cv2.applyColorMap((level * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)
    alpha = (strength * np.sqrt(level))[..., None]
    base = (bgr.astype(np.float32) * 0.55)
    return np.clip(base * (1 - alpha) + colour.astype(np.float32) * alpha, 0, 255).astype(np.uint8)


def heat_overlay(bgr: np.ndarray, log_density: np.ndarray, strength=0.6) -> np.ndarray:
    """``tint`` by a log-density map (any size)."""
    return tint(bgr, relative_density(log_density), strength)


def saliency_level(root: str, entry: Entry) -> tuple[Optional[np.ndarray], Optional[str]]:
    """(density relative to its peak, None) from the entry's saved map (``.npy``) or else its preview
    (``.png``) under ``ROOT/saliency/``; (None, why not) where neither can be read."""
    from apache_beam.io.filesystems import FileSystems

    relpath = _source_relpath(root, entry)
    if relpath is None:
        return None, "its crops are not under ROOT/crops/, so its saliency map cannot be found"
    for uri, load in ((saliency_uri(root, relpath), _load_npy),
                      (saliency_preview_uri(root, relpath), _load_preview)):
        if FileSystems.exists(uri):
            try:
                return load(_read_bytes(uri)), None
            except Exception as e:
                return None, f"saliency map {uri} unreadable: {type(e).__name__}"
    return None, ("no saliency map under ROOT/saliency/ (the run had --saliency_preview=false, or "
                  "predates previews): no heat map")


def _source_relpath(root: str, entry: Entry) -> Optional[str]:
    """The output relpath of the entry's source, from one of its crops' output URIs (the write stage's
    naming rule, inverted); None if no crop is under ``ROOT/crops/``."""
    for row in entry.rows:
        try:
            return relpath_of_output(root, str(row.get("output_uri") or ""), int(row.get("rank") or 0))
        except (ValueError, IndexError):
            continue
    return None


def _load_npy(data: bytes) -> np.ndarray:
    return relative_density(np.load(io.BytesIO(data), allow_pickle=False))


def _load_preview(data: bytes) -> np.ndarray:
    grey = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    if grey is None:
        raise ValueError("not a PNG")
    return grey.astype(np.float32) / 255.0


# ----------------------------------------------------------------------------------------------
# HTML
# ----------------------------------------------------------------------------------------------

def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _thumb_size(entry: Entry, thumb: int) -> tuple[int, int]:
    """The source picture's size on the page: the source's shape, long side at most ``thumb``."""
    scale = min(1.0, thumb / max(entry.width, entry.height, 1))
    return max(1, round(entry.width * scale)), max(1, round(entry.height * scale))


def source_picture(root: str, entry: Entry, thumb: int) -> tuple[str, list[str]]:
    """The source thumbnail with its heat map as an ``<img>`` (a hatched box where the source cannot be
    read), and notes on what is missing."""
    tw, th = _thumb_size(entry, thumb)
    try:
        source = _decode(_read_bytes(entry.source_uri), thumb, (entry.width, entry.height))
    except Exception as e:  # missing or unreadable source: the report still lists its crops
        return (f'<div class="missing source" style="width:{tw}px;height:{th}px"></div>',
                [f"source unreadable: {type(e).__name__}: {e}"])
    if source is None:
        return (f'<div class="missing source" style="width:{tw}px;height:{th}px"></div>',
                ["source could not be decoded"])
    # The rectangles are drawn in source coordinates over a thumbnail of the source's shape.
    source = cv2.resize(source, (tw, th), interpolation=cv2.INTER_AREA)
    level, note = saliency_level(root, entry)
    if level is not None:
        source = tint(source, level)
    return (f'<img class="source" src="{_data_uri(source)}" alt="{_e(entry.name)}" width="{tw}" '
            f'height="{th}">', [note] if note else [])


def crop_shapes(entry: Entry, colours: dict) -> str:
    """The SVG over the source picture (viewBox in source pixels): every crop's rectangle (dashed for
    rank > 0) and the saliency peak; the page's script draws focus hints into it."""
    w, h = entry.width, entry.height
    stroke = max(2.0, max(w, h) / 200)
    shapes = []
    for row in entry.rows:
        rank = int(row.get("rank") or 0)
        dash = f' stroke-dasharray="{stroke * 4:.1f} {stroke * 3:.1f}"' if rank else ""
        shapes.append(
            f'<rect x="{int(row["crop_x"])}" y="{int(row["crop_y"])}" width="{int(row["crop_width"])}" '
            f'height="{int(row["crop_height"])}" fill="none" '
            f'stroke="{_e(colours.get(row["aspect_ratio"], "#ffffff"))}" stroke-width="{stroke:.1f}"{dash} '
            f'data-ratio="{_e(row["aspect_ratio"])}"><title>{_e(row["aspect_ratio"])} rank {rank}: '
            f'saliency_kept {float(row["saliency_kept"]):.3f}</title></rect>')
    focal = entry.rows[0]
    if focal.get("focal_x") is not None and focal.get("focal_y") is not None:
        shapes.append(f'<circle cx="{int(focal["focal_x"])}" cy="{int(focal["focal_y"])}" '
                      f'r="{stroke * 3:.1f}" fill="none" stroke="#ffffff" stroke-width="{stroke:.1f}">'
                      f'<title>saliency peak</title></circle>')
    return (f'<svg class="boxes" viewBox="0 0 {w} {h}" preserveAspectRatio="none" '
            f'xmlns="http://www.w3.org/2000/svg">{"".join(shapes)}</svg>')


def crop_figures(entry: Entry, colours: dict, crop_thumb: int, crop_size: int) -> str:
    """One ``<figure>`` per crop: the crop (shown at ``crop_thumb``, embedded at ``crop_size`` for the
    enlarged view), its ratio, ``saliency_kept`` and box; ``data-`` attributes for the filters."""
    figures = []
    for row in entry.rows:
        rank = int(row.get("rank") or 0)
        label = f'{_e(row["aspect_ratio"])}' + (f" #{rank + 1}" if rank else "")
        figures.append(
            f'<figure style="border-color:{_e(colours.get(row["aspect_ratio"], "#ffffff"))}" '
            f'data-ratio="{_e(row["aspect_ratio"])}" data-rank="{rank}" '
            f'data-kept="{float(row["saliency_kept"])!r}">{_crop_image(row, label, crop_thumb, crop_size)}'
            f'<figcaption><b>{label}</b> kept <span class="kept">{float(row["saliency_kept"]):.3f}</span>'
            f'<br>{int(row["crop_width"])}&times;{int(row["crop_height"])} at '
            f'({int(row["crop_x"])}, {int(row["crop_y"])})</figcaption></figure>')
    return "".join(figures)


def _crop_image(row: dict, label: str, crop_thumb: int, crop_size: int) -> str:
    """The crop's ``<img>`` (shown at ``crop_thumb``, embedded at ``crop_size``), or why there is none."""
    try:
        crop = _decode(_read_bytes(str(row["output_uri"])), max(crop_size, crop_thumb),
                       (int(row.get("output_width") or 0), int(row.get("output_height") or 0)))
    except Exception as e:
        return f'<div class="nocrop">crop missing: {_e(type(e).__name__)}</div>'
    if crop is None:
        return '<div class="nocrop">crop not decodable</div>'
    scale = min(1.0, crop_thumb / max(crop.shape[:2]))
    width, height = max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))
    return (f'<img class="crop" src="{_data_uri(crop, CROP_QUALITY)}" alt="{label} crop" '
            f'title="click to enlarge" width="{width}" height="{height}">')


def render_entry(root: str, entry: Entry, colours: dict, *, thumb=DEFAULT_THUMB,
                 crop_thumb=DEFAULT_CROP_THUMB, crop_size=DEFAULT_CROP_SIZE) -> str:
    """One source image's ``<section>``: heading, notes, the source with rectangles, the crops."""
    picture, notes = source_picture(root, entry, thumb)
    note = "".join(f'<p class="note">{_e(n)}</p>' for n in notes)
    return (f'<section class="entry" data-confidence="{entry.confidence:.6f}" '
            f'data-source="{_e(entry.source_uri)}" data-width="{entry.width}" data-height="{entry.height}">'
            f'<h2 title="{_e(entry.source_uri)}">{_e(entry.name)}</h2>'
            f'<p class="meta">{entry.width}&times;{entry.height} px &middot; least kept '
            f'{entry.confidence:.3f} &middot; model {_e(entry.rows[0].get("model_version", ""))} '
            f'<button type="button" class="enlarge">enlarge</button></p>{note}'
            f'<div class="row"><div class="frame" title="click the subject, or drag a box around it">'
            f'{picture}{crop_shapes(entry, colours)}</div>'
            f'<div class="crops">{crop_figures(entry, colours, crop_thumb, crop_size)}</div></div>'
            f'<p class="hint-text"></p></section>')


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:16px;background:#1e1f22;color:#e8e8e8}
h1{font-size:20px}h2{font-size:15px;margin:0 0 2px;word-break:break-all}
.entry{background:#2b2d31;border-radius:6px;padding:12px;margin:0 0 16px}
.meta,.note{margin:0 0 8px;color:#b0b3b8}.note{color:#ffb74d}
.row{display:flex;gap:16px;align-items:flex-start;flex-wrap:wrap}
.frame{position:relative;line-height:0;cursor:crosshair;touch-action:none;user-select:none}
.frame .boxes{position:absolute;left:0;top:0;width:100%;height:100%}
.entry.big .frame{width:min(96vw,1200px)}.entry.big .frame .source{width:100%;height:auto}
.missing{background:repeating-linear-gradient(45deg,#444 0 8px,#333 8px 16px)}
.crops{display:flex;flex-wrap:wrap;gap:10px}.crop{cursor:zoom-in}
figure{margin:0;border:3px solid;border-radius:4px;padding:4px;background:#111}
figcaption{line-height:1.3;font-size:12px;margin-top:4px}
.nocrop{width:120px;height:80px;color:#ffb74d;font-size:12px}
.legend span{display:inline-block;padding:1px 8px;margin-right:6px;border:3px solid;border-radius:4px}
table{border-collapse:collapse}td,th{border:1px solid #555;padding:3px 6px;text-align:left}
#controls{position:sticky;top:0;z-index:2;background:#1e1f22;padding:8px 0;border-bottom:1px solid #444;
  margin-bottom:12px}#controls label{margin-right:16px}
#focus-csv{width:100%;max-width:720px;height:5em;font:12px monospace;background:#111;color:#e8e8e8}
.hint-text{margin:6px 0 0;color:#ffffff}
#lightbox{position:fixed;inset:0;z-index:3;background:rgba(0,0,0,.85);display:flex;align-items:center;
  justify-content:center;cursor:zoom-out}#lightbox img{max-width:94vw;max-height:94vh;width:auto;height:auto}
"""

# The page's script, in four parts: (1) image load check (counts into <body data-images-loaded=...
# data-images-broken=...>); (2) filters (#ratio-filter, #kept-filter); (3) enlarge (crop thumbnails
# into #lightbox, the source via .enlarge); (4) focus hints (pointer on a .frame -> a point or a box in
# source pixels via the SVG's screen transform; #focus-csv and #download-hints).
_SCRIPT = r"""
"use strict";
function checkImages() {
  var imgs = document.images, ok = 0, broken = 0;
  for (var i = 0; i < imgs.length; i++) {
    if (imgs[i].complete && imgs[i].naturalWidth > 0) { ok++; }
    else { broken++; imgs[i].classList.add("broken"); }
  }
  document.body.dataset.imagesLoaded = ok;
  document.body.dataset.imagesBroken = broken;
  if (broken) { var p = document.createElement("p"); p.className = "note";
    p.textContent = broken + " image(s) failed to load"; document.body.prepend(p); }
}
window.addEventListener("load", checkImages);

/* (2) Filters: an image is shown when one of its main crops (rank 0) of the chosen ratio (any ratio
   when none is chosen) keeps at most the threshold; other ratios' crops and rectangles are hidden. */
function applyFilters() {
  var ratio = document.getElementById("ratio-filter").value;
  var maxKept = parseFloat(document.getElementById("kept-filter").value);
  document.getElementById("kept-value").textContent = maxKept.toFixed(3);
  var shown = 0, sections = document.querySelectorAll("section.entry");
  sections.forEach(function (section) {
    var match = false;
    section.querySelectorAll("figure[data-ratio], rect[data-ratio]").forEach(function (el) {
      var mine = !ratio || el.dataset.ratio === ratio;
      el.style.display = mine ? "" : "none";
      if (mine && el.tagName === "FIGURE" && el.dataset.rank === "0" &&
          parseFloat(el.dataset.kept) <= maxKept + 1e-9) { match = true; }
    });
    section.hidden = !match;
    if (match) { shown++; }
  });
  document.getElementById("shown-count").textContent = shown + " of " + sections.length + " images shown";
}

/* (3) Enlarge. */
function showLarge(src) {
  var box = document.createElement("div"), img = document.createElement("img");
  box.id = "lightbox"; img.src = src; box.appendChild(img);
  box.addEventListener("click", function () { box.remove(); });
  document.body.appendChild(box);
}
document.addEventListener("keydown", function (e) {
  var box = document.getElementById("lightbox");
  if (e.key === "Escape" && box) { box.remove(); }
});

/* (4) Focus hints: source URI -> {x, y, width, height} in source pixels (width = height = 0: a point). */
var hints = {};
var SVG_NS = "http://www.w3.org/2000/svg";

function sourcePoint(svg, event, section) {
  var p = svg.createSVGPoint();
  p.x = event.clientX; p.y = event.clientY;
  p = p.matrixTransform(svg.getScreenCTM().inverse());
  return {x: Math.min(Math.max(p.x, 0), +section.dataset.width),
          y: Math.min(Math.max(p.y, 0), +section.dataset.height)};
}

function hintFrom(a, b, dragged) {
  if (!dragged) { return {x: Math.round(b.x), y: Math.round(b.y), width: 0, height: 0}; }
  var x = Math.floor(Math.min(a.x, b.x)), y = Math.floor(Math.min(a.y, b.y));
  return {x: x, y: y, width: Math.ceil(Math.max(a.x, b.x)) - x, height: Math.ceil(Math.max(a.y, b.y)) - y};
}

function drawHint(svg, hint) {
  var old = svg.querySelector(".hint");
  if (old) { old.remove(); }
  if (!hint) { return; }
  var shape = document.createElementNS(SVG_NS, hint.width || hint.height ? "rect" : "circle");
  var attrs = hint.width || hint.height
    ? {x: hint.x, y: hint.y, width: hint.width, height: hint.height}
    : {cx: hint.x, cy: hint.y, r: Math.max(+svg.viewBox.baseVal.width, +svg.viewBox.baseVal.height) / 60};
  attrs["class"] = "hint"; attrs.fill = "rgba(255,255,255,0.35)"; attrs.stroke = "#ffffff";
  attrs["stroke-dasharray"] = "6 4";
  attrs["stroke-width"] = 3; attrs["vector-effect"] = "non-scaling-stroke";
  Object.keys(attrs).forEach(function (k) { shape.setAttribute(k, attrs[k]); });
  svg.appendChild(shape);
}

function csvField(value) {
  value = String(value);
  return /[",\r\n]|^\s|\s$/.test(value) ? '"' + value.replace(/"/g, '""') + '"' : value;
}

function focusCsv() {
  var lines = ["source,x,y,width,height"];
  document.querySelectorAll("section.entry").forEach(function (section) {
    var h = hints[section.dataset.source];
    if (!h) { return; }
    var box = h.width || h.height;
    lines.push([csvField(section.dataset.source), h.x, h.y, box ? h.width : "", box ? h.height : ""]
               .join(","));
  });
  return lines.join("\n") + "\n";
}

function setHint(section, hint) {
  var uri = section.dataset.source;
  if (hint) { hints[uri] = hint; } else { delete hints[uri]; }
  drawHint(section.querySelector("svg.boxes"), hint);
  section.querySelector(".hint-text").textContent = !hint ? "" : (hint.width || hint.height
    ? "focus box " + hint.width + "\u00d7" + hint.height + " at (" + hint.x + ", " + hint.y + ")"
    : "focus point (" + hint.x + ", " + hint.y + ")") + " (click again to move it; Alt+click to remove)";
  var count = Object.keys(hints).length;
  document.getElementById("focus-csv").value = focusCsv();
  document.getElementById("hint-count").textContent = count + " hint" + (count === 1 ? "" : "s");
  document.getElementById("download-hints").disabled = count === 0;
}

function watchFrame(section) {
  var frame = section.querySelector(".frame"), svg = frame.querySelector("svg.boxes"), start = null;
  frame.addEventListener("pointerdown", function (e) {
    if (e.button !== 0) { return; }
    e.preventDefault();
    frame.setPointerCapture(e.pointerId);
    start = {client: [e.clientX, e.clientY], point: sourcePoint(svg, e, section)};
  });
  frame.addEventListener("pointermove", function (e) {
    if (!start) { return; }
    drawHint(svg, hintFrom(start.point, sourcePoint(svg, e, section), true));
  });
  frame.addEventListener("pointerup", function (e) {
    if (!start) { return; }
    var dragged = Math.hypot(e.clientX - start.client[0], e.clientY - start.client[1]) >= 5;
    var hint = e.altKey ? null : hintFrom(start.point, sourcePoint(svg, e, section), dragged);
    start = null;
    setHint(section, hint);
  });
}

function downloadHints() {
  var url = URL.createObjectURL(new Blob([focusCsv()], {type: "text/csv"}));
  var a = document.createElement("a");
  a.href = url; a.download = "hints.csv";
  document.body.appendChild(a); a.click(); a.remove();
  setTimeout(function () { URL.revokeObjectURL(url); }, 1000);
}

document.addEventListener("DOMContentLoaded", function () {
  document.getElementById("ratio-filter").addEventListener("change", applyFilters);
  document.getElementById("kept-filter").addEventListener("input", applyFilters);
  document.getElementById("download-hints").addEventListener("click", downloadHints);
  document.getElementById("clear-hints").addEventListener("click", function () {
    document.querySelectorAll("section.entry").forEach(function (s) { setHint(s, null); });
  });
  document.querySelectorAll("img.crop").forEach(function (img) {
    img.addEventListener("click", function () { showLarge(img.src); });
  });
  document.querySelectorAll("section.entry").forEach(function (section) {
    section.querySelector(".enlarge").addEventListener("click", function () {
      section.classList.toggle("big");
    });
    watchFrame(section);
  });
  applyFilters();
  document.getElementById("focus-csv").value = focusCsv();
});
"""


def render_controls(root: str, labels: list) -> str:
    """The sticky bar: ratio and ``saliency_kept`` filters, the focus hints (CSV, download) and the
    command that applies them."""
    options = "".join(f'<option value="{_e(label)}">{_e(label)}</option>' for label in labels)
    return (f'<p class="meta">To fix a crop, click the subject on the source picture, or drag a box around '
            f'it; then download the hints and rerun with the same --input: <code>gazecrop run ... --output '
            f'{_e(root)} --focus hints.csv --incremental</code>. Only the hinted images are cropped again. '
            f'(--focus takes one table: add the rows of an earlier --focus table to keep its hints.)</p>'
            f'<details><summary>hints.csv</summary><textarea id="focus-csv" readonly '
            f'aria-label="focus hints (CSV)"></textarea></details>'
            f'<div id="controls"><label>ratio <select id="ratio-filter"><option value="">all ratios</option>'
            f'{options}</select></label><label>saliency kept at most <input type="range" id="kept-filter" '
            f'min="0" max="1" step="0.001" value="1"> <output id="kept-value">1.000</output></label>'
            f'<span id="shown-count"></span> &middot; <span id="hint-count">0 hints</span> '
            f'<button type="button" id="download-hints" disabled>Download hints.csv</button> '
            f'<button type="button" id="clear-hints">Clear hints</button></div>')


def render_summary(metadata: list, labels: list) -> str:
    """Per ratio: number of main crops, mean and least ``saliency_kept``."""
    rows = []
    for label in labels:
        kept = [float(r["saliency_kept"]) for r in metadata
                if r["aspect_ratio"] == label and int(r.get("rank") or 0) == 0]
        rows.append(f"<tr><td>{_e(label)}</td><td>{len(kept)}</td><td>{np.mean(kept):.3f}</td>"
                    f"<td>{min(kept):.3f}</td></tr>")
    return ("<table><tr><th>ratio</th><th>crops</th><th>mean kept</th><th>least kept</th></tr>"
            + "".join(rows) + "</table>") if rows else ""


def render_errors(errors: list, folder: str) -> str:
    """The failed images (source relative to ``folder``, the whole URI as its tooltip; stage, error,
    message)."""
    if not errors:
        return ""
    rows = []
    for e in sorted(errors, key=lambda e: str(e.get("source_uri", ""))):
        uri = str(e.get("source_uri", ""))
        rows.append(f'<tr><td title="{_e(uri)}">{_e(short_name(uri, folder))}</td>'
                    f'<td>{_e(e.get("stage", ""))}</td><td>{_e(e.get("error_type", ""))}</td>'
                    f'<td>{_e(e.get("message", ""))}</td></tr>')
    return (f'<h1 id="errors">{len(errors)} failed</h1><table><tr><th>source</th><th>stage</th>'
            f'<th>error</th><th>message</th></tr>{"".join(rows)}</table>')


def render_page(root: str, metadata: list, errors: list, *, limit=DEFAULT_LIMIT, thumb=DEFAULT_THUMB,
                crop_thumb=DEFAULT_CROP_THUMB, crop_size=DEFAULT_CROP_SIZE) -> str:
    """The whole report as one HTML string."""
    folder = common_folder([str(r["source_uri"]) for r in metadata]
                           + [str(e.get("source_uri", "")) for e in errors])
    entries = image_entries(metadata, folder)
    labels = sorted({r["aspect_ratio"] for r in metadata}, key=_ratio_key)
    colours = {label: COLOURS[i % len(COLOURS)] for i, label in enumerate(labels)}
    shown = entries[:limit] if limit else entries
    legend = "".join(f'<span style="border-color:{_e(colours[l])}">{_e(l)}</span>' for l in labels)
    more = (f'<p class="note">showing the {len(shown)} least confident of {len(entries)} images '
            f'(--limit)</p>') if len(shown) < len(entries) else ""
    body = "".join(render_entry(root, e, colours, thumb=thumb, crop_thumb=crop_thumb, crop_size=crop_size)
                   for e in shown)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width">'
            f"<title>gazecrop report: {_e(root)}</title><style>{_CSS}</style></head><body>"
            f"<h1>gazecrop report: {_e(root)}</h1>"
            f'<p class="meta">{len(entries)} images under {_e(folder or "(no common folder)")}, '
            f"{len(metadata)} crops, {len(errors)} failed; least confident first (lowest share of "
            f"saliency kept). Rectangles: solid = main crop, dashed = other candidates; circle = saliency "
            f"peak. Click a crop to enlarge it.</p>"
            f'<p class="legend">{legend}</p>{render_summary(metadata, labels)}'
            f"{render_controls(root, labels)}{more}{body}{render_errors(errors, folder)}"
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
    p.add_argument("--crop_size", type=int, default=DEFAULT_CROP_SIZE,
                   help="long side of the embedded crops, pixels: a click on a crop's thumbnail shows it "
                        f"this large; {DEFAULT_CROP_THUMB} keeps the page smallest (default: %(default)s)")
    args = p.parse_args(argv)
    if args.crop_size < 1:
        p.error(f"--crop_size must be >= 1. Received: --crop_size={args.crop_size}")
    try:
        path = write_report(args.root, args.output, limit=args.limit, thumb=args.thumb_size,
                            crop_size=args.crop_size)
    except FileNotFoundError as e:
        print(f"gazecrop report: {e}", file=sys.stderr)
        return 2
    print(f"report written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
