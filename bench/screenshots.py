"""The README's console screenshots, regenerated: `wizd demo --console` on a fresh database,
three jobs of bench.console's `approvals` agent left waiting for a person by a real daemon
on the same database, then Debian's headless Chromium (as tests/browser drives it) at
1280x800 on the overview, the demo's `post` job (steps, log) and Waiting on people, saved
as docs/console-*.png, quantized to 256 colours (Pillow) to stay small.

    python -m bench.screenshots
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import anyio
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from bench.console import run_approvals
from tests.browser.conftest import CHROMEDRIVER, CHROMIUM, FLAGS

DOCS = Path(__file__).parent.parent / "docs"
WIZD = str(Path(sys.executable).parent / "wizd")
SIZE = (1280, 800)


def start_demo(folder: Path) -> tuple[subprocess.Popen[str], str]:
    """`wizd demo --console` run to its end; (process, the console's URL)."""
    env = {**os.environ, "WIZD_HTTP_PORT": "0", "COLUMNS": "120"}
    db = str(folder / "demo.db")
    proc = subprocess.Popen(
        [WIZD, "demo", "--pace", "0.1", "--database", db, "--console"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("http://127.0.0.1:"):
            return proc, line.strip().rstrip("/")
    raise SystemExit(f"wizd demo --console ended without a URL ({proc.wait()})")


def browser(profile: str) -> webdriver.Chrome:
    options = Options()
    options.binary_location = str(CHROMIUM)
    flags = [f for f in FLAGS if not f.startswith("--window-size")]
    for flag in (*flags, f"--window-size={SIZE[0]},{SIZE[1]}", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))


def shoot(driver: webdriver.Chrome, url: str, name: str, ready: str) -> None:
    """Load url, wait for the CSS selector `ready`, save docs/console-<name>.png."""
    driver.get(url)
    WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, ready))
    image = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    small = image.quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    path = DOCS / f"console-{name}.png"
    small.save(path, optimize=True)
    print(f"{path} {path.stat().st_size // 1024} KB")


def main() -> None:
    DOCS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="wizd-shots-") as folder:
        proc, base = start_demo(Path(folder))
        anyio.run(run_approvals, str(Path(folder) / "demo.db"), 3)
        driver = browser(str(Path(folder) / "profile"))
        try:
            metrics = {"width": SIZE[0], "height": SIZE[1], "deviceScaleFactor": 1, "mobile": False}
            driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
            shoot(driver, f"{base}/", "overview", "main")
            driver.get(f"{base}/jobs?name=post")
            post = driver.find_element(By.CSS_SELECTOR, "a[href^='/jobs/']:not([href='/jobs'])")
            shoot(driver, post.get_attribute("href") or "", "job", "main")
            shoot(driver, f"{base}/waiting", "waiting", "main")
        finally:
            driver.quit()
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
