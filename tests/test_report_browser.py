"""report.html in a real browser: Debian's Chromium driven by Playwright (no browser download).

Setup (CI and `make test`): `apt-get install -y chromium` and the `playwright` Python
package. The tests skip, saying why, when either is missing, unless HARNESS_REQUIRE_BROWSER=1
(set in CI) turns the skip into a failure. HARNESS_CHROMIUM overrides /usr/bin/chromium.
Screenshots go to reports/test-artifacts/ (gitignored).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from harness.analysis.comparison import Comparison
from harness.outputs.report import render_report
from tests.report_fixtures import PAYLOADS, PLANTED, base_only_run, big_run, rich_run

CHROMIUM = os.environ.get("HARNESS_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "reports" / "test-artifacts"
MAX_BYTES_10K = 15_000_000
MAX_LOAD_S_10K = 10.0  # generous: shared CI machines; typical is well under a second


def _missing() -> str | None:
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        return (f"Chromium not found at {CHROMIUM}: install it with `apt-get install -y chromium` "
                "(or set HARNESS_CHROMIUM)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is missing: `.venv/bin/pip install playwright` (never `playwright install`)"
    return None


_WHY = _missing()
if _WHY and os.environ.get("HARNESS_REQUIRE_BROWSER") == "1":
    raise RuntimeError(f"browser tests required (HARNESS_REQUIRE_BROWSER=1) but {_WHY}")
pytestmark = pytest.mark.skipif(_WHY is not None, reason=_WHY or "")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    yield b
    b.close()
    pw.stop()


class Opened:
    """A page opened on a report file, with everything it tried to load and every console error."""

    def __init__(self, browser, path: Path):
        self.url = path.resolve().as_uri()
        self.requests: list[str] = []
        self.blocked: list[str] = []
        self.errors: list[str] = []
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.page.on("dialog", lambda d: (self.errors.append(f"dialog: {d.message}"), d.dismiss()))
        self.page.route("**/*", self._route)
        started = time.perf_counter()
        self.page.goto(self.url, wait_until="load")
        self.page.wait_for_selector("#ex-list article, #ex-list .empty", state="attached")
        self.load_s = time.perf_counter() - started

    def _route(self, route):
        if route.request.url == self.url:
            route.continue_()
        else:  # anything else is a network request the report must never make
            self.blocked.append(route.request.url)
            route.abort()

    def assert_offline_and_clean(self):
        assert self.blocked == [], f"report tried to load {self.blocked}"
        assert not [u for u in self.requests if u.startswith(("http:", "https:"))]
        assert self.errors == []

    def count(self) -> int:
        return int(self.page.get_attribute("#ex-list", "data-count"))

    def cards(self) -> int:
        return self.page.locator("#ex-list article.ex").count()

    def screenshot(self, name: str, full: bool = True) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / name
        self.page.screenshot(path=str(path), full_page=full)
        print(f"screenshot: {path}")
        return path


@pytest.fixture(scope="module")
def rich(tmp_path_factory):
    run = rich_run(tmp_path_factory.mktemp("browser") / "rich")
    render_report(run)
    return run


def test_report_loads_offline_without_errors_and_screenshot(browser, rich):
    o = Opened(browser, rich / "report.html")
    o.assert_offline_and_clean()
    for sid in ("verdict", "headline", "forgetting", "flips", "examples", "leaks", "training", "cost", "provenance"):
        assert o.page.locator(f"section#{sid}").count() == 1, sid
    assert o.cards() == 50 and o.count() == 200
    assert o.page.locator("#verdict .big").inner_text().startswith("Gate: INCONCLUSIVE")
    o.screenshot("report-rich.png")
    o.page.emulate_media(media="print")
    o.screenshot("report-rich-print.png")
    o.assert_offline_and_clean()


def test_filters_search_paging_and_flip_links(browser, rich):
    comp = Comparison.from_run_dir(rich)
    o = Opened(browser, rich / "report.html")
    p = o.page
    p.check("#f-reg")
    assert o.count() == len(comp.flips_for("ft")) == o.cards()
    assert p.locator("#ex-list article.reg").count() == o.cards()
    p.select_option("#f-task", label="mmlu (100)")
    assert o.count() == len(comp.flips_for("ft", "mmlu"))
    p.uncheck("#f-reg")
    assert o.count() == 100
    p.select_option("#f-task", value="")
    p.select_option("#f-leak", "contaminated")
    assert o.count() == 6
    p.select_option("#f-leak", "")
    p.fill("#f-q", PLANTED)
    assert o.count() == 1 and PLANTED in p.locator("#ex-list article").inner_text()
    p.fill("#f-q", "")
    assert o.count() == 200
    p.locator("#pager-top button", has_text="next").click()
    assert "items 51–100 of 200" in p.locator("#pager-top").inner_text()
    # a flip's item id opens exactly that item in the explorer
    first = comp.flips_for("ft", "squad-qa")[0]
    p.locator("#flips button.goto", has_text=first.item_id).first.click()
    assert o.count() == 1 and first.item_id in p.locator("#ex-list article").inner_text()
    p.select_option("#f-sort", "drop")
    o.assert_offline_and_clean()


def test_injection_payloads_render_as_text_and_run_nothing(browser, tmp_path):
    run = rich_run(tmp_path / "xss", payloads=True)
    render_report(run)
    o = Opened(browser, run / "report.html")
    p = o.page
    p.check("#f-expand")
    for q in ("pwned", "script", "onerror"):  # redraw cards holding payloads
        p.fill("#f-q", q)
    p.fill("#f-q", "")
    for _ in range(3):
        p.locator("#pager-top button", has_text="next").click()
    p.locator("#flips button.goto").first.click()
    assert p.evaluate("typeof window.__pwned") == "undefined"
    # the payloads are on the page as text: in outputs, references, the task name, a subject, evidence
    p.fill("#f-q", "says")
    shown = p.locator("#ex-list").inner_text()
    for payload in PAYLOADS:
        assert payload in shown, payload
    assert PAYLOADS[0] in p.locator("#headline").inner_text()
    assert PAYLOADS[2] in p.locator("#forgetting svg").nth(1).text_content()
    assert PAYLOADS[3] in p.locator("#leaks").inner_text()
    assert p.locator("img, iframe").count() == 0
    assert p.evaluate("typeof window.__pwned") == "undefined"
    o.assert_offline_and_clean()
    o.screenshot("report-injection.png", full=False)


def test_single_model_report_loads(browser, tmp_path):
    run = base_only_run(tmp_path / "base")
    o = Opened(browser, render_report(run))
    o.assert_offline_and_clean()
    assert o.count() == 12 and o.page.locator("#f-reg").count() == 0


def test_10k_item_report_size_and_render_time(browser, tmp_path):
    run = big_run(tmp_path / "big", n=10_000)
    started = time.perf_counter()
    path = render_report(run)
    render_s = time.perf_counter() - started
    size = path.stat().st_size
    o = Opened(browser, path)
    o.assert_offline_and_clean()
    assert o.count() == 10_000 * 1 and o.cards() == 50
    started = time.perf_counter()
    o.page.fill("#f-q", "zebra-quokka")
    search_s = time.perf_counter() - started
    assert o.count() == 1
    o.page.fill("#f-q", "")
    o.page.check("#f-reg")
    assert o.count() == len(Comparison.from_run_dir(run).flips_for("ft"))
    print(f"\n10k-item report: {size / 1e6:.1f} MB, rendered by harness in {render_s:.1f} s, "
          f"loaded and drawn by Chromium in {o.load_s:.2f} s, first search {search_s:.2f} s")
    assert size < MAX_BYTES_10K
    assert o.load_s < MAX_LOAD_S_10K
    o.screenshot("report-10k.png", full=False)
