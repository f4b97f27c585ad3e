"""Demo images for `gazecrop run` without --input: synthetic scenes drawn with OpenCV, no download.

Each scene has a plain background and one or two salient things away from the centre (a figure with a
face, a bright object, a line of text), so the crops visibly follow them. Drawing is seeded and
encoding is deterministic: the same files every time.

The face is drawn the way faces look in photographs at this size (a skin oval under hair, eyes with whites
and dark irises, brows, nose, lips): the model learned faces from photos. A bare disc with two dots was not
one to it: the 9:16 crops of two scenes (street-sign, field-balloon) left the face out for the red ball and
the text. The test of the demo run checks that every 9:16 and 16:9 crop keeps the whole face (`face_box`).
"""

from __future__ import annotations

import functools
import os

import cv2
import numpy as np

# (file name, width, height, seed)
SCENES = (
    ("beach-figure.jpg", 1200, 800, 1),
    ("street-sign.jpg", 1600, 900, 2),
    ("portrait-left.png", 800, 1000, 3),
    ("field-balloon.jpg", 1024, 1024, 4),
    ("harbour-boat.png", 1400, 700, 5),
    ("poster-text.jpg", 900, 1350, 6),
)


def draw_scene(width: int, height: int, seed: int) -> np.ndarray:
    """One synthetic RGB scene: sky/ground gradient, noise, a figure and an object off-centre."""
    return _draw(width, height, seed)[0].copy()


def face_box(width: int, height: int, seed: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the figure's head in `draw_scene(width, height, seed)`, hair included."""
    return _draw(width, height, seed)[1]


def _draw_face(image: np.ndarray, fx: int, fy: int, r: int) -> tuple[int, int, int, int]:
    """A face of radius about `r` centred at (fx, fy); returns its box, hair included."""
    cv2.ellipse(image, (fx, fy - r // 5), (int(r * 1.08), int(r * 1.2)), 0, 180, 360, (60, 40, 25), -1,
                cv2.LINE_AA)  # hair, the upper half of an oval behind the head
    cv2.ellipse(image, (fx, fy), (int(r * 0.85), r), 0, 0, 360, (224, 178, 146), -1, cv2.LINE_AA)
    for dx in (-r // 3, r // 3):
        eye = (fx + dx, fy - r // 6)
        cv2.ellipse(image, eye, (r // 5, r // 9), 0, 0, 360, (250, 250, 250), -1, cv2.LINE_AA)
        cv2.circle(image, eye, max(2, r // 10), (60, 40, 30), -1, cv2.LINE_AA)
        cv2.circle(image, eye, max(1, r // 22), (10, 10, 10), -1, cv2.LINE_AA)
        cv2.line(image, (eye[0] - r // 5, fy - r // 3), (eye[0] + r // 5, fy - r // 3 - r // 20), (70, 45, 30),
                 max(2, r // 14), cv2.LINE_AA)  # brow
    cv2.line(image, (fx, fy - r // 10), (fx - r // 10, fy + r // 4), (190, 140, 115), max(2, r // 16), cv2.LINE_AA)
    cv2.ellipse(image, (fx, fy + r // 2), (r // 4, r // 10), 0, 0, 360, (170, 70, 70), -1, cv2.LINE_AA)
    top = fy - r // 5 - int(r * 1.2)
    return fx - int(r * 1.08), max(0, top), fx + int(r * 1.08), fy + r


@functools.lru_cache(maxsize=len(SCENES))
def _draw(width: int, height: int, seed: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    rng = np.random.default_rng(seed)
    sky = np.array(rng.integers(120, 220, 3), np.float32)
    ground = np.array(rng.integers(40, 140, 3), np.float32)
    horizon = int(height * rng.uniform(0.45, 0.7))
    t = np.clip((np.arange(height, dtype=np.float32) - horizon) / (0.1 * height) + 0.5, 0, 1)[:, None, None]
    image = (1 - t) * sky + t * ground
    image = np.broadcast_to(image, (height, width, 3)).copy()
    image += rng.normal(0, 6, image.shape).astype(np.float32)
    image = np.clip(image, 0, 255).astype(np.uint8)
    scale = min(width, height)
    # A figure: a head with a face, a body below.
    fx = int(width * rng.uniform(0.15, 0.35))
    fy = int(height * rng.uniform(0.3, 0.5))
    r = int(scale * 0.08)
    cv2.rectangle(image, (fx - r, fy + r), (fx + r, fy + 4 * r), (40, 60, 160), -1, cv2.LINE_AA)
    face = _draw_face(image, fx, fy, r)
    # A bright object on the other side.
    ox = int(width * rng.uniform(0.65, 0.85))
    oy = int(height * rng.uniform(0.25, 0.75))
    color = tuple(int(c) for c in rng.integers(0, 256, 3))
    cv2.circle(image, (ox, oy), int(scale * 0.06), (255, 40, 40), -1, cv2.LINE_AA)
    cv2.rectangle(image, (ox - r, oy + r), (ox + r, oy + 2 * r), color, -1, cv2.LINE_AA)
    # A line of text.
    cv2.putText(image, f"gazecrop {seed}", (int(width * 0.55), int(height * 0.92)), cv2.FONT_HERSHEY_SIMPLEX,
                scale / 600, (250, 250, 250), max(1, scale // 300), cv2.LINE_AA)
    return image, face


def write_demo_images(directory: str) -> list[str]:
    """Write the demo scenes into `directory` (created); return their paths."""
    os.makedirs(directory, exist_ok=True)
    paths = []
    for name, width, height, seed in SCENES:
        path = os.path.join(directory, name)
        bgr = cv2.cvtColor(draw_scene(width, height, seed), cv2.COLOR_RGB2BGR)
        ok, buffer = cv2.imencode(os.path.splitext(name)[1], bgr)
        if not ok:
            raise RuntimeError(f"could not encode demo image {name}")
        with open(path, "wb") as f:
            f.write(buffer.tobytes())
        paths.append(path)
    return paths
