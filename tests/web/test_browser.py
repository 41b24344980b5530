"""The page served by `selfsup serve`, driven in a real headless browser (Debian's chromium and
chromium-driver through selenium). Skips with the reason where they are not installed. With SELFSUP_SCREENSHOT
set to a path, saves a screenshot of the page there (docs/web_page.png is made so)."""

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from selfsup.web.serve import serve_command

CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 90) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"selfsup serve exited with {proc.returncode}: {proc.stdout.read()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


@pytest.fixture
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    if CHROMIUM is None or not CHROMEDRIVER.exists():
        pytest.skip("no headless browser: apt-get install chromium chromium-driver (scripts/setup.sh --dev does "
                    "where it runs as root)")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    yield driver
    driver.quit()


@pytest.fixture
def page(runs_dir):
    port = free_port()
    cmd, env = serve_command(runs_dir, "127.0.0.1", port, 0.05)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_port(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def wait_text(driver, text: str, timeout: float = 120) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(lambda d: text in d.find_element("tag name", "body").text)


def wait_image(driver, timeout: float = 120) -> None:
    """Until the page shows an image served by streamlit (the attention grid)."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(lambda d: d.find_elements("css selector", '[data-testid="stImage"] img'))


def choose_run(driver, name: str) -> None:
    """Pick `name` in the sidebar's run list (a BaseWeb select: click it, then the option)."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.find_element("css selector", '[data-testid="stSidebar"] [data-testid="stSelectbox"] input').click()
    option = WebDriverWait(driver, 30).until(
        lambda d: next((o for o in d.find_elements("css selector", '[role="option"]') if o.text == name), None))
    option.click()


def assert_no_failure(driver) -> None:
    """No Streamlit exception box, no last-resort message, no server path on the page."""
    assert not driver.find_elements("css selector", '[data-testid="stException"]')
    body = driver.find_element("tag name", "body").text
    assert "The page failed" not in body and "Traceback" not in body


def test_every_kind_of_run_uploads_and_refusals(browser, page, png, tmp_path):
    """One server, every kind of run chosen in turn (the demo's conv-stem ViT first, as the page opens on it):
    the attention image for each ViT, the explanation for the ResNet; then uploads, good and bad."""
    from selenium.webdriver.common.by import By

    browser.get(page)
    wait_text(browser, "vit-cpu, 7-px patches, trained on 28-px crops")  # the demo's run: conv stem, 1 channel
    wait_text(browser, "Attention of each head (14x21 patches)")  # 112x168 px, stride 8: the failure
    wait_image(browser)
    assert_no_failure(browser)
    if os.environ.get("SELFSUP_SCREENSHOT"):
        browser.save_screenshot(os.environ["SELFSUP_SCREENSHOT"])
    for run, caption in (("dinov2", "14-px patches"), ("group/rn", "resnet18"), ("vit", "8-px patches")):
        choose_run(browser, run)
        wait_text(browser, caption)
        if run == "group/rn":
            wait_text(browser, "is a ResNet: it has no attention maps")
            wait_text(browser, "no such token, so there is nothing to draw")
        else:
            wait_text(browser, "Attention of each head")
            wait_image(browser)
        assert_no_failure(browser)
    radio = browser.find_element(By.CSS_SELECTOR, '[data-testid="stSidebar"] [data-testid="stRadio"]')
    next(label for label in radio.find_elements(By.TAG_NAME, "label") if label.text == "upload").click()
    wait_text(browser, "Upload an image")
    good, text, big = tmp_path / "shot.png", tmp_path / "notes.png", tmp_path / "big.png"
    good.write_bytes(png((48, 40)))
    text.write_text("not an image")
    big.write_bytes(png((200, 200)))  # ~120 kB of noise, over the 0.05 MB limit
    upload = browser.find_element(By.CSS_SELECTOR, 'input[type="file"]')
    upload.send_keys(str(good))
    wait_text(browser, "image shot.png")
    wait_text(browser, "Attention of each head")
    browser.find_element(By.CSS_SELECTOR, 'input[type="file"]').send_keys(str(text))
    wait_text(browser, "does not decode as an image")
    browser.find_element(By.CSS_SELECTOR, 'input[type="file"]').send_keys(str(big))
    wait_text(browser, "over this page's limit of 0.05 MB")
    assert_no_failure(browser)
