"""Crop geometry and selection (core/search.py, `gazecrop.search`), on plain numpy without Beam."""

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from gazecrop.search import (Crop, CropConfig, Focus, choose_crops, crop_images, focal_point, parse_aspect_ratios,
                             ratio_dirname, ratio_label, window_sizes)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
RATIOS = ((1, 1), (16, 9), (9, 16), (4, 5))


def _random_maps(b, h, w, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(b, h, w)) * 2).astype(np.float32)


def _blob(h, w, cy, cx, sigma):
    yy, xx = np.mgrid[0:h, 0:w]
    ld = -((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma ** 2)
    return (ld - np.log(np.exp(ld).sum())).astype(np.float32)


def _upsampled_mass(log_density, factor):
    """Density on source pixels when the source is an exact multiple of the map (brute force)."""
    p = np.exp(log_density.astype(np.float64))
    p /= p.sum()
    return np.kron(p, np.ones((factor, factor))) / factor ** 2


# -- aspect ratios -------------------------------------------------------------------------------

def test_parse_aspect_ratios():
    assert parse_aspect_ratios("1:1,16:9,9:16,4:5") == RATIOS
    assert parse_aspect_ratios(" 3 : 2 , 191:100") == ((3, 2), (191, 100))
    assert parse_aspect_ratios(["1:1", "4:5,9:16"]) == ((1, 1), (4, 5), (9, 16))


def test_parse_aspect_ratios_spellings_people_type():
    assert parse_aspect_ratios("1x1,16/9,1.91:1,1.5:1, 4X5") == ((1, 1), (16, 9), (191, 100), (3, 2), (4, 5))


@pytest.mark.parametrize("text", ["", " , ", "16-9", "0:1", "1:0", "1.00001:1", "a:b", "16:9:1",
                                  "-1:1", "1:1,2:2", "16:9,", "10001:10000", "101:1", "1:101",
                                  "9223372036854775807:1", ",".join(f"{w}:{w + 1}" for w in range(1, 18))])
def test_parse_aspect_ratios_rejects(text):
    with pytest.raises(ValueError):
        parse_aspect_ratios(text)


def test_ratio_names():
    assert ratio_label((16, 9)) == "16:9"
    assert ratio_dirname((16, 9)) == "16x9"
    assert [ratio_label(r) for r in parse_aspect_ratios("9:16")] == ["9:16"]


def test_config_validates():
    assert CropConfig().aspect_ratios == RATIOS
    assert CropConfig(aspect_ratios="3:2").aspect_ratios == ((3, 2),)
    np.testing.assert_allclose(CropConfig(min_scale=0.7).scales, [1.0, 0.9, 0.8, 0.7])
    for bad in (dict(min_scale=0), dict(min_scale=1.5), dict(candidates=0), dict(positions=2),
                dict(border_weight=-1), dict(candidate_overlap=1.0), dict(headroom_weight=-1), dict(headroom=1.5),
                dict(headroom_level=1.0)):
        with pytest.raises(ValueError):
            CropConfig(**bad)


# -- window geometry -----------------------------------------------------------------------------

def _sizes(n=400, seed=1):
    rng = np.random.default_rng(seed)
    sizes = np.stack([rng.integers(1, 6000, n), rng.integers(1, 6000, n)], axis=1)
    fixed = [(1, 1), (1, 1000), (1000, 1), (2, 3), (7, 3), (16, 9), (9, 16), (1024, 768),
             (768, 1024), (1000, 1000), (5472, 3648), (9643, 10328)]
    return np.concatenate([np.array(fixed), sizes])


def test_window_sizes_bounds_and_exact_ratio():
    sizes = _sizes()
    win = window_sizes(sizes, RATIOS + ((191, 100), (3, 2)))
    w, h = win[..., 0, 0], win[..., 0, 1]
    assert (w >= 1).all() and (h >= 1).all()
    assert (w <= sizes[:, :1]).all() and (h <= sizes[:, 1:]).all()       # never larger than the source
    for r, (a, b) in enumerate(RATIOS + ((191, 100), (3, 2))):
        big = (sizes[:, 0] >= 45 * a) & (sizes[:, 1] >= 45 * b)
        if a * b < 1000:   # small ratios: the exact ratio whenever the source holds a few multiples
            assert (w[big, r] * b == h[big, r] * a).all(), (a, b)
        # as close as integers allow: within half a pixel of the target on the shorter fitted side
        err = np.abs(w[:, r] * b - h[:, r] * a) / np.maximum(a, b)
        assert (err <= np.maximum(w[:, r], h[:, r]) * 0.02 + 1).all()


def test_window_is_the_largest_of_the_exact_ratio():
    sizes = _sizes(200, seed=2)
    win = window_sizes(sizes, RATIOS)
    for r, (a, b) in enumerate(RATIOS):
        g = math.gcd(a, b)
        a, b = a // g, b // g
        k = np.minimum(sizes[:, 0] // a, sizes[:, 1] // b)
        exact = win[:, r, 0, 0] * b == win[:, r, 0, 1] * a
        # exact windows are the largest multiple that fits; rounded ones are at least as large
        assert (win[exact, r, 0, 0] == k[exact] * a).all()
        assert (win[~exact, r, 0, 0] * win[~exact, r, 0, 1] >= (k[~exact] * a) * (k[~exact] * b)).all()
        # one side of the window spans the source (up to the exact-ratio rounding)
        slack_w = sizes[:, 0] - win[:, r, 0, 0]
        slack_h = sizes[:, 1] - win[:, r, 0, 1]
        assert (np.minimum(slack_w, slack_h)[exact] < np.maximum(a, b)).all()


def test_known_windows():
    win = window_sizes([(1024, 768), (768, 1024), (1000, 1000), (1, 1), (7, 3)], RATIOS)
    assert win[0, :, 0].tolist() == [[768, 768], [1024, 576], [432, 768], [612, 765]]
    assert win[1, :, 0].tolist() == [[768, 768], [768, 432], [576, 1024], [768, 960]]
    assert win[2, :, 0].tolist() == [[1000, 1000], [992, 558], [558, 992], [800, 1000]]
    assert win[3, :, 0].tolist() == [[1, 1]] * 4
    assert win[4, :, 0].tolist() == [[3, 3], [5, 3], [2, 3], [2, 3]]


def test_smaller_scales_keep_the_ratio():
    win = window_sizes([(1024, 768)], RATIOS, CropConfig(min_scale=0.5).scales)
    assert win.shape == (1, 4, 6, 2)
    for r, (a, b) in enumerate(RATIOS):
        w, h = win[0, r, :, 0], win[0, r, :, 1]
        assert (np.diff(w) < 0).all() and (np.abs(w * b - h * a) <= max(a, b)).all()
        assert w[-1] >= 0.5 * w[0] - a


# -- choose_crops --------------------------------------------------------------------------------

def _check_geometry(crops, size, config):
    width, height = size
    labels = [ratio_label(r) for r in config.aspect_ratios]
    assert {c.aspect_ratio for c in crops} == set(labels)
    assert [c.aspect_ratio for c in crops if c.rank == 0] == labels
    for c in crops:
        assert isinstance(c, Crop)
        assert all(type(v) is int for v in (c.x, c.y, c.width, c.height))
        assert 0 <= c.x and c.x + c.width <= width and c.width >= 1
        assert 0 <= c.y and c.y + c.height <= height and c.height >= 1
        assert 0.0 <= c.saliency_kept <= 1.0


def test_choose_crops_geometry_on_random_batches():
    config = CropConfig()
    sizes = [tuple(s) for s in _sizes(60, seed=3)]
    maps = _random_maps(len(sizes), 24, 32)
    out = choose_crops(maps, sizes, config)
    assert len(out) == len(sizes)
    expected = window_sizes(sizes, config.aspect_ratios)
    for i, (crops, size) in enumerate(zip(out, sizes)):
        _check_geometry(crops, size, config)
        assert [[c.width, c.height] for c in crops] == expected[i, :, 0].tolist()  # largest, scale 1


def test_batch_equals_one_by_one():
    sizes = [(1024, 768), (768, 1024), (640, 640), (4000, 3000)]
    maps = _random_maps(4, 30, 40, seed=4)
    together = choose_crops(maps, sizes)
    alone = [choose_crops(maps[i:i + 1], sizes[i:i + 1])[0] for i in range(4)]
    assert together == alone


def test_maximises_mass_like_brute_force():
    # Source 10x the map: every integer window's mass can be summed on source pixels directly.
    rng = np.random.default_rng(5)
    for seed in range(3):
        ld = _blob(12, 16, rng.uniform(0, 12), rng.uniform(0, 16), rng.uniform(1, 4))
        ld = ld + rng.normal(size=ld.shape).astype(np.float32) * 0.5
        dens = _upsampled_mass(ld, 10)                     # (120, 160)
        sat = np.pad(dens.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
        crops = choose_crops(ld[None], [(160, 120)])[0]
        for c in crops:
            xs = np.arange(0, 160 - c.width + 1)[None, :]
            ys = np.arange(0, 120 - c.height + 1)[:, None]
            mass = sat[ys + c.height, xs + c.width] - sat[ys, xs + c.width] \
                - sat[ys + c.height, xs] + sat[ys, xs]
            assert c.saliency_kept == pytest.approx(mass[c.y, c.x], abs=1e-9)
            assert c.saliency_kept >= mass.max() - 1e-6, (seed, c)


def _brute_force_masses(dens, w, h):
    """Mass of the (w, h) window at every integer offset of a source-pixel density: (H - h + 1, W - w + 1)."""
    sat = np.pad(dens.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    ys = np.arange(dens.shape[0] - h + 1)[:, None]
    xs = np.arange(dens.shape[1] - w + 1)[None, :]
    return sat[ys + h, xs + w] - sat[ys, xs + w] - sat[ys + h, xs] + sat[ys, xs]


def _iou_grid(c, w, h, shape):
    """IoU of crop ``c`` with the (w, h) window at every offset of ``_brute_force_masses``' grid."""
    ys = np.arange(shape[0])[:, None]
    xs = np.arange(shape[1])[None, :]
    ix = np.clip(np.minimum(xs + w, c.x + c.width) - np.maximum(xs, c.x), 0, None)
    iy = np.clip(np.minimum(ys + h, c.y + c.height) - np.maximum(ys, c.y), 0, None)
    return ix * iy / (w * h + c.width * c.height - ix * iy)


@pytest.mark.parametrize("seed", range(4))
def test_largest_window_is_the_exact_best_on_random_maps(seed):
    # Rough maps with several peaks (where a coarse grid and local refinement can stop on the wrong peak),
    # sources a whole multiple of the map so that every window's mass is summed on source pixels: the
    # chosen window keeps the brute-force maximum (within tie_tolerance) for every ratio, the second rank
    # the maximum among windows overlapping rank 0 at most candidate_overlap, and inside a focus box the
    # maximum among the windows containing it.
    rng = np.random.default_rng(100 + seed)
    # headroom_weight=0: the search of the plain mass (head room is a term on top, tested below).
    config = CropConfig(aspect_ratios=RATIOS + ((3, 1), (1, 3)), candidates=2, headroom_weight=0.0)
    for _ in range(6):
        h, w = (int(v) for v in rng.integers(6, 24, 2))
        factor = int(rng.integers(3, 40))
        ld = (rng.normal(size=(h, w)) * 2).astype(np.float32)
        for _peak in range(3):
            ld[rng.integers(0, h), rng.integers(0, w)] += 4
        dens = _upsampled_mass(ld, factor)
        size = (w * factor, h * factor)
        box = (int(rng.integers(0, size[0])), int(rng.integers(0, size[1])), 1, 1)     # one pixel
        for focus in (None, box):
            crops = choose_crops(ld[None], [size], config, focus=[focus])[0]
            for label in {c.aspect_ratio for c in crops}:
                ranked = [c for c in crops if c.aspect_ratio == label]
                first = ranked[0]
                mass = _brute_force_masses(dens, first.width, first.height)
                if focus is not None:       # offsets whose window holds the focus pixel
                    ys, xs = np.mgrid[0:mass.shape[0], 0:mass.shape[1]]
                    fx, fy = int(focus[0]), int(focus[1])
                    mass = np.where((xs <= fx) & (fx < xs + first.width) & (ys <= fy) & (fy < ys + first.height),
                                    mass, -np.inf)
                assert first.saliency_kept == pytest.approx(mass[first.y, first.x], abs=1e-9)
                assert first.saliency_kept >= mass.max() - config.tie_tolerance, (seed, focus, first)
                if len(ranked) > 1:
                    second = ranked[1]
                    apart = _iou_grid(first, first.width, first.height, mass.shape) <= config.candidate_overlap
                    assert second.saliency_kept >= np.where(apart, mass, -np.inf).max() - config.tie_tolerance


def test_smaller_scales_still_compete_with_the_exact_largest_window():
    # min_scale < 1: the largest window is searched exactly and a smaller one wins only on score.
    rng = np.random.default_rng(7)
    config = CropConfig(min_scale=0.7, area_weight=0.1, headroom_weight=0.0)
    for _ in range(5):
        ld = (rng.normal(size=(12, 16)) * 2).astype(np.float32)
        dens = _upsampled_mass(ld, 20)
        crops = choose_crops(ld[None], [(320, 240)], config)[0]
        largest = window_sizes([(320, 240)], config.aspect_ratios)[0, :, 0]
        for c, (w, h) in zip(crops, largest):
            best_largest = _brute_force_masses(dens, w, h).max() - config.area_weight
            assert c.score >= best_largest - config.tie_tolerance


@pytest.mark.parametrize("seed", range(3))
def test_headroom_is_the_exact_best_of_its_score(seed):
    # A portrait source, a whole multiple of the map: the 16:9 window spans the width and slides down. Its score
    # at every offset, brute force: the mass minus headroom_weight x the salient mass (density above
    # headroom_level x the peak and above the mean) within `headroom` of the window's height above and below
    # its top edge, read between source rows by linear interpolation (the density is constant inside a pixel),
    # nothing when the top is y = 0.
    rng = np.random.default_rng(300 + seed)
    ld = (rng.normal(size=(24, 12)) * 2).astype(np.float32)
    ld[int(rng.integers(4, 12)), int(rng.integers(2, 10))] += 5                # a subject in the upper half
    factor = 20
    config = CropConfig(aspect_ratios=((16, 9),), headroom_weight=float(rng.uniform(0.5, 3.0)),
                        headroom=float(rng.uniform(0.05, 0.3)))
    c = choose_crops(ld[None], [(12 * factor, 24 * factor)], config)[0][0]
    p = np.exp(ld.astype(np.float64))
    p /= p.sum()
    salient = np.maximum(p - max(config.headroom_level * p.max(), 1.0 / p.size), 0.0)
    mass = _brute_force_masses(_upsampled_mass(ld, factor), c.width, c.height)[:, c.x]
    rows = np.concatenate([[0.0], np.cumsum(np.kron(salient, np.ones((factor, factor))).sum(1) / factor ** 2)])
    ys = np.arange(mass.size)
    band = np.subtract(*(np.interp(ys + sign * config.headroom * c.height, np.arange(rows.size), rows)
                         for sign in (1, -1)))
    score = mass - config.headroom_weight * np.where(ys > 0, band, 0.0)
    assert c.score == pytest.approx(score[c.y], abs=1e-9)
    assert c.saliency_kept == pytest.approx(mass[c.y], abs=1e-9)
    assert c.score >= score.max() - config.tie_tolerance


def test_headroom_moves_the_crop_up_from_a_face_near_its_top():
    # A portrait: a face (tight blob) above a body (broad blob). The plain best 16:9 window starts just above
    # the face's centre; with head room it starts higher and still holds the face.
    ld = np.logaddexp(_blob(45, 30, 14, 15, 1.5), _blob(45, 30, 27, 15, 4) + np.log(0.8)).astype(np.float32)
    plain = choose_crops(ld[None], [(600, 900)], CropConfig(aspect_ratios=((16, 9),), headroom_weight=0.0))[0][0]
    room = choose_crops(ld[None], [(600, 900)], CropConfig(aspect_ratios=((16, 9),)))[0][0]
    face_y = 14.5 * 20
    assert room.y < plain.y < face_y < room.y + room.height
    assert room.score < room.saliency_kept < plain.saliency_kept


def test_headroom_costs_nothing_to_a_crop_at_the_top_of_the_picture():
    # A subject right at the picture's top: the crop starts at y = 0, with or without head room (no room to add).
    ld = _blob(45, 30, 2, 15, 2)
    for weight in (0.0, 1.0, 5.0):
        c = choose_crops(ld[None], [(600, 900)], CropConfig(aspect_ratios=((16, 9),), headroom_weight=weight))[0][0]
        assert c.y == 0 and c.score == pytest.approx(c.saliency_kept)


def test_uniform_map_gives_centred_crops():
    out = choose_crops(np.zeros((2, 20, 30), np.float32), [(1000, 700), (701, 1001)])
    for crops, (w, h) in zip(out, [(1000, 700), (701, 1001)]):
        for c in crops:
            assert c.x == (w - c.width) // 2 and c.y == (h - c.height) // 2
            assert c.saliency_kept == pytest.approx(c.width * c.height / (w * h), abs=1e-6)


def test_ties_go_to_the_centre():
    # One hot cell near the left edge: every 1:1 window with x in [0, 80] keeps all of it;
    # the one nearest the centre is x = 80.
    ld = np.full((48, 64), -60.0, np.float32)
    ld[10, 5] = 0.0
    c = choose_crops(ld[None], [(1024, 768)], CropConfig(aspect_ratios=((1, 1),)))[0][0]
    assert (c.x, c.y, c.width, c.height) == (80, 0, 768, 768)
    assert c.saliency_kept == pytest.approx(1.0)


def test_follows_the_subject():
    ld = _blob(48, 64, 24, 56, 3)          # subject at the right edge
    crops = choose_crops(ld[None], [(1024, 768)])[0]
    square = crops[0]
    assert square.x + square.width == 1024
    assert square.saliency_kept > 0.99
    assert focal_point(ld, (1024, 768)) == (904, 392)


def test_degenerate_maps_fall_back_to_uniform():
    maps = np.stack([np.full((8, 8), -np.inf), np.full((8, 8), np.nan), np.full((8, 8), 1e4)])
    out = choose_crops(maps.astype(np.float32), [(300, 200)] * 3)
    for crops in out:
        _check_geometry(crops, (300, 200), CropConfig())
        assert crops[0].x == 50 and crops[0].saliency_kept == pytest.approx(2 / 3, abs=1e-6)


def test_tiny_and_huge_sources():
    maps = _random_maps(4, 6, 8, seed=6)
    sizes = [(1, 1), (2, 1), (3, 7), (20000, 14000)]
    for crops, size in zip(choose_crops(maps, sizes), sizes):
        _check_geometry(crops, size, CropConfig())


def test_focus_point_and_box_are_contained():
    ld = _blob(48, 64, 24, 5, 2)           # the model looks left
    size = (1024, 768)
    for focus in [(1000, 700), (1023, 767), Focus(900, 10, 100, 50), (600, 0, 300, 768)]:
        f = Focus.coerce(focus)
        for c in choose_crops(ld[None], [size], focus=[focus])[0]:
            if f.width <= c.width:
                assert c.x <= int(f.x) and int(math.ceil(f.x + f.width)) <= c.x + c.width \
                    or (f.width == 0 and c.x <= f.x < c.x + c.width)
            if f.height <= c.height:
                assert c.y <= int(f.y) and (f.y + max(f.height, 1) <= c.y + c.height)
    # A box wider than the window: the window stays inside the box.
    c = choose_crops(ld[None], [size], CropConfig(aspect_ratios=((9, 16),)),
                     focus=[(500, 0, 500, 768)])[0][0]
    assert 500 <= c.x and c.x + c.width <= 1000
    # None leaves the model in charge.
    assert choose_crops(ld[None], [size], focus=[None]) == choose_crops(ld[None], [size])
    with pytest.raises(ValueError):
        choose_crops(ld[None], [size], focus=[(1, 2, 3)])


def test_a_focus_region_past_the_picture_is_clamped_to_it():
    ld = np.zeros((24, 32))
    size = (1024, 768)
    for focus in [(1e308, 1e308, 1e308, 1e308), (1e308, 1e308), (0, 0, 1e308, 1e308)]:
        crops = choose_crops(ld[None], [size], focus=[focus])[0]
        assert len(crops) == 4
        for c in crops:
            assert 0 <= c.x and c.x + c.width <= size[0] and 0 <= c.y and c.y + c.height <= size[1]
            if focus[0] > size[0]:  # the last pixel is kept
                assert c.x + c.width == size[0] and c.y + c.height == size[1]


def test_ranked_candidates():
    ld = _blob(48, 64, 24, 32, 20)
    config = CropConfig(candidates=3, candidate_overlap=0.5)
    crops = choose_crops(ld[None], [(2000, 600)], config)[0]
    single = choose_crops(ld[None], [(2000, 600)])[0]
    _check_geometry(crops, (2000, 600), config)
    assert [c for c in crops if c.rank == 0] == single
    for label in {c.aspect_ratio for c in crops}:
        ranked = [c for c in crops if c.aspect_ratio == label]
        assert [c.rank for c in ranked] == list(range(len(ranked)))
        assert all(a.score >= b.score for a, b in zip(ranked[1:], ranked[2:]))
        for i, a in enumerate(ranked):
            for b in ranked[:i]:
                ix = max(0, min(a.x + a.width, b.x + b.width) - max(a.x, b.x))
                iy = max(0, min(a.y + a.height, b.y + b.height) - max(a.y, b.y))
                inter = ix * iy
                assert inter / (a.width * a.height + b.width * b.height - inter) <= 0.5 + 1e-9
    # 1:1 and 4:5 windows in a 2000x600 source leave room for three candidates.
    assert sum(c.aspect_ratio == "1:1" for c in crops) == 3
    # A square source has a single 1:1 window: fewer ranks come back, never a duplicate.
    square = choose_crops(ld[None], [(600, 600)], config)[0]
    assert sum(c.aspect_ratio == "1:1" for c in square) == 1


def test_scale_search_prefers_a_small_subject_window():
    ld = _blob(48, 64, 24, 32, 1.5)        # a small subject in the middle
    config = CropConfig(aspect_ratios=((1, 1),), min_scale=0.4, area_weight=0.2)
    c = choose_crops(ld[None], [(1024, 768)], config)[0][0]
    assert c.width == c.height < 768 and c.width >= 0.4 * 768 - 1
    assert c.x <= 512 <= c.x + c.width and c.saliency_kept > 0.95
    # Spread-out saliency keeps the largest window.
    wide = choose_crops(np.zeros((1, 48, 64), np.float32), [(1024, 768)], config)[0][0]
    assert wide.width == 768


def test_penalties_keep_geometry():
    config = CropConfig(border_weight=1.0, composition_weight=0.5, candidates=2, min_scale=0.8)
    sizes = [(1024, 768), (333, 999), (50, 40)]
    for crops, size in zip(choose_crops(_random_maps(3, 24, 32, seed=7), sizes, config), sizes):
        _check_geometry(crops, size, config)


def test_border_penalty_avoids_cutting_a_blob():
    # Two blobs: one that a 1:1 window can hold whole, one it would cut.
    ld = np.logaddexp(_blob(48, 64, 24, 10, 4), _blob(48, 64, 24, 50, 4) + np.log(1.05))
    plain = choose_crops(ld[None], [(1024, 768)], CropConfig(aspect_ratios=((1, 1),)))[0][0]
    careful = choose_crops(ld[None], [(1024, 768)],
                           CropConfig(aspect_ratios=((1, 1),), border_weight=2.0))[0][0]
    assert careful.score <= careful.saliency_kept
    assert plain.saliency_kept >= careful.saliency_kept - 1e-9


def test_crops_a_real_exif_rotated_photo():
    cv2 = pytest.importorskip("cv2")
    path = SHARED / "data/fixtures/exif_orientation/Portrait_6.jpg"
    if not path.exists():
        pytest.skip("shared fixtures absent")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)       # OpenCV applies the EXIF orientation
    height, width = image.shape[:2]
    assert height > width                                  # the portrait is upright
    ld = _blob(32, 24, 10, 12, 4)
    for c in choose_crops(ld[None], [(width, height)])[0]:
        crop = image[c.y:c.y + c.height, c.x:c.x + c.width]
        assert crop.shape[:2] == (c.height, c.width)
        a, b = map(int, c.aspect_ratio.split(":"))
        assert abs(c.width * b - c.height * a) <= max(a, b)


def test_focal_point():
    ld = np.full((10, 20), -5.0)
    ld[3, 17] = 0.0
    assert focal_point(ld, (2000, 1000)) == (1750, 350)
    assert focal_point(ld, (1, 1)) == (0, 0)
    with pytest.raises(ValueError):
        focal_point(ld[None], (10, 10))


def test_read_focus_table(tmp_path):
    from gazecrop.transforms.focus import read_focus_table

    path = tmp_path / "focus.csv"
    path.write_text("source,x,y,width,height\n"
                    "gs://b/in/a.jpg,10,20,,\n"
                    "kodak/kodim01.png,1.5,2,30,40\n")
    table = read_focus_table(str(path))
    assert table == {"gs://b/in/a.jpg": Focus(10, 20), "kodak/kodim01.png": Focus(1.5, 2, 30, 40)}
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"source": ["x.png"], "x": [5.0], "y": [6.0]}), tmp_path / "f.parquet")
    assert read_focus_table(str(tmp_path / "f.parquet")) == {"x.png": Focus(5, 6)}
    (tmp_path / "bad.csv").write_text("source,x\nx.png,1\n")
    with pytest.raises(ValueError, match="lacks"):
        read_focus_table(str(tmp_path / "bad.csv"))
    (tmp_path / "neg.csv").write_text("source,x,y,width,height\nx.png,1,1,-5,3\n")
    with pytest.raises(ValueError, match="row 2"):
        read_focus_table(str(tmp_path / "neg.csv"))


