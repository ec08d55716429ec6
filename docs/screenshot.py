"""A screenshot of a `charrnn report` page as a browser shows it: the picture of the README and
of docs/en/guides/report.md.

    python docs/screenshot.py report.html docs/en/assets/report.png --height 1020 \
        --selector "#run-0 .activations"

Opens the page from its file in headless chromium (Debian's `chromium`, driven by Playwright
for Python, as the tests do), the network cut off, and saves the top `--height` pixels of a
`--width`-pixel-wide window, with below it each element a --selector names (--height 0: the
elements alone), as a PNG of at most 256 colours, which keeps it small. Needs
`pip install playwright pillow` and a chromium.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from io import BytesIO
from pathlib import Path

# chromium without these reaches out to the network for updates, sync and the like
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("page", type=Path, help="the report's HTML file")
    ap.add_argument("png", type=Path, help="the PNG to write")
    ap.add_argument("--width", type=int, default=1280, help="window width in pixels")
    ap.add_argument("--height", type=int, default=1100, help="pixels from the top to keep")
    ap.add_argument("--selector", action="append", default=[],
                    help="a CSS selector: add this element's picture below (repeatable)")
    ap.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium",
                    help="the browser to drive")
    a = ap.parse_args()
    from PIL import Image
    from playwright.sync_api import sync_playwright

    url = a.page.resolve().as_uri()
    shots = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=a.chromium, args=ARGS)
        page = browser.new_page(viewport={"width": a.width, "height": max(a.height, 800)})
        page.route("**/*", lambda r: r.continue_() if r.request.url == url else r.abort())
        page.goto(url)
        if a.height:
            shots.append(page.screenshot(clip={"x": 0, "y": 0, "width": a.width,
                                               "height": a.height}))
        shots += [page.locator(s).first.screenshot() for s in a.selector]
        browser.close()
    parts = [Image.open(BytesIO(s)).convert("RGB") for s in shots]
    gap = 12
    image = Image.new("RGB", (max(p.width for p in parts),
                              sum(p.height for p in parts) + gap * (len(parts) - 1)), "white")
    y = 0
    for part in parts:
        image.paste(part, ((image.width - part.width) // 2, y))
        y += part.height + gap
    image = image.quantize(256, dither=Image.Dither.NONE)
    a.png.parent.mkdir(parents=True, exist_ok=True)
    image.save(a.png, optimize=True)
    print(f"{a.png}: {image.width} x {image.height}, {a.png.stat().st_size:,} bytes",
          file=sys.stderr)


if __name__ == "__main__":
    main()
