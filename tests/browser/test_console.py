"""The web console in a real browser: live overview, live job page, login and logout, and
what a read token and a form without its CSRF token may not do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

import wizd
from tests.acceptance.conftest import AGENT, Harness

WAIT = 20.0  # seconds a condition may take at most


def wait(page: WebDriver, condition: Any, what: str) -> Any:
    """Wait for `condition`; an element htmx swapped out while it was read counts as not yet."""
    patient = WebDriverWait(page, WAIT, ignored_exceptions=[StaleElementReferenceException])
    return patient.until(lambda d: condition(d), message=what)


def text(page: WebDriver, css: str) -> str:
    found = page.find_elements(By.CSS_SELECTOR, css)
    return found[0].text if found else ""


def mark(page: WebDriver) -> None:
    """A flag on this document: still there later means the page was never reloaded."""
    page.execute_script("window.wizdMark = 'same page';")


def same_page(page: WebDriver) -> bool:
    return bool(page.execute_script("return window.wizdMark === 'same page';"))


def listening(page: WebDriver) -> None:
    """Wait until htmx's sse extension holds an open EventSource on this page."""
    wait(
        page,
        lambda d: d.find_elements(By.CSS_SELECTOR, '[sse-connect][data-live="open"]'),
        "the page's event stream to open",
    )


def post_from_page(page: WebDriver, path: str, body: str) -> int:
    """POST from the page's own origin, with its cookies (as a forged form would be)."""
    status: int = page.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0], {method: 'POST', body: arguments[1], redirect: 'manual',"
        " headers: {'Content-Type': 'application/x-www-form-urlencoded'}})"
        ".then(r => done(r.status || 303)).catch(e => done(-1));",
        path,
        body,
    )
    return status


def test_jobs_enqueued_through_the_api_appear_on_the_overview_live(
    page: WebDriver, live: tuple[Harness, str]
) -> None:
    _, base = live
    page.get(base + "/")
    card = f"#queue-{AGENT}"
    wait(page, lambda d: d.find_elements(By.CSS_SELECTOR, card), "the agent's queue card")
    before = int(text(page, f'{card} dd[data-status="completed"]') or 0)
    assert text(page, f"{card} .daemons") == "1"  # the live daemon and its slots
    mark(page)
    listening(page)
    for n in range(3):
        made = httpx.post(
            f"{base}/v1/jobs",
            json={"name": "narrate", "queue": AGENT, "payload": {"pieces": [str(n)]}},
        )
        assert made.status_code == 201, made.text
    wait(
        page,
        lambda d: int(text(d, f'{card} dd[data-status="completed"]') or 0) == before + 3,
        "three more completed jobs on the overview",
    )
    assert same_page(page)
    assert page.find_elements(By.CSS_SELECTOR, f"{card} svg.spark.completed")


def test_a_job_page_shows_live_log_lines(
    page: WebDriver, live: tuple[Harness, str], tmp_path: Path
) -> None:
    _, base = live
    go = str(tmp_path / "go")
    made = httpx.post(
        f"{base}/v1/jobs",
        json={
            "name": "talk",
            "queue": AGENT,
            "payload": {
                "first": "reading the sources",
                "second": "writing it up",
                "piece": "Once upon",
                "go": go,
            },
        },
    ).json()
    page.get(f"{base}/jobs/{made['id']}")
    wait(page, lambda d: "reading the sources" in text(d, "#log"), "the first log line")
    mark(page)
    listening(page)
    Path(go).touch()
    wait(page, lambda d: "writing it up" in text(d, "#log"), "the second log line, live")
    wait(page, lambda d: "Once upon" in text(d, "#stream"), "the streamed tail, live")
    wait(page, lambda d: text(d, "#progress").startswith("50%"), "the progress bar, live")
    Path(go + ".end").touch()
    wait(page, lambda d: text(d, "#job-status") == "completed", "the job completed, live")
    assert '"said": 2' in text(page, "#result")
    assert same_page(page)


