"""Demo images for `gazecrop run` without --input: synthetic scenes drawn with OpenCV, no download.

Each scene has a plain background and one or two salient things away from the centre (a face-like
figure, a bright object, a line of text), so the crops visibly follow them. Drawing is seeded and
encoding is deterministic: the same files every time.
"""

from __future__ import annotations

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
    # A face-like figure: head with eyes and mouth, body below.
    fx = int(width * rng.uniform(0.15, 0.35))
    fy = int(height * rng.uniform(0.3, 0.5))
    r = int(scale * 0.08)
    cv2.rectangle(image, (fx - r, fy + r), (fx + r, fy + 4 * r), (40, 60, 160), -1, cv2.LINE_AA)
    cv2.circle(image, (fx, fy), r, (224, 180, 150), -1, cv2.LINE_AA)
    for dx in (-r // 3, r // 3):
        cv2.circle(image, (fx + dx, fy - r // 5), max(2, r // 8), (20, 20, 20), -1, cv2.LINE_AA)
    cv2.ellipse(image, (fx, fy + r // 3), (r // 3, r // 6), 0, 0, 180, (120, 30, 30), 2, cv2.LINE_AA)
    # A bright object on the other side.
    ox = int(width * rng.uniform(0.65, 0.85))
    oy = int(height * rng.uniform(0.25, 0.75))
    color = tuple(int(c) for c in rng.integers(0, 256, 3))
    cv2.circle(image, (ox, oy), int(scale * 0.06), (255, 40, 40), -1, cv2.LINE_AA)
    cv2.rectangle(image, (ox - r, oy + r), (ox + r, oy + 2 * r), color, -1, cv2.LINE_AA)
    # A line of text.
    cv2.putText(image, f"gazecrop {seed}", (int(width * 0.55), int(height * 0.92)), cv2.FONT_HERSHEY_SIMPLEX,
                scale / 600, (250, 250, 250), max(1, scale // 300), cv2.LINE_AA)
    return image


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
