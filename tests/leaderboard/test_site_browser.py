"""The built page in a real headless browser (Debian's chromium driven by Selenium + chromedriver).

Checks: no console errors, clicking a header sorts its table, the plots load, and hostile submission strings
execute nothing. Skipped, with the reason, where chromium, chromedriver or the selenium package is missing
(CI installs them: see .ci/run).
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from morbench.leaderboard.build import build_leaderboard, default_root

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1400,1000",
)


def _missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists() and shutil.which(Path(path).name) is None:
            return f"{path} is not installed (apt-get install -y chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "the selenium package is not installed (pip install -e '.[test]')"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    reason = _missing()
    if reason:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    for arg in ARGS:
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver_path = CHROMEDRIVER if Path(CHROMEDRIVER).exists() else shutil.which("chromedriver")
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def open_page(driver, path: Path) -> None:
    driver.get(path.resolve().as_uri())
    driver.execute_script("return document.readyState")
    driver.get_log("browser")  # page loaded; later calls see only new entries


def console_errors(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]


def assert_plots_load(driver) -> None:
    images = driver.execute_script(
        "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])"
    )
    assert images, "the page shows no plot"
    for src, complete, width in images:
        assert complete and width > 0, f"plot {src} did not load"


def column_keys(table, index: int, numeric: bool) -> list:
    keys = []
    for row in table.find_elements("css selector", "tbody tr"):
        raw = row.find_elements("css selector", "td")[index].get_attribute("data-sort")
        keys.append((float(raw) if raw else None) if numeric else raw)
    return keys


def row_names(table) -> list[str]:
    titles = [h.text.strip() for h in table.find_elements("css selector", "thead th")]
    index = titles.index("Submission")
    return [
        row.find_elements("css selector", "td")[index].text for row in table.find_elements("css selector", "tbody tr")
    ]


def expected_order(names: list[str], keys: list, descending: bool) -> list[str]:
    present = [(k, i) for i, k in enumerate(keys) if k is not None]
    present.sort(key=lambda item: item[0], reverse=descending)
    # the page keeps the previous order among equal keys (stable sort): re-sort equal keys by position
    ordered: list[int] = []
    for _, group in itertools.groupby(present, key=lambda item: item[0]):
        ordered += sorted(i for _, i in group)
    return [names[i] for i in ordered] + [names[i] for i, k in enumerate(keys) if k is None]


@pytest.fixture(scope="module")
def committed_page() -> Path:
    page = default_root() / "site" / "index.html"
    if not page.is_file():
        pytest.skip("no committed leaderboard/site/index.html (not a source checkout)")
    return page


def test_committed_page_sorts_and_shows_plots(browser, committed_page: Path) -> None:
    open_page(browser, committed_page)
    table = browser.find_element("css selector", "table.sortable[id^='t-']")  # the first ranked table
    headers = table.find_elements("css selector", "thead th")
    titles = [h.text.strip() for h in headers]
    initial = row_names(table)
    assert len(initial) >= 2, "the committed board needs at least two ranked rows"
    changed = False
    for title, numeric in (("Submission", False), ("ICV", True), ("Avg reward", True)):
        index = titles.index(title)
        for click, descending in ((1, numeric), (2, not numeric)):
            before = row_names(table)
            keys = column_keys(table, index, numeric)
            headers[index].click()
            after = row_names(table)
            assert after == expected_order(before, keys, descending), f"{title} click {click}"
            direction = "descending" if descending else "ascending"
            assert headers[index].get_attribute("aria-sort") == direction
            changed |= after != initial
    assert changed, "no click changed the row order"
    assert_plots_load(browser)
    assert console_errors(browser) == []


def test_hostile_page_executes_nothing(browser, board_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "board"
    build_leaderboard(board_dir, out)
    open_page(browser, out / "site" / "index.html")
    assert browser.execute_script("return window.__pwned === undefined")
    for details in browser.find_elements("css selector", "details.submission"):
        details.find_element("css selector", "summary").click()  # open every details block
    assert browser.execute_script("return window.__pwned === undefined")
    from .conftest import SCRIPT

    names = browser.execute_script(
        "return Array.from(document.querySelectorAll('details.submission summary')).map(s => s.textContent)"
    )
    assert any(name.startswith(SCRIPT) for name in names)  # shown as text, not run
    assert browser.execute_script("return document.querySelectorAll('script').length") == 1
    table = browser.find_element("css selector", "table.sortable")
    table.find_elements("css selector", "thead th")[1].click()
    assert_plots_load(browser)
    assert console_errors(browser) == []