def login(page: WebDriver, base: str, secret: str) -> None:
    page.get(base + "/")
    wait(page, lambda d: d.find_elements(By.ID, "token"), "the login form")
    page.find_element(By.ID, "token").send_keys(secret)
    page.find_element(By.ID, "login").click()
    wait(page, lambda d: d.find_elements(By.ID, "who"), "the overview, logged in")


def test_login_and_logout(page: WebDriver, guarded: tuple[str, str]) -> None:
    base, db = guarded
    with wizd.connect_sync(db) as q:
        _, secret = q.create_token("operate", name="night shift")
    page.get(base + "/jobs")
    wait(page, lambda d: "/login" in d.current_url, "the login form for a page")
    page.find_element(By.ID, "token").send_keys(secret[:-1] + "x")
    page.find_element(By.ID, "login").click()
    wait(page, lambda d: d.find_elements(By.ID, "login-error"), "a refused token")
    page.find_element(By.ID, "token").send_keys(secret)
    page.find_element(By.ID, "login").click()
    wait(page, lambda d: d.find_elements(By.ID, "jobs-table"), "the jobs page it asked for")
    assert "night shift" in text(page, "#who")
    cookie = page.get_cookie("wizd_session")
    assert cookie is not None
    assert cookie["httpOnly"]
    assert cookie["sameSite"] == "Strict"
    page.find_element(By.ID, "logout").click()
    wait(page, lambda d: d.find_elements(By.ID, "token"), "the login form again")
    assert page.get_cookie("wizd_session") is None
    page.get(base + "/")
    wait(page, lambda d: "/login" in d.current_url, "no session after logging out")


def test_a_read_token_sees_no_actions_and_its_posts_are_refused(
    page: WebDriver, guarded: tuple[str, str]
) -> None:
    base, db = guarded
    with wizd.connect_sync(db) as q:
        _, secret = q.create_token("read", name="auditor")
        (job,) = q.list(limit=1)
    login(page, base, secret)
    page.get(f"{base}/jobs")
    wait(page, lambda d: d.find_elements(By.ID, f"job-row-{job.id}"), "the job in the list")
    assert not page.find_elements(By.CSS_SELECTOR, "button.action")
    assert not page.find_elements(By.CSS_SELECTOR, "input[type=checkbox]")
    page.get(f"{base}/jobs/{job.id}")
    wait(page, lambda d: text(d, "#job-status") == "pending", "the job page")
    assert not page.find_elements(By.CSS_SELECTOR, "#actions, button.action")
    csrf = page.execute_script(
        "return JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRF-Token'];"
    )
    assert post_from_page(page, f"/jobs/{job.id}/cancel", f"csrf={csrf}") == 403
    with wizd.connect_sync(db) as q:
        assert q.get(job.id).status == "pending"


def test_a_post_without_its_csrf_token_is_refused(
    page: WebDriver, guarded: tuple[str, str]
) -> None:
    base, db = guarded
    with wizd.connect_sync(db) as q:
        token, secret = q.create_token("admin", name="lead")
        (job,) = q.list(limit=1)
    login(page, base, secret)
    page.get(f"{base}/jobs/{job.id}")
    wait(page, lambda d: d.find_elements(By.ID, "action-cancel"), "the cancel button")
    assert post_from_page(page, f"/jobs/{job.id}/cancel", "") == 403
    assert post_from_page(page, f"/jobs/{job.id}/cancel", "csrf=forged.value") == 403
    with wizd.connect_sync(db) as q:
        assert q.get(job.id).status == "pending"
    # The form, with its token (found again if a live refresh swapped it meanwhile).
    wait(page, lambda d: d.find_element(By.ID, "action-cancel").click() or True, "a click")
    wait(page, lambda d: text(d, "#job-status") == "cancelled", "the job cancelled")
    assert f"cancelled from the console by token {token.id} (lead)" in text(page, "#log")
