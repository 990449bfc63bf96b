"""The UI in a real browser (Debian's chromium, driven by Selenium) on the real stack.

vLLM on the CPU with the bundled model, the gateway in front of it with two published
domains whose answers differ (each its own adapter and brand voice), and the Gradio app as
`lorastack ui` starts it. The test does what a person does: open the page, pick a domain,
type a message and press Enter, watch the answer stream in, switch domain, ask again, give
the answer a thumb up (the domain captures its answers: "Rating saved") and the other
domain's one too (it does not: the page says so). A screenshot of each step goes to
`test-output/ui/` (a laptop-sized window).

The browser is `/usr/bin/chromium` with `/usr/bin/chromedriver` (Debian's `chromium` and
`chromium-driver`; `.ci/run` installs them). Without them the test is skipped, except
under CI (`CI` or `TESTS_REQUIRE_BROWSER` set), where it fails and says what to install.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from lorastack.models import ModelRecord, ModelStore
from lorastack.ui.app import build_app, launch_app
from tests.integration.shared_engine import SharedEngine
from tests.peft_adapters import write_random_lora
from tests.registries import home_registry
from tests.servers import free_port, real_stack

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
INSTALL_HINT = (
    "apt-get install -y --no-install-recommends chromium chromium-driver (Debian; .ci/run does it)"
)
SHOTS = Path(__file__).resolve().parents[2] / "test-output" / "ui"
# A laptop screen; the browser's own bars leave about 1366x650 of page.
WINDOW = "1366,768"
# The machine is offline: without these chromium keeps trying to phone home.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    f"--window-size={WINDOW}",
)
ADMIN_KEY = "ui-browser-admin-key-0123456789"
MESSAGE_BOX = "textarea[placeholder='Type a message and press Enter']"
PICKER = "input[aria-label='Assistant']"
# Gradio's thumb up under each assistant message (its label reads "Liked" once clicked).
# A thumb up reads "Like", and "Liked" once clicked (Gradio 6's chatbot, in English).
LIKE = ".lorastack-chat button[aria-label='Like'], .lorastack-chat button[aria-label='Liked']"
# The UI asks for no length limit and vLLM samples at temperature 1: an answer of the small
# model may ramble on for minutes on the CPU. Past this long the test presses Stop, which
# keeps what arrived (most answers end well before).
ANSWER_WAIT_S = 20.0
# An answer to be rated must be complete (the gateway stores it at its end): never stopped.
COMPLETE_ANSWER_WAIT_S = 240.0


@dataclass(frozen=True)
class Brand:
    domain: str
    label: str
    seed: int
    voice: str
    question: str
    capture: bool  # the gateway keeps its answers, to be rated


COFFEE = Brand(
    "coffee-shop",
    "Bean There",
    11,
    "You are the barista of Bean There, a coffee shop. Answer in one short, cheerful "
    "sentence about coffee.",
    "What should I drink with breakfast?",
    True,
)
LEDGER = Brand(
    "ledger-desk",
    "Ledgerly Support",
    12,
    "You are Ledgerly's accounting support agent. Answer in one short, formal sentence.",
    "How often should I check my accounts?",
    False,
)


# ---------------------------------------------------------------------------- fixtures


def _browser_required() -> bool:
    return bool(os.environ.get("CI") or os.environ.get("TESTS_REQUIRE_BROWSER"))


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    """Headless chromium with a fresh profile, through Debian's chromedriver."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    if missing:
        reason = f"no browser for the UI test: {', '.join(missing)} missing; {INSTALL_HINT}"
        if _browser_required():
            pytest.fail(reason)
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        # A driver path given: Selenium Manager is skipped, nothing is downloaded.
        driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    except WebDriverException as error:
        pytest.fail(f"chromium did not start through {CHROMEDRIVER}: {error.msg}")
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def ui_url(
    shared_engine: SharedEngine,
    bundled_model: ModelRecord,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """The UI's URL, in front of the real stack serving the two brands (a home of its own),
    on the integration tests' shared engine."""
    home = tmp_path_factory.mktemp("ui-home")
    store = ModelStore(home / "models")
    model = store.add(bundled_model.path, bundled_model.name)
    registry = home_registry(home, store=store)
    work = tmp_path_factory.mktemp("ui-adapters")
    for brand in (COFFEE, LEDGER):
        # Gentler than the gateway test's adapters: different answers, still sentences.
        source = write_random_lora(model.path, work / brand.domain, brand.seed, std=0.02)
        registry.publish(
            source,
            brand.domain,
            display_name=brand.label,
            description=f"The {brand.label} assistant.",
            system_prompt=brand.voice,
            promote="prod",
            capture=brand.capture,
        )
    with real_stack(model, home, ADMIN_KEY, feedback=True, engine_url=shared_engine.url) as running:
        app = build_app(running.url, None, None)
        url = launch_app(app, "127.0.0.1", free_port(), quiet=True)
        try:
            yield url
        finally:
            app.close()


@pytest.fixture(scope="module")
def shots() -> Path:
    """test-output/ui/, emptied of an earlier run's screenshots."""
    if SHOTS.exists():
        shutil.rmtree(SHOTS)
    SHOTS.mkdir(parents=True)
    return SHOTS


# ---------------------------------------------------------------------------- the page


@dataclass(frozen=True)
class Shown:
    """One message of the transcript as the page shows it."""

    role: str  # "user" or "bot"
    title: str  # the domain an answer is titled with ("" for others)
    text: str
    pending: bool  # the answer's spinner is showing


READ_TRANSCRIPT = """
return [...document.querySelectorAll(
    '.lorastack-chat [data-testid="user"], .lorastack-chat [data-testid="bot"]'
)].map((m) => {
    const title = m.querySelector('.thought-group .title .md');
    const body = m.querySelector('.thought-group .content') || m;
    return {
        role: m.dataset.testid,
        title: title ? title.innerText.trim() : '',
        text: body.innerText.trim(),
        pending: m.querySelector('.loading-spinner') !== null,
    };
});
"""


# Read in the page: the list re-renders as one types (elements found before go stale).
READ_OPTIONS = """
return [...document.querySelectorAll('[role="option"]')].map((o) => o.getAttribute('aria-label'));
"""


def transcript(driver: WebDriver) -> list[Shown]:
    rows: list[dict[str, Any]] = driver.execute_script(READ_TRANSCRIPT)
    return [Shown(r["role"], r["title"], r["text"], bool(r["pending"])) for r in rows]


def wait(driver: WebDriver, timeout_s: float = 30.0) -> WebDriverWait[WebDriver]:
    return WebDriverWait(driver, timeout_s, poll_frequency=0.05)


def shoot(driver: WebDriver, folder: Path, name: str) -> None:
    driver.save_screenshot(str(folder / f"{name}.png"))


def picker(driver: WebDriver) -> WebElement:
    return driver.find_element(By.CSS_SELECTOR, PICKER)


def pick_with_the_mouse(driver: WebDriver, label: str) -> None:
    picker(driver).click()
    option = wait(driver, 10).until(
        expected_conditions.element_to_be_clickable(
            (By.CSS_SELECTOR, f"[role='option'][aria-label='{label}']")
        )
    )
    option.click()
    wait(driver, 10).until(lambda d: picker(d).get_attribute("value") == label)


def pick_with_the_keyboard(driver: WebDriver, label: str) -> None:
    box = picker(driver)
    box.click()
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(label[:4])  # the list filters as one types
    wait(driver, 10).until(lambda d: d.execute_script(READ_OPTIONS) == [label])
    box.send_keys(Keys.ENTER)
    wait(driver, 10).until(lambda d: picker(d).get_attribute("value") == label)


def send(driver: WebDriver, text: str) -> None:
    """Type into the message box and press Enter (no click on Send)."""
    box = driver.find_element(By.CSS_SELECTOR, MESSAGE_BOX)
    box.click()
    box.send_keys(text)
    box.send_keys(Keys.ENTER)


def watch_answer(
    driver: WebDriver, folder: Path, brand: Brand, shot: str, wait_s: float = ANSWER_WAIT_S
) -> tuple[Shown, bool, bool]:
    """Follow the streamed answer to the last message, titled with `brand`.

    Returns the settled answer, whether it was seen growing, and whether the test had to
    press Stop (past `wait_s`). A screenshot is taken while it streams.
    """
    partials: list[str] = []

    def answer(d: WebDriver) -> Shown | None:
        shown = transcript(d)
        last = shown[-1] if shown else None
        return last if last and last.role == "bot" and last.title == brand.label else None

    def some_text(d: WebDriver) -> Shown | None:
        # The titled answer appears at once, empty and pending; then text arrives.
        now = answer(d)
        return now if now is not None and now.text else None

    def settled(d: WebDriver) -> Shown | None:
        now = answer(d)
        assert now is not None, transcript(d)
        if now.pending:
            partials.append(now.text)
            return None
        return now

    first: Shown = wait(driver, 60).until(some_text)
    if first.pending:
        partials.append(first.text)
        shoot(driver, folder, shot)
    stopped = False
    try:
        final: Shown = wait(driver, wait_s).until(settled)
    except TimeoutException:
        driver.find_element(By.XPATH, "//button[normalize-space()='Stop']").click()
        stopped = True
        final = wait(driver, 30).until(settled)
    grew = any(0 < len(p) < len(final.text) and final.text.startswith(p) for p in partials)
    return final, grew, stopped


def text_of(element: WebElement) -> str:
    return str(element.get_attribute("value") or "")


def page_says(driver: WebDriver, text: str) -> bool:
    return text in str(driver.execute_script("return document.body.innerText"))


def thumb_up(driver: WebDriver, which: int) -> None:
    """Click the thumb up under the `which`-th assistant message (markers count too)."""
    likes = driver.find_elements(By.CSS_SELECTOR, LIKE)
    bots = [m for m in transcript(driver) if m.role == "bot"]
    assert len(likes) == len(bots), "one thumb up per assistant message"
    likes[which].click()


# ---------------------------------------------------------------------------- the test


@pytest.mark.timeout(900)  # vLLM's start on the CPU included
def test_chat_in_a_real_browser(browser: WebDriver, ui_url: str, shots: Path) -> None:
    driver = browser
    timings: dict[str, float | bool] = {}  # written to test-output/ui/timings.json

    # Open the page: the domain list comes from the gateway.
    started = time.monotonic()
    driver.get(ui_url)
    wait(driver).until(lambda d: picker(d).get_attribute("value"))
    timings["page_ready_s"] = round(time.monotonic() - started, 2)
    box = driver.find_element(By.CSS_SELECTOR, MESSAGE_BOX)
    assert box.is_displayed() and picker(driver).is_displayed()
    # Everything to chat with is in the window, without scrolling.
    assert driver.execute_script(
        "return arguments[0].getBoundingClientRect().bottom <= innerHeight"
        " && arguments[1].getBoundingClientRect().top >= 0",
        box,
        picker(driver),
    )
    shoot(driver, shots, "01-opened")

    # Pick the domain that is not the default one.
    assert picker(driver).get_attribute("value") != LEDGER.label
    pick_with_the_mouse(driver, LEDGER.label)
    shoot(driver, shots, "02-picked-ledgerly")

    # Ask; the answer streams in, titled with the domain.
    started = time.monotonic()
    send(driver, LEDGER.question)
    wait(driver, 10).until(lambda d: text_of(d.find_element(By.CSS_SELECTOR, MESSAGE_BOX)) == "")
    first, grew_first, timings["first_answer_stopped"] = watch_answer(
        driver, shots, LEDGER, "03-ledgerly-streaming"
    )
    timings["first_answer_s"] = round(time.monotonic() - started, 2)
    assert first.text and first.title == LEDGER.label
    shoot(driver, shots, "04-ledgerly-answered")

    # Switch domain with the keyboard: the transcript marks it.
    pick_with_the_keyboard(driver, COFFEE.label)
    marker = f"switched to {COFFEE.label}"
    wait(driver, 10).until(lambda d: marker in transcript(d)[-1].text)
    shoot(driver, shots, "05-switched-to-bean-there")

    started = time.monotonic()
    send(driver, COFFEE.question)
    second, grew_second, timings["second_answer_stopped"] = watch_answer(
        driver, shots, COFFEE, "06-bean-there-streaming", COMPLETE_ANSWER_WAIT_S
    )
    timings["second_answer_s"] = round(time.monotonic() - started, 2)
    shoot(driver, shots, "07-bean-there-answered")

    shown = transcript(driver)
    assert [(m.role, m.title) for m in shown] == [
        ("user", ""),
        ("bot", LEDGER.label),
        ("bot", ""),
        ("user", ""),
        ("bot", COFFEE.label),
    ]
    assert shown[0].text == LEDGER.question and shown[3].text == COFFEE.question
    assert marker in shown[2].text
    assert second.text and second.text != first.text
    assert grew_first or grew_second, "no answer was seen growing: not streamed?"

    # A thumb up on Bean There's answer (capture on): the page says it was saved.
    assert not timings["second_answer_stopped"], "cut short, the answer cannot be rated"
    started = time.monotonic()
    thumb_up(driver, -1)
    wait(driver, 30).until(lambda d: page_says(d, "Rating saved"))
    timings["rating_s"] = round(time.monotonic() - started, 2)
    shoot(driver, shots, "08-rated")
    # Ledgerly keeps no answers: its thumb says so, and nothing breaks.
    thumb_up(driver, 0)
    wait(driver, 30).until(lambda d: page_says(d, "this assistant does not collect feedback"))
    shoot(driver, shots, "09-not-collected")
    # The page logged no errors along the way.
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
    (shots / "timings.json").write_text(json.dumps(timings, indent=2) + "\n")