def test_empty_batch_and_bad_arguments():
    assert choose_crops(np.zeros((0, 8, 8), np.float32), []) == []
    with pytest.raises(ValueError):
        choose_crops(np.zeros((2, 8, 8), np.float32), [(10, 10)])
    with pytest.raises(ValueError):
        choose_crops(np.zeros((1, 8, 8), np.float32), [(0, 10)])
    with pytest.raises(ValueError):
        choose_crops(np.zeros((8,), np.float32), [(10, 10)])


# ----------------------------------------------------------------------------------------------
# Face boxes (CropConfig.face_weight): the faces a model's face prior found, kept whole
# ----------------------------------------------------------------------------------------------

def _portrait():
    """A portrait's map (600 x 900 source, 20 px cells): a face (tight blob) above a body (broad blob), and the
    face's box (x0, y0, x1, y1, score) normalised: 240..360 x 230..350 px, its head up to y = 230 - 0.6 * 120."""
    ld = np.logaddexp(_blob(45, 30, 14, 15, 1.5), _blob(45, 30, 24, 15, 4) + np.log(0.3)).astype(np.float32)
    return ld, np.array([[0.4, 230 / 900, 0.6, 350 / 900, 0.9]], np.float32)


def test_face_boxes_keep_the_head_whole():
    # The map ends at the forehead: without the face boxes the 16:9 crop starts at y 200, through the hair.
    ld, face = _portrait()
    config = CropConfig(aspect_ratios=((16, 9),), face_limit=1.0)
    plain = choose_crops(ld[None], [(600, 900)], dataclasses.replace(config, face_weight=0.0), faces=[face])[0][0]
    kept = choose_crops(ld[None], [(600, 900)], config, faces=[face])[0][0]
    head_top = 230 - config.face_head * 120
    assert plain.y > head_top + 20
    assert kept.y <= head_top and kept.y + kept.height >= 350
    assert kept.saliency_kept < plain.saliency_kept and kept.score == pytest.approx(kept.saliency_kept, abs=1e-9)


