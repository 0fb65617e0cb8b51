"""The Space in a real browser (Playwright + Debian's Chromium): paint the mask, place a nodule by clicking, generate
with two schedulers, and check what the page shows.

Skips (saying why) when Playwright or Chromium is missing, unless REQUIRE_BROWSER=1 (CI), where it fails instead.
The screenshot goes to the test's temporary folder; with UPDATE_SCREENSHOTS=1 also to docs/images/ for the README.
"""

import io
import os
import time

import numpy as np
import PIL.Image
import pytest
from lung_space import display
from lung_space.mask_painting import css_colour, palette
from space_support import REPO_ROOT, browser_or_skip

from lung_diffusers import save_synthetic_png

SCREENSHOT = REPO_ROOT / "docs" / "images" / "space_synthesise.png"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TRACHEA, NODULE = (tuple(int(v) for v in palette(6)[k]) for k in (4, 5))


@pytest.fixture(scope="module")
def page(request):
    chromium = browser_or_skip()  # before the server starts: a skip should cost nothing
    space_server = request.getfixturevalue("space_server")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1250})
        page.set_default_timeout(60_000)
        page.goto(space_server.url)
        page.wait_for_selector("#mask-editor canvas")
        yield page
        browser.close()


def shown_picture(page, selector: str) -> tuple[str, np.ndarray]:
    """(src, RGB pixels) of the first picture under ``selector``, fetched as the browser got it."""
    src = page.locator(f"{selector} img").first.get_attribute("src")
    with PIL.Image.open(io.BytesIO(page.request.get(src).body())) as image:
        return src, np.asarray(image.convert("RGB"))


def wait_for_new_picture(page, selector: str, old_src: str | None, timeout_s: float = 90) -> np.ndarray:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        images = page.locator(f"{selector} img")
        if images.count() and images.first.get_attribute("src") != old_src:
            return shown_picture(page, selector)[1]
        page.wait_for_timeout(250)
    raise AssertionError(f"{selector} showed no new picture within {timeout_s} s")


def pixels_of(picture: np.ndarray, rgb) -> int:
    return int((picture == rgb).all(axis=-1).sum())


def assert_synthetic_mark(picture: np.ndarray) -> np.ndarray:
    """The red SYNTHETIC banner is there, pixel for pixel; returns the slice below it."""
    np.testing.assert_array_equal(display.stamp_region(picture), display.synthetic_banner(picture.shape[1]))
    return picture[display.banner_height(picture.shape[1]) :]


def generate(page, scheduler: str) -> np.ndarray:
    page.locator("#scheduler input").click()
    page.get_by_role("option", name=scheduler, exact=True).click()
    old = page.locator("#results img").first.get_attribute("src") if page.locator("#results img").count() else None
    page.locator("#generate").click()
    picture = wait_for_new_picture(page, "#results", old)
    page.wait_for_function(f"document.querySelector('#synth-status').innerText.includes('{scheduler}')")
    return picture


def test_edit_a_mask_place_a_nodule_and_generate_with_two_schedulers(page, tmp_path):
    # Paint a trachea stroke with the fixed palette.
    src, before = shown_picture(page, "#nodule-clicker")
    assert pixels_of(before, TRACHEA) == 0
    page.locator("#mask-editor button[aria-label='Color']").click()
    page.locator(f"#mask-editor button.color[style*='{css_colour(TRACHEA)}']").click()
    canvas = page.locator("#mask-editor .pixi-target canvas").bounding_box()
    x, y = canvas["x"] + canvas["width"] / 2, canvas["y"] + canvas["height"] / 2 - 90
    page.mouse.move(x - 25, y)
    page.mouse.down()
    page.mouse.move(x + 25, y, steps=10)
    page.mouse.up()
    painted = wait_for_new_picture(page, "#nodule-clicker", src)
    assert pixels_of(painted, TRACHEA) >= 8 * 8 * 4  # at least four 64-px mask pixels became trachea

    # Click in the left lung (image right) to place a 15 mm nodule: 2.7 px across at the example's 5.625 mm.
    page.locator("#nodule-diameter input[type=number]").fill("15")
    page.locator("#nodule-diameter input[type=number]").press("Enter")
    src = page.locator("#nodule-clicker img").first.get_attribute("src")
    box = page.locator("#nodule-clicker img").first.bounding_box()
    page.locator("#nodule-clicker img").first.click(position={"x": box["width"] * 0.68, "y": box["height"] * 0.5})
    placed = wait_for_new_picture(page, "#nodule-clicker", src)
    assert pixels_of(placed, NODULE) >= 8 * 8 * 3
    assert "Placed a 15 mm nodule" in page.inner_text("#synth-status")

    # Generate with two schedulers, same seed and few steps.
    page.locator("#steps input[type=number]").fill("8")
    page.locator("#steps input[type=number]").press("Enter")
    first = assert_synthetic_mark(generate(page, "DPM-Solver++"))
    overlay = assert_synthetic_mark(shown_picture(page, "#overlay")[1])
    second = assert_synthetic_mark(generate(page, "DDIM"))
    for slice_ in (first, second):
        assert slice_.shape == (512, 512, 3) and (slice_[..., 0] == slice_[..., 2]).all() and slice_.std() > 5
    assert np.abs(first.astype(int) - second.astype(int)).mean() > 1, "the two schedulers gave the same image"
    reddish = (overlay[..., 0] > 150) & (overlay[..., 1] < 100) & (overlay[..., 2] < 100)
    assert reddish.sum() >= 8 * 8 * 2, "the placed nodule is not in the mask the model got"
    assert "DDIM, 8 steps" in page.inner_text("#synth-status")

    page.screenshot(path=str(tmp_path / "space_synthesise.png"), full_page=True)
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        with PIL.Image.open(tmp_path / "space_synthesise.png") as screenshot:  # it shows synthetic slices
            save_synthetic_png(screenshot, SCREENSHOT)
