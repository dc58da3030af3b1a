"""The star map page end to end in headless Chromium (Debian's chromium + chromedriver)."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from starmap.settings import load_settings
from starmap.stars import STARS, Star, bucket, star_to_entity
from starmap.storage import TABLES, Op, open_store, partition_chunks

from .rig import ROOT, StarmapProcess

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
ARTIFACTS = ROOT / "test-artifacts"

if CHROMIUM is None or CHROMEDRIVER is None:
    pytest.skip(
        "Chromium is not installed here (apt-get install chromium chromium-driver; ops/test.sh does it)",
        allow_module_level=True,
    )

from selenium import webdriver  # noqa: E402 - only where Chromium exists
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.actions.wheel_input import ScrollOrigin  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture
def server(tmp_path: Path) -> Iterator[StarmapProcess]:
    proc = StarmapProcess(
        tmp_path / "server",
        {"ENVIRONMENT": "test", "DATA_DIR": str(tmp_path / "data"), "API_RATE_LIMIT_TIMES": "3"},
    )
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    assert CHROMIUM is not None and CHROMEDRIVER is not None
    options.binary_location = CHROMIUM
    flags = [
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--window-size=1000,700", f"--user-data-dir={tmp_path / 'chromium'}",
    ]  # fmt: skip
    for flag in flags:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    yield driver
    driver.quit()


def post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(  # noqa: S310 - loopback only
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310 - loopback only
        result: dict[str, Any] = json.loads(answer.read())
        return result


def wait_for(driver: WebDriver, script: str, timeout: float = 10) -> Any:
    return WebDriverWait(driver, timeout).until(lambda d: d.execute_script(script))


def click_sky(driver: WebDriver, px: float, py: float) -> None:
    """A real click on the canvas at (px, py) from its top left."""
    canvas = driver.find_element(By.ID, "sky")
    size = canvas.size
    offset_x, offset_y = int(px - size["width"] / 2), int(py - size["height"] / 2)
    ActionChains(driver).move_to_element_with_offset(canvas, offset_x, offset_y).click().perform()


def star_button(driver: WebDriver, star_id: str) -> Any:
    return driver.find_element(By.CSS_SELECTOR, f'button.star-button[data-id="{star_id}"]')


def test_the_page_places_shows_live_stars_and_likes(server: StarmapProcess, browser: WebDriver) -> None:
    browser.get(f"{server.url}/")
    wait_for(browser, "return document.body.dataset.ready === 'true'")
    wait_for(browser, "return document.getElementById('status').dataset.state === 'live'")
    assert browser.find_element(By.ID, "sky").get_attribute("data-drawn") == "0"

    # Place a star through the UI: a click on empty sky, the form, a message.
    click_sky(browser, 250, 200)
    form = browser.find_element(By.ID, "place-form")
    assert form.is_displayed()
    browser.find_element(By.ID, "submit").click()  # empty: the API's error shows by the field
    wait_for(browser, "return document.getElementById('message-error').textContent.length > 0")
    assert "1 to 280" in browser.find_element(By.ID, "message-error").text
    browser.find_element(By.ID, "message").send_keys("hello from the page")
    browser.find_element(By.ID, "submit").click()
    wait_for(browser, "return document.getElementById('place-form').hidden")
    mine = wait_for(
        browser, "return [...window.starmap.stars.values()].find(s => s.message === 'hello from the page')"
    )
    wait_for(browser, "return document.getElementById('sky').dataset.drawn === '1'")  # on the next frame
    # It is drawn where it was placed: the canvas is bright there and dark far away.
    lit = "const c = document.getElementById('sky'); const r = devicePixelRatio;" \
          "const p = c.getContext('2d').getImageData(arguments[0] * r, arguments[1] * r, 1, 1).data;" \
          "return p[0] + p[1] + p[2];"  # fmt: skip
    WebDriverWait(browser, 10).until(lambda d: d.execute_script(lit, 250, 200) > 400)
    assert browser.execute_script(lit, 900, 650) < 200

    # A star made by another client appears without a reload.
    post(f"{server.url}/stars", {"x": 0.5, "y": -0.5, "message": "from the API", "id": "from-api"})
    wait_for(browser, "return window.starmap.stars.has('from-api')")
    wait_for(browser, "return document.getElementById('sky').dataset.drawn === '2'")

    # Like it by clicking it on the canvas, then by keyboard (Tab to it, Enter).
    [sx, sy] = browser.execute_script(
        "const s = window.starmap.stars.get('from-api');"
        "return [(s.x + 1) / 2 * innerWidth, (1 - s.y) / 2 * innerHeight];"
    )
    click_sky(browser, sx, sy)
    wait_for(browser, "return document.querySelector('button[data-id=\"from-api\"]').dataset.likes === '1'")
    star_button(browser, "from-api").send_keys(Keys.ENTER)
    wait_for(browser, "return document.querySelector('button[data-id=\"from-api\"]').dataset.likes === '2'")
    assert "2 likes" in (star_button(browser, "from-api").get_attribute("aria-label") or "")
    assert mine["id"] != "from-api"

    # Over the limit (3 a minute here), the page says how long to wait.
    star_button(browser, "from-api").send_keys(Keys.ENTER)
    star_button(browser, "from-api").send_keys(Keys.ENTER)
    wait_for(
        browser,
        "const toast = document.getElementById('toast');"
        "return !toast.hidden && /like again in \\d+ s/.test(toast.textContent)",
    )

    ARTIFACTS.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / "starmap-page.png"))


# The page's fetch, wrapped: every POST's Idempotency-Key is noted, and the first `drops`
# answers are lost after the server has answered (as a dropped link loses them).
LOSE_ANSWERS = """
window.sentKeys = [];
let drops = arguments[0];
window.realFetch = window.realFetch || window.fetch;
window.fetch = async (url, init) => {
  const answer = await window.realFetch(url, init);
  if (init && init.method === "POST") {
    window.sentKeys.push(init.headers["Idempotency-Key"]);
    if (drops > 0) { drops -= 1; throw new TypeError("the answer was lost (test)"); }
  }
  return answer;
};
"""


def test_the_page_retries_a_write_whose_answer_was_lost_and_it_counts_once(
    server: StarmapProcess, browser: WebDriver
) -> None:
    post(f"{server.url}/stars", {"x": 0.5, "y": -0.5, "message": "liked once", "id": "once"})
    browser.get(f"{server.url}/")
    wait_for(browser, "return document.body.dataset.ready === 'true'")
    wait_for(browser, "return window.starmap.stars.has('once')")
    browser.execute_script(LOSE_ANSWERS, 1)
    star_button(browser, "once").send_keys(Keys.ENTER)  # committed, its answer lost, retried
    wait_for(browser, "return window.sentKeys.length === 2")
    wait_for(browser, "return document.querySelector('button[data-id=\"once\"]').dataset.likes === '1'")
    keys = browser.execute_script("return window.sentKeys")
    assert len(keys) == 2 and keys[0] == keys[1] and len(keys[0]) == 36, keys  # one key, sent twice
    with urllib.request.urlopen(f"{server.url}/stars/once", timeout=5) as answer:  # noqa: S310 - loopback
        assert json.loads(answer.read())["likes"] == 1  # counted once

    browser.execute_script(LOSE_ANSWERS, 1)  # placing a star: the same
    click_sky(browser, 250, 200)
    browser.find_element(By.ID, "message").send_keys("placed once")
    browser.find_element(By.ID, "submit").click()
    wait_for(browser, "return document.getElementById('place-form').hidden")  # after the retry's 201
    keys = browser.execute_script("return window.sentKeys")
    assert len(keys) == 2 and keys[0] == keys[1], keys
    with urllib.request.urlopen(f"{server.url}/stars", timeout=5) as answer:  # noqa: S310 - loopback
        messages = [s["message"] for s in json.loads(answer.read())]
    assert messages.count("placed once") == 1


BIG_SKY = 20_000


def seed_sky(env: dict[str, str], root: Path, count: int) -> None:
    """``count`` stars straight into the store, spread over the sky, as a long-lived map has them."""
    settings = load_settings(env, root=root)

    async def write() -> None:
        store = open_store(settings)
        await store.ensure_tables(TABLES)
        now = time.time()
        stars = [
            Star(f"s{i}", ((i * 7919) % 2000) / 1000 - 1, ((i * 104729) % 2000) / 1000 - 1,
                 f"star number {i}", 100.0, now, 0, now + i * 1e-6, now)
            for i in range(count)
        ]  # fmt: skip
        for chunk in partition_chunks(stars, lambda star: bucket(star.id)):
            await store.batch(STARS, [Op("insert", star_to_entity(s, bucket(s.id))) for s in chunk])
        await store.close()

    asyncio.run(write())


def requested(driver: WebDriver) -> list[str]:
    return [
        str(u)
        for u in driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    ]


def test_a_big_sky_loads_and_streams_its_viewport_and_zooms_and_pans(
    tmp_path: Path, browser: WebDriver
) -> None:
    env = {"ENVIRONMENT": "test", "DATA_DIR": str(tmp_path / "data"), "API_RATE_LIMIT_TIMES": "100"}
    seed_sky(env, tmp_path, BIG_SKY)
    server = StarmapProcess(tmp_path / "server", env)
    server.start()
    try:
        browser.get(f"{server.url}/")
        wait_for(browser, "return document.body.dataset.ready === 'true'", timeout=60)
        sky = browser.find_element(By.ID, "sky")
        assert sky.get_attribute("data-mode") == "viewport"
        wait_for(browser, "return document.getElementById('status').dataset.state === 'live'")
        first_paint = float(
            browser.find_element(By.TAG_NAME, "body").get_attribute("data-first-paint-ms") or 0
        )
        whole = browser.execute_script("return window.starmap.stars.size")
        assert 0 < whole < BIG_SKY  # never the whole sky

        body = browser.find_element(By.TAG_NAME, "body")
        first_area = sky.get_attribute("data-area")
        for _ in range(6):  # zoom in by keys: 1.25 ** 6 ≈ 3.8
            body.send_keys("+")
        wait_for(browser, f"return document.getElementById('sky').dataset.area !== '{first_area}'")
        zoomed_area = sky.get_attribute("data-area")
        for _ in range(4):
            body.send_keys(Keys.ARROW_RIGHT)
        wait_for(
            browser, f"return document.getElementById('sky').dataset.area !== '{zoomed_area}'", timeout=20
        )
        # The wheel over the sky zooms in further.
        ActionChains(browser).scroll_from_origin(ScrollOrigin.from_element(sky), 0, -300).perform()
        wait_for(browser, "return Number(document.getElementById('sky').dataset.scale) > 4")
        # Drag to pan: the view moves, nothing is placed.
        before = browser.execute_script("return window.starmap.view.cx")
        canvas_drag(browser, 200, 0)
        assert browser.execute_script("return window.starmap.view.cx") < before
        assert not browser.find_element(By.ID, "place-form").is_displayed()

        area = [float(v) for v in (sky.get_attribute("data-area") or "").split(",")]
        wait_for(browser, "return document.getElementById('status').dataset.state === 'live'")
        loaded = browser.execute_script(
            "return [...window.starmap.stars.values()].map(s => [s.id, s.x, s.y])"
        )
        assert loaded and all(area[0] <= x <= area[2] and area[1] <= y <= area[3] for _, x, y in loaded)
        streams = [u for u in requested(browser) if "/events/stream" in u]
        assert streams and "bbox=" in streams[-1]
        assert not [u for u in requested(browser) if u.endswith("/stars")], "the whole sky was fetched"

        # Like a star of the viewport, by keyboard.
        star_id = loaded[0][0]
        star_button(browser, star_id).send_keys(Keys.ENTER)
        wait_for(browser, f"return window.starmap.stars.get('{star_id}').likes === 1")

        # Another client places one star outside the area, then one inside: only the second arrives.
        cx, cy = (area[0] + area[2]) / 2, (area[1] + area[3]) / 2
        outside_x = -0.99 if area[0] > -0.99 else 0.99
        post(f"{server.url}/stars", {"x": outside_x, "y": -0.99, "message": "far away", "id": "outside"})
        post(f"{server.url}/stars", {"x": cx, "y": cy, "message": "right here", "id": "inside"})
        wait_for(browser, "return window.starmap.stars.has('inside')")
        assert not browser.execute_script("return window.starmap.stars.has('outside')")
        assert not [u for u in requested(browser) if "outside" in u]

        # The stream gives up (as when the server was away); meanwhile a star is placed. The
        # page catches up with /stars/changes from the last event it saw, not by reloading.
        lists_before = len([u for u in requested(browser) if "/stars?" in u])
        browser.execute_script("const e = window.starmap.events; e.close(); e.onerror(new Event('error'))")
        post(f"{server.url}/stars", {"x": cx, "y": cy, "message": "while away", "id": "missed"})
        wait_for(browser, "return window.starmap.stars.has('missed')", timeout=20)
        assert [u for u in requested(browser) if "/stars/changes?since=" in u]
        assert len([u for u in requested(browser) if "/stars?" in u]) == lists_before  # nothing reloaded
        wait_for(browser, "return document.getElementById('status').dataset.state === 'live'")
        frame_ms = float(sky.get_attribute("data-frame-ms") or 0)

        # Loaded again, the page revalidates what it has (If-None-Match, from the browser's
        # cache): unchanged pages come back as 304s, headers only.
        browser.refresh()
        wait_for(browser, "return document.body.dataset.ready === 'true'", timeout=60)
        sizes = browser.execute_script(
            "return performance.getEntriesByType('resource').filter(e => e.name.includes('/stars?'))"
            ".map(e => [e.name, e.transferSize, e.encodedBodySize])"
        )
        revalidated = [name for name, transfer, body in sizes if 0 < transfer < body]
        assert revalidated, sizes
        print(f"big sky of {BIG_SKY} stars: first paint {first_paint:.0f} ms after navigation, "
              f"{whole} stars loaded at first, frame {frame_ms:.2f} ms")  # fmt: skip
        ARTIFACTS.mkdir(exist_ok=True)
        assert browser.save_screenshot(str(ARTIFACTS / "starmap-big-sky.png"))
    finally:
        server.stop()


def canvas_drag(driver: WebDriver, dx: int, dy: int) -> None:
    canvas = driver.find_element(By.ID, "sky")
    ActionChains(driver).move_to_element(canvas).click_and_hold().move_by_offset(
        dx // 2, dy // 2
    ).move_by_offset(dx - dx // 2, dy - dy // 2).release().perform()


def test_the_api_docs_show_the_like_operation_with_its_schemas(
    server: StarmapProcess, browser: WebDriver
) -> None:
    """/docs is Swagger UI from a package: it loads offline, lists operations, expands one."""
    browser.get(f"{server.url}/docs")
    wait = WebDriverWait(browser, 20)
    like = wait.until(lambda b: b.find_element(By.ID, "operations-stars-post_like_star"))
    like.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
    request_body = wait.until(lambda b: like.find_element(By.CSS_SELECTOR, ".opblock-section-request-body"))
    request_body.find_element(By.CSS_SELECTOR, "[data-name='model']").click()  # its Schema tab
    wait.until(lambda b: "user_id" in request_body.text)
    assert "LikeIn" in request_body.text
    responses = like.find_element(By.CSS_SELECTOR, ".responses-wrapper")
    wait.until(lambda b: '"likes"' in responses.text)  # the 200's LikeResult, as an example
    assert all(code in responses.text for code in ("200", "404", "429"))
    assert like.find_elements(By.CSS_SELECTOR, ".try-out, .execute"), "try it out is on"
    browser.execute_script("arguments[0].scrollIntoView()", like)
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "starmap-docs.png"))
    # Nothing was fetched from anywhere but this service.
    resources = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert resources and all(str(r).startswith(server.url) for r in resources), resources