def test_face_boxes_give_up_at_most_face_limit():
    # The same portrait at the default limit: keeping the hair would cost more predicted mass than face_limit,
    # so the crop stays where the map puts it and its score is the mass less the limit.
    ld, face = _portrait()
    config = CropConfig(aspect_ratios=((16, 9),), face_limit=0.01)
    plain = choose_crops(ld[None], [(600, 900)], dataclasses.replace(config, face_weight=0.0), faces=[face])[0][0]
    limited = choose_crops(ld[None], [(600, 900)], config, faces=[face])[0][0]
    assert limited.y == plain.y and limited.score == pytest.approx(plain.score - 0.01, abs=1e-9)


def test_a_face_taller_than_the_crop_is_kept_down_to_the_chin():
    # A close-up: the face box (150..700 px) is taller than any 16:9 crop (333 px); the crop keeps its bottom part
    # (down to the chin) and cuts above, where the map alone centres on the middle of the picture.
    ld = _blob(45, 30, 16, 15, 5)
    face = np.array([[0.2, 150 / 900, 0.8, 700 / 900, 0.9]], np.float32)
    config = CropConfig(aspect_ratios=((16, 9),), face_limit=1.0)
    plain = choose_crops(ld[None], [(600, 900)], dataclasses.replace(config, face_weight=0.0), faces=[face])[0][0]
    kept = choose_crops(ld[None], [(600, 900)], config, faces=[face])[0][0]
    assert plain.y + plain.height < 600
    assert kept.y + kept.height == 700


def test_no_faces_change_nothing():
    maps, sizes = _random_maps(3, 24, 32, seed=3), [(640, 480), (480, 640), (500, 500)]
    plain = choose_crops(maps, sizes)
    assert choose_crops(maps, sizes, faces=[None, np.zeros((0, 5), np.float32), None]) == plain
    # A face with the term off, and crop_images passing faces through per map shape.
    face = np.array([[0.4, 0.3, 0.6, 0.5, 0.9]], np.float32)
    assert choose_crops(maps, sizes, CropConfig(face_weight=0.0), faces=[face, face, face]) == plain
    assert [list(f.crops) for f in crop_images(list(maps), sizes, faces=[None] * 3)] == plain
    with pytest.raises(ValueError, match="face entries"):
        choose_crops(maps, sizes, faces=[None])
