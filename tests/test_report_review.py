"""The report as a reviewer uses it, on a real run (tiny model): the heat map without --save_saliency,
and in a real headless Chromium (Selenium, the system chromedriver) the filters and the click-to-fix
loop: clicks on the pictures -> the exported --focus CSV -> `gazecrop run --focus --incremental`."""

import csv
import io
import shutil
import time
from pathlib import Path

import cv2
import pytest

from conftest import read_tables, run_gazecrop
from gazecrop.pipeline import report

RATIOS = "1:1,16:9,9:16"
PHOTOS = ("kodak/kodim01.png", "kodak/kodim05.png", "kodak/kodim23.png")  # 768x512 each
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def _photos(fixtures_dir, folder: Path) -> list[str]:
    folder.mkdir(parents=True)
    for name in PHOTOS:
        shutil.copy(fixtures_dir / name, folder / Path(name).name)
    return sorted(str(p) for p in folder.iterdir())


def _crop_run(inputs: Path, output: Path, *extra: str):
    return run_gazecrop(["--input", str(inputs / "*"), "--output", str(output), "--aspect_ratios", RATIOS,
                         "--progress", "off", *extra])


def test_saliency_preview_by_default_changes_no_crop_or_row(fixtures_dir, tmp_path):
    """Every run keeps a small heat-map preview per image (the report shows it without --save_saliency);
    a run without previews writes the very same crops and rows."""
    inputs = tmp_path / "in"
    sources = _photos(fixtures_dir, inputs)
    _crop_run(inputs, tmp_path / "with")
    _crop_run(inputs, tmp_path / "without", "--saliency_preview=false")

    previews = sorted((tmp_path / "with" / "saliency").glob("*.png"))
    assert len(previews) == len(sources) and not list((tmp_path / "with" / "saliency").glob("*.npy"))
    for path in previews:
        grey = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert grey.ndim == 2 and max(grey.shape) <= 128 and grey.max() == 255  # 8-bit, peak = 255
        assert path.stat().st_size < 8000
    assert not (tmp_path / "without" / "saliency").exists()

    def crops(root):
        return {p.relative_to(root): p.read_bytes() for p in (root / "crops").rglob("*") if p.is_file()}

    def rows(root):
        return sorted(tuple(sorted((k, str(v).replace(str(root), "ROOT")) for k, v in r.items()
                                   if k != "processed_at")) for r in read_tables(root)[0])
    assert crops(tmp_path / "with") == crops(tmp_path / "without")
    assert rows(tmp_path / "with") == rows(tmp_path / "without")

    page = Path(report.write_report(str(tmp_path / "with"))).read_text()
    assert "no saliency map" not in page                        # every image has its heat map
    assert "no saliency map" in Path(report.write_report(str(tmp_path / "without"))).read_text()


# ------------------------------------------------------------------------------------------------
# The browser
# ------------------------------------------------------------------------------------------------

@pytest.fixture
def browser(tmp_path):
    """Headless Chromium driven through the system chromedriver (Selenium Manager never runs)."""
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("apt-get install chromium chromium-driver")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(arg)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior",
                           {"behavior": "allow", "downloadPath": str(downloads)})
    try:
        yield driver, downloads
    finally:
        driver.quit()


def _visible_sources(driver) -> set[str]:
    from selenium.webdriver.common.by import By
    return {s.get_attribute("data-source") for s in driver.find_elements(By.CSS_SELECTOR, "section.entry")
            if s.is_displayed()}


def _set_threshold(driver, value: float) -> None:
    """Move the saliency_kept slider as a person would (its value, then the `input` event)."""
    slider = driver.find_element("id", "kept-filter")
    driver.execute_script("arguments[0].value = arguments[1];"
                          "arguments[0].dispatchEvent(new Event('input', {bubbles: true}));",
                          slider, str(value))


def _outside(row: dict) -> float:
    """An x in the source that the row's crop leaves out, in the middle of the wider leftover side."""
    left, right = row["crop_x"], row["source_width"] - row["crop_x"] - row["crop_width"]
    return left / 2 if left > right else row["crop_x"] + row["crop_width"] + right / 2


def _offset(frame, x: float, y: float, width: int, height: int) -> tuple[int, int]:
    """Selenium's pointer offset (from the element's centre, CSS pixels) of source pixel (x, y)."""
    w, h = frame.size["width"], frame.size["height"]
    return round(x * w / width - w / 2), round(y * h / height - h / 2)


