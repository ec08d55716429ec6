"""The report as a person sees it: opened from its file in a real browser (Debian's chromium,
driven by Playwright), every figure is there and drawn, the page asks the network for nothing,
the console stays clean, and choosing a unit recolours the text with that unit's values.

Skipped only where no chromium is installed (.ci/run installs one) or Playwright is missing."""

import base64
import json
import re
import shutil
from io import BytesIO

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from charrnn import checkpoint as C
from charrnn.inside.record import record

# flags that keep chromium from reaching out on a machine without a network
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("no chromium installed (apt-get install chromium)")
    sync = pytest.importorskip("playwright.sync_api")
    with sync.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def opened(browser, report_page):
    """(page, requests made, console errors) of the report opened from its file."""
    path = report_page[0]
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    requests, errors = [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    url = path.as_uri()
    page.route("**/*", lambda route: route.continue_() if route.request.url == url
               else route.abort())
    page.goto(url)
    page.wait_for_load_state("load")
    yield page, requests, errors, url
    page.close()


def distinct_colours(png: bytes, box) -> int:
    """How many distinct colours the region `box` of a screenshot has (1: blank)."""
    from PIL import Image

    im = Image.open(BytesIO(png)).convert("RGB")
    x, y, w, h = (round(box[k]) for k in ("x", "y", "width", "height"))
    rgb = np.asarray(im.crop((x, y, x + w, y + h)), dtype=np.uint32)
    return len(np.unique((rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]))


def check_figures(page, x):
    """The figures shown with the curves against x: drawn at a real size, not blank; the
    curves against the other x hidden."""
    shown = page.locator(f"figure.chart:not([data-x]), figure.chart[data-x='{x}']")
    hidden = page.locator(f"figure.chart[data-x]:not([data-x='{x}'])")
    assert shown.count() == 9 and hidden.count() == 4
    png = page.screenshot(full_page=True)
    boxes = shown.evaluate_all("""figs => figs.map(f => {
        const r = f.querySelector("svg").getBoundingClientRect();
        return {name: f.dataset.figure, paths: f.querySelectorAll("svg path").length,
                x: r.left + scrollX, y: r.top + scrollY, width: r.width, height: r.height};
    })""")
    for box in boxes:
        name = box["name"]
        assert box["width"] > 600 and box["height"] > 150, f"{name}: {box}"
        assert box["paths"] > 20, name
        assert distinct_colours(png, box) > 20, f"{name} looks blank"
    for k in range(hidden.count()):
        assert not hidden.nth(k).is_visible()


def test_every_figure_is_drawn_and_nothing_leaves_the_page(opened):
    page, requests, errors, url = opened
    check_figures(page, "step")
    page.get_by_role("button", name="training time").click()
    check_figures(page, "minutes")
    assert requests == [url], f"the page asked for {requests}"
    assert errors == []


def shown_colours(view):
    return view.locator(".act-text span:not(.gap)").evaluate_all(
        "els => els.map(e => getComputedStyle(e).backgroundColor)")


def test_choosing_a_unit_recolours_the_text_with_its_values(opened, family_runs, report_page):
    page, requests, errors, url = opened
    views = page.locator(".activations")
    assert views.count() == 5  # every run has one
    view = views.nth(0)  # the LSTM language model
    view.scroll_into_view_if_needed()
    first = view.get_attribute("data-shown")
    before = shown_colours(view)
    assert len(set(before)) > 5
    options = view.locator(".act-unit option").evaluate_all("os => os.map(o => o.value)")
    view.locator(".act-unit").select_option(options[1])
    chosen = view.get_attribute("data-shown")
    assert chosen != first and chosen.endswith("." + options[1])
    after = shown_colours(view)
    assert after != before and len(after) == len(before)

    # the values shown are the recorded unit's, character by character
    text = report_page[0].read_text()
    data = json.loads(re.search(r'class="act-data">(.*?)</script>', text).group(1)
                      .replace("<\\/", "</"))
    rec = record(C.load(family_runs["lstm"] / "best.npz"), data["text"])
    series = chosen.rpartition(".")[0]
    expect = rec.unit(chosen)
    titles = view.locator(".act-text span:not(.gap)").evaluate_all("els => els.map(e => e.title)")
    got = np.array([float(t.split("= ")[1]) for t in titles])
    lo, hi = rec.bounds(series)
    np.testing.assert_allclose(got, np.clip(expect, lo, hi), atol=(hi - lo) / 255 / 2 + 1e-3)
    raw = next(s for s in data["series"] if s["name"] == series)["values"]
    assert len(base64.b64decode(raw)) == len(data["text"]) * rec.arrays[series].shape[1]

    # hovering a unit's square shows it; leaving the squares goes back to the chosen one
    square = view.locator(".act-units span").nth(2)
    square.hover()
    assert view.get_attribute("data-shown") == f"{series}.2"
    page.mouse.move(5, 5)
    assert view.get_attribute("data-shown") == chosen
    square.click()
    page.mouse.move(5, 5)
    assert view.get_attribute("data-shown") == f"{series}.2"
    # another series: its own units and colours
    view.locator(".act-series").select_option("l0.f")
    assert view.get_attribute("data-shown").startswith("l0.f.")
    assert shown_colours(view) != after
    assert errors == [] and requests == [url]
