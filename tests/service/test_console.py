"""The web console in a real browser: Debian's chromium and chromedriver, headless, through Selenium, against a live
server on 127.0.0.1 (uvicorn in a thread) over an NFCorpus slice. It types a query and sees hits, checks that the
highlighted tokens are the ones the API's explanation returned, compares two modes, reads the index page, adds a
document through the form and finds it by search, and takes screenshots (``LSR_SCREENSHOTS``: where to keep them;
docs/console-search.png in the README is one)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import httpx
import pytest

from tests.conftest import NFCORPUS

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
WRITER, READER = "console-write-key-0123", "console-read-key-01234"


def _missing() -> str | None:
    if not NFCORPUS.exists():
        return "needs ../shared (NFCorpus)"
    if CHROMIUM is None or CHROMEDRIVER is None:
        return "needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "needs selenium (the dev extra)"
    return None


if _missing() and os.environ.get("LSR_REQUIRE_BROWSER") == "1":  # CI installs the browser and sets this
    pytest.fail(f"LSR_REQUIRE_BROWSER=1 but the console test cannot run: {_missing()}", pytrace=False)
pytestmark = pytest.mark.skipif(_missing() is not None, reason=_missing() or "")


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    from lsr import Index, load_encoder
    from lsr.service.app import create_app
    from lsr.service.settings import Settings

    root = tmp_path_factory.mktemp("console")
    lines = (NFCORPUS / "corpus.jsonl").read_text().splitlines()[:60]
    documents = []
    for line in lines:
        record = json.loads(line)
        documents.append({"id": record["_id"], "title": record.get("title", ""), "text": record["text"]})
    Index.build(load_encoder(), documents=documents, path=root / "data" / "nfcorpus", bm25=True,
                store_documents=True)
    settings = Settings(data=str(root / "data"), keys=[{"key": WRITER, "scope": "write", "name": "console-test"},
                                                       {"key": READER, "scope": "read"}], merge=False)
    from tests.probe import serve_in_thread

    with serve_in_thread(create_app(settings)) as base:
        yield base


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1366,900",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)  # no Selenium Manager: no download
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


def shots() -> Path:
    folder = Path(os.environ.get("LSR_SCREENSHOTS", Path(__file__).resolve().parents[2] / "var" / "screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def wait(driver, condition, seconds: float = 20.0):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, seconds).until(lambda d: condition(d))


def by_id(driver, name):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, name)


def css(driver, selector):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def test_the_console_searches_explains_compares_and_writes(live, browser):
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    driver = browser
    driver.get(f"{live}/console")
    assert driver.current_url.endswith("/console/")
    # no key yet: the API's own words
    wait(driver, lambda d: by_id(d, "error").is_displayed())
    assert "missing or unknown API key" in by_id(driver, "error").text
    by_id(driver, "api-key").send_keys(WRITER + Keys.ENTER)
    wait(driver, lambda d: Select(by_id(d, "collection")).first_selected_option.get_attribute("value") == "nfcorpus")
    assert WRITER not in driver.current_url
    assert driver.execute_script("return sessionStorage.getItem('lsr-console-key')") == WRITER
    assert not by_id(driver, "error").is_displayed()

    query = "statin use and breast cancer survival"
    by_id(driver, "query").send_keys(query + Keys.ENTER)
    wait(driver, lambda d: len(css(d, "#results .hit")) == 10)
    first = css(driver, "#results .hit")[0]
    assert first.get_attribute("data-id") == "MED-10"
    api = httpx.post(f"{live}/collections/nfcorpus/search", headers={"Authorization": f"Bearer {READER}"},
                     json={"query": query, "k": 10, "explain": True, "return_documents": True}).json()
    assert [h.get_attribute("data-id") for h in css(driver, "#results .hit")] == [h["id"] for h in api["hits"]]
    explained = {c["token"] for c in api["hits"][0]["explanation"]}
    # the explanation table lists exactly the API's tokens; the marks in the text carry only those
    first.find_element("css selector", "details.explain summary").click()
    rows = {row.get_attribute("data-token") for row in first.find_elements("css selector", "tr.contribution")}
    assert rows == explained
    marked = set()
    for mark in first.find_elements("css selector", "mark.tok"):
        marked |= set(mark.get_attribute("data-tokens").split())
    assert marked and marked <= explained
    shown = " ".join(e.text for e in first.find_elements("css selector", ".text")).lower()
    whole_words = {t for t in explained if not t.startswith("##") and re.search(rf"\b{re.escape(t)}\b", shown)}
    assert whole_words <= marked, whole_words - marked  # every explained word in the text is highlighted
    chips = {chip.get_attribute("data-token") for chip in css(driver, "#query-vector .chip")}
    vector = httpx.post(f"{live}/collections/nfcorpus/encode", headers={"Authorization": f"Bearer {READER}"},
                        json={"text": query}).json()["vector"]
    assert chips == set(vector) and {"breast", "cancer", "survival"} <= chips  # the query's own vector
    driver.save_screenshot(str(shots() / "console-search.png"))

    # one click compares two modes side by side
    Select(by_id(driver, "compare")).select_by_value("bm25")
    by_id(driver, "search-button").click()
    wait(driver, lambda d: len(css(d, "#results .column")) == 2)
    assert [c.get_attribute("data-mode") for c in css(driver, "#results .column")] == ["hybrid", "bm25"]
    driver.save_screenshot(str(shots() / "console-compare.png"))

    # an API error, as the API words it
    by_id(driver, "filter").send_keys('{"term": {"nope": "x"}}')
    by_id(driver, "search-button").click()
    wait(driver, lambda d: by_id(d, "error").is_displayed())
    assert "422" in by_id(driver, "error").text and "unknown field 'nope'" in by_id(driver, "error").text
    by_id(driver, "filter").clear()

    # the index page
    by_id(driver, "nav-index").click()
    wait(driver, lambda d: "60" in by_id(d, "stats").text)
    stats = by_id(driver, "stats").text
    assert "documents 60" in stats and "sparse, bm25, documents" in stats and "default mode hybrid" in stats
    driver.save_screenshot(str(shots() / "console-index.png"))

    # the document form: add one, then find it by search
    by_id(driver, "nav-documents").click()
    wait(driver, lambda d: by_id(d, "doc-form").is_displayed())
    by_id(driver, "doc-id").send_keys("console-1")
    by_id(driver, "doc-title").send_keys("Quinoa and sleep")
    by_id(driver, "doc-text").send_keys("quinoa porridge before bed and sleep quality in adults")
    driver.save_screenshot(str(shots() / "console-document.png"))
    by_id(driver, "doc-save").click()
    wait(driver, lambda d: "saved: generation" in by_id(d, "doc-status").text)
    by_id(driver, "doc-lookup").send_keys("console-1" + Keys.ENTER)
    wait(driver, lambda d: "Quinoa and sleep" in by_id(d, "doc-view").text)
    by_id(driver, "nav-search").click()
    query_box = by_id(driver, "query")
    query_box.clear()
    query_box.send_keys("quinoa sleep" + Keys.ENTER)
    wait(driver, lambda d: css(d, "#results .hit") and
         css(d, "#results .hit")[0].get_attribute("data-id") == "console-1")


def test_a_read_key_sees_the_api_refuse_a_write(live, browser):
    from selenium.webdriver.common.keys import Keys

    driver = browser
    driver.get(f"{live}/console/#documents")
    driver.execute_script("sessionStorage.clear()")
    by_id(driver, "api-key").send_keys(READER + Keys.ENTER)
    wait(driver, lambda d: by_id(d, "collection").get_attribute("value") == "nfcorpus")
    by_id(driver, "doc-id").send_keys("nope-1")
    by_id(driver, "doc-text").send_keys("a read key cannot write this")
    by_id(driver, "doc-save").click()
    wait(driver, lambda d: by_id(d, "error").is_displayed())
    assert "403" in by_id(driver, "error").text and "scope 'read'" in by_id(driver, "error").text
