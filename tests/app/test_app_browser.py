"""The web app in a real headless browser (Debian's chromium + chromedriver, through Selenium).

Skips, saying why, where chromium, chromedriver or selenium is absent (README: how to install them). Loads
the page from a real uvicorn server on 127.0.0.1, uploads a real gray photo, picks a recommended reference,
and a second one, waits for the result, downloads the PNG (input's size, input's L); a corrupt upload shows its error and the
next upload works. ``EXEMPLAR_COLOR_APP_SCREENSHOT=docs/app.png`` also saves the screenshot there.
"""

from __future__ import annotations

import http.client
import io
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("starlette", reason="the app extra (starlette) is not installed: pip install -e '.[app]'")
pytest.importorskip("uvicorn", reason="the app extra (uvicorn) is not installed: pip install -e '.[app]'")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")

from exemplar_color import Colorizer  # noqa: E402
from exemplar_color.app import create_app  # noqa: E402
from exemplar_color.color import rgb_to_lab  # noqa: E402

from conftest import small_gallery  # noqa: E402

LEVELS = ["relu3_1", "relu2_1", "relu1_1"]
CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = [pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="no chromium/chromedriver on PATH (Debian: apt-get install chromium chromium-driver; see README)"),
    pytest.mark.slow]  # a server and a browser in subprocesses


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory, tv_weights, data_dir):
    import uvicorn

    root = tmp_path_factory.mktemp("browser")
    index = root / "g.index"
    small_gallery([data_dir / "kodak" / n for n in ("kodim05.png", "kodim23.png", "kodim13.png", "kodim03.png")],
                  root / "gallery", index, tv_weights).close()
    app = create_app(lambda: Colorizer(device="cpu", vgg_weights=tv_weights, vgg_variant="torchvision",
                                       levels=LEVELS, size=96, model="analogy", index=index), index=index)
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    end = time.time() + 30
    while not srv.started and time.time() < end:
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}", port
    srv.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1360,1250", "--no-first-run", "--disable-extensions"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _wait(fn, timeout: float = 240.0, what: str = "condition"):
    end = time.time() + timeout
    while time.time() < end:
        value = fn()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _lightness(img: Image.Image) -> np.ndarray:
    arr = torch.from_numpy(np.asarray(img.convert("RGB"), np.float32) / 255).permute(2, 0, 1)[None]
    return rgb_to_lab(arr)[0, 0].numpy()


def test_upload_pick_colorize_download_and_recover_from_a_corrupt_upload(server, browser, data_dir, tmp_path):
    from selenium.webdriver.common.by import By

    url, port = server
    gray = tmp_path / "parrots_gray.png"
    Image.open(data_dir / "kodak" / "kodim23.png").convert("L").resize((384, 256)).save(gray)
    browser.get(url)
    assert browser.title == "exemplar-color"
    browser.find_element(By.ID, "target-file").send_keys(str(gray))
    refs = _wait(lambda: browser.find_elements(By.CSS_SELECTOR, ".ref"), what="recommended thumbnails")
    assert len(refs) == 4
    _wait(lambda: browser.execute_script("return [...document.querySelectorAll('.ref img')]"
                                         ".every(i => i.complete && i.naturalWidth > 0)"), what="thumbnails loaded")
    refs[0].click()  # the photo's colour original (recommended first) and a second one: two references
    refs[1].click()
    colorize = browser.find_element(By.ID, "colorize")
    assert colorize.is_enabled()
    colorize.click()
    _wait(lambda: browser.find_element(By.ID, "step-result").is_displayed(), what="the result")
    _wait(lambda: browser.execute_script("const i = document.getElementById('result');"
                                         "return i.complete && i.naturalWidth > 0"), what="the result image")
    assert not browser.find_element(By.ID, "message").is_displayed()
    assert browser.find_element(By.ID, "legend").text.count(".png") == 2
    href = browser.find_element(By.ID, "download").get_attribute("href")
    assert href.startswith(url + "/api/jobs/") and href.endswith("/image.png")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", href[len(url):])
    resp = conn.getresponse()
    data = resp.read()
    assert resp.status == 200 and resp.getheader("Content-Type") == "image/png"
    out = Image.open(io.BytesIO(data))
    assert out.format == "PNG" and out.size == (384, 256)
    assert np.abs(_lightness(out) - _lightness(Image.open(gray))).mean() < 0.5
    # before/after slider halfway, then the picture for the README
    browser.execute_script("const s = document.getElementById('slider'); s.value = 50;"
                           "s.dispatchEvent(new Event('input'));")
    shot = tmp_path / "app.png"
    browser.save_screenshot(str(shot))
    assert Image.open(shot).size[0] > 600
    if os.environ.get("EXEMPLAR_COLOR_APP_SCREENSHOT"):
        shutil.copy(shot, Path(os.environ["EXEMPLAR_COLOR_APP_SCREENSHOT"]))

    corrupt = tmp_path / "broken.png"
    corrupt.write_bytes(gray.read_bytes()[:300])
    browser.find_element(By.ID, "target-file").send_keys(str(corrupt))
    message = browser.find_element(By.ID, "message")
    _wait(lambda: message.is_displayed() and "broken.png" in message.text, what="the error message")
    assert "corrupt" in message.text or "not an image" in message.text
    browser.find_element(By.ID, "target-file").send_keys(str(gray))
    _wait(lambda: not message.is_displayed() and browser.find_elements(By.CSS_SELECTOR, ".ref"),
          what="the next upload's thumbnails")