def _contains(row: dict, x: float, y: float, width: float = 0, height: float = 0) -> bool:
    """Whether the row's crop holds the hint (as gazecrop.search reads it: whole pixels it touches)."""
    return (row["crop_x"] <= int(x) and int(-(-(x + width) // 1)) <= row["crop_x"] + row["crop_width"]
            and row["crop_y"] <= int(y) and int(-(-(y + height) // 1)) <= row["crop_y"] + row["crop_height"])


def test_review_filters_and_click_to_fix_loop(fixtures_dir, tmp_path, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver, downloads = browser
    inputs, root = tmp_path / "in", tmp_path / "out"
    sources = _photos(fixtures_dir, inputs)
    _crop_run(inputs, root)
    before = {(r["source_uri"], r["aspect_ratio"]): r for r in read_tables(root)[0]}
    page = report.write_report(str(root))
    driver.get(Path(page).as_uri())

    # Short headings: names relative to the inputs' folder.
    headings = [h.text for h in driver.find_elements(By.CSS_SELECTOR, "section.entry h2")]
    assert sorted(headings) == sorted(Path(s).name for s in sources)

    # Ratio filter: only 9:16 crops and rectangles stay; every image still shows (threshold 1).
    Select(driver.find_element(By.ID, "ratio-filter")).select_by_value("9:16")
    assert _visible_sources(driver) == set(sources)
    shown = [f for f in driver.find_elements(By.CSS_SELECTOR, "figure[data-ratio]") if f.is_displayed()]
    assert {f.get_attribute("data-ratio") for f in shown} == {"9:16"} and len(shown) == len(sources)
    assert all(r.get_attribute("data-ratio") == "9:16" or not r.is_displayed()
               for r in driver.find_elements(By.CSS_SELECTOR, "rect[data-ratio]"))

    # saliency_kept threshold, between the least and the next 9:16 value: only the least stays.
    kept = sorted((before[(s, "9:16")]["saliency_kept"], s) for s in sources)
    threshold = round((kept[0][0] + kept[1][0]) / 2, 3)
    assert kept[0][0] <= threshold < kept[1][0]
    _set_threshold(driver, threshold)
    assert _visible_sources(driver) == {kept[0][1]}
    # ... with every ratio again, an image shows if any of its main crops keeps at most the threshold.
    Select(driver.find_element(By.ID, "ratio-filter")).select_by_value("")
    least = {s: min(before[(s, r)]["saliency_kept"] for r in RATIOS.split(",")) for s in sources}
    assert _visible_sources(driver) == {s for s in sources if least[s] <= threshold}
    _set_threshold(driver, 1)
    assert _visible_sources(driver) == set(sources)

    # Click to enlarge a crop.
    driver.find_element(By.CSS_SELECTOR, "img.crop").click()
    assert driver.find_element(By.CSS_SELECTOR, "#lightbox img").size["width"] > 300
    driver.find_element(By.ID, "lightbox").click()
    assert not driver.find_elements(By.ID, "lightbox")
    first = driver.find_element(By.CSS_SELECTOR, "section.entry")
    small = first.find_element(By.CSS_SELECTOR, ".frame").size["width"]
    first.find_element(By.CSS_SELECTOR, "button.enlarge").click()    # the source, large (and back)
    assert first.find_element(By.CSS_SELECTOR, ".frame").size["width"] > 1.5 * small
    first.find_element(By.CSS_SELECTOR, "button.enlarge").click()
    assert first.find_element(By.CSS_SELECTOR, ".frame").size["width"] == small

    # Click to fix: a point on one image and a box on another, each outside its current 9:16 crop.
    pointed, boxed, untouched = sources
    frames = {s.get_attribute("data-source"): s.find_element(By.CSS_SELECTOR, ".frame")
              for s in driver.find_elements(By.CSS_SELECTOR, "section.entry")}
    w, h = 768, 512
    point = (_outside(before[(pointed, "9:16")]), 0.3 * h)
    box = (_outside(before[(boxed, "9:16")]) - 40, 0.6 * h, 80, 60)
    assert not _contains(before[(pointed, "9:16")], *point) and not _contains(before[(boxed, "9:16")], *box)
    frame = frames[pointed]
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", frame)
    ActionChains(driver).move_to_element_with_offset(frame, *_offset(frame, *point, w, h)).click().perform()
    frame = frames[boxed]
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", frame)
    start, end = _offset(frame, box[0], box[1], w, h), _offset(frame, box[0] + box[2], box[1] + box[3], w, h)
    (ActionChains(driver).move_to_element_with_offset(frame, *start).click_and_hold()
     .move_by_offset((end[0] - start[0]) // 2, (end[1] - start[1]) // 2)
     .move_to_element_with_offset(frame, *end).release().perform())

    # The exported table: in the page and as the downloaded hints.csv.
    text = driver.find_element(By.ID, "focus-csv").get_attribute("value")
    driver.find_element(By.ID, "download-hints").click()
    hints = downloads / "hints.csv"
    for _ in range(100):
        if hints.exists():
            break
        time.sleep(0.1)
    assert hints.read_text() == text
    rows = {r["source"]: r for r in csv.DictReader(io.StringIO(text))}
    assert set(rows) == {pointed, boxed}
    tolerance = w / frames[pointed].size["width"] + 1                 # one CSS pixel, in source pixels
    p = rows[pointed]
    assert p["width"] == p["height"] == ""                            # a point
    assert abs(float(p["x"]) - point[0]) <= tolerance and abs(float(p["y"]) - point[1]) <= tolerance
    b = [float(rows[boxed][k]) for k in ("x", "y", "width", "height")]
    assert all(abs(got - want) <= 2 * tolerance for got, want in zip(b, box))
    assert 0 <= b[0] and b[0] + b[2] <= w and 0 <= b[1] and b[1] + b[3] <= h

    # The rerun re-crops exactly the two hinted images, and their crops now hold the hints.
    summary = _crop_run(inputs, root, "--focus", str(hints), "--incremental")
    assert (summary.processed, summary.skipped) == (2, 1)
    after = {(r["source_uri"], r["aspect_ratio"]): r for r in read_tables(root)[0]}
    for ratio in RATIOS.split(","):
        assert _contains(after[(pointed, ratio)], float(p["x"]), float(p["y"]))
        assert _contains(after[(boxed, ratio)], *b)
        assert after[(untouched, ratio)] == before[(untouched, ratio)]
