"""The console's operator pages in a real browser, with a live daemon: a waiting job is
approved from Waiting on people and completes; a failed job is retried from Failures and
runs again; a paused queue (from the Queues page) starts no job until it is resumed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

import wizd
from tests.acceptance.conftest import AGENT, Harness
from tests.browser.conftest import SHOTS
from tests.browser.test_console import listening, mark, same_page, text, wait


def enqueue(base: str, name: str, payload: dict[str, Any], **options: Any) -> int:
    made = httpx.post(
        f"{base}/v1/jobs", json={"name": name, "queue": AGENT, "payload": payload, **options}
    )
    assert made.status_code == 201, made.text
    job_id: int = made.json()["id"]
    return job_id


def shot(page: WebDriver, name: str) -> None:
    """A screenshot of the page as it is now, besides the one taken when the test ends."""
    SHOTS.mkdir(exist_ok=True)
    page.save_screenshot(str(SHOTS / f"{name}.png"))


def status(base: str, job_id: int) -> str:
    found: str = httpx.get(f"{base}/v1/jobs/{job_id}").json()["status"]
    return found


def test_a_waiting_job_is_approved_from_waiting_on_people_and_completes(
    page: WebDriver, live: tuple[Harness, str]
) -> None:
    _, base = live
    page.get(base + "/waiting")
    wait(page, lambda d: d.find_elements(By.ID, "waiting"), "the Waiting on people page")
    mark(page)
    listening(page)
    job_id = enqueue(base, "approval", {"draft": "the launch post"}, context={"owner": "ann"})
    card = f"wait-{job_id}"
    wait(page, lambda d: d.find_elements(By.ID, card), "the waiting job listed, live")
    assert same_page(page)
    assert text(page, f"#{card} .signal") == "approval"
    assert "the launch post" in text(page, f"#{card} .payload")
    assert '"owner": "ann"' in text(page, f"#{card} .context")
    shot(page, "waiting_on_people")
    # Found again if a live refresh swapped the list meanwhile.
    wait(page, lambda d: d.find_element(By.ID, f"approve-{job_id}").click() or True, "a click")
    wait(page, lambda d: d.find_elements(By.ID, "sent"), "the signal sent")
    page.get(f"{base}/jobs/{job_id}")
    wait(page, lambda d: text(d, "#job-status") == "completed", "the approved job completed")
    assert '"approved": true' in text(page, "#result")
    assert "signal 'approval' sent (approve) from the console" in text(page, "#log")


def test_a_failed_job_is_retried_from_the_failures_page_and_runs_again(
    page: WebDriver, live: tuple[Harness, str], tmp_path: Path
) -> None:
    _, base = live
    ok = tmp_path / "ok"
    job_id = enqueue(
        base, "picky", {"ok": str(ok), "message": "the source was offline"}, attempts=1
    )
    wait(page, lambda d: status(base, job_id) == "failed", "the job to fail")
    ok.touch()  # the cause is fixed: its retry will pass
    page.get(base + "/failures")
    row = '#failures-table tr.group[data-name="picky"]'
    wait(page, lambda d: d.find_elements(By.CSS_SELECTOR, row), "the failure's group")
    assert "the source was offline" in text(page, f"{row} .msg")
    shot(page, "failures")
    page.find_element(By.CSS_SELECTOR, f"{row} button.retry").click()
    wait(page, lambda d: d.find_elements(By.ID, "confirm"), "the confirmation page")
    assert f"#{job_id}" in text(page, ".confirm-list")
    page.find_element(By.ID, "confirm").click()
    wait(page, lambda d: d.find_elements(By.ID, "failures-table"), "back on Failures")
    wait(page, lambda d: status(base, job_id) == "completed", "the retried job completed")
    page.get(base + "/failures")
    wait(page, lambda d: d.find_elements(By.ID, "failures-table"), "Failures again")
    assert not page.find_elements(By.CSS_SELECTOR, row)
    result = httpx.get(f"{base}/v1/jobs/{job_id}").json()
    assert result["result"] == {"attempt": 1}  # a fresh attempt count, and it ran again


@pytest.fixture
def resumed(live: tuple[Harness, str]) -> Iterator[None]:
    """The agent's queue is running again after the test, whatever happened."""
    yield
    with wizd.connect_sync(str(live[0].db)) as q:
        q.resume(AGENT)


def heartbeats(db: str) -> float:
    with wizd.connect_sync(db) as q:
        return max(w.heartbeat_at.timestamp() for w in q.workers())


def test_a_queue_paused_from_the_queues_page_starts_no_job_until_resumed(
    page: WebDriver, live: tuple[Harness, str], resumed: None
) -> None:
    h, base = live
    page.get(base + "/queues")
    wait(page, lambda d: d.find_elements(By.ID, f"pause-{AGENT}"), "the queue's pause button")
    mark(page)
    page.find_element(By.ID, f"pause-{AGENT}").click()
    wait(page, lambda d: d.find_elements(By.ID, f"paused-{AGENT}"), "the row shows it paused")
    assert same_page(page)  # the row was swapped in place
    job_id = enqueue(base, "narrate", {"pieces": []})
    # The daemon claims every 0.05 s and beats every 0.2 s: three new beats after the
    # enqueue are a dozen claim passes in which the paused queue gave nothing out.
    beats = [heartbeats(str(h.db))]

    def beat_seen() -> bool:
        now = heartbeats(str(h.db))
        if now > beats[-1]:
            beats.append(now)
        return len(beats) > 3

    wait(page, lambda d: beat_seen(), "three heartbeats of the daemon")
    assert status(base, job_id) == "pending"
    page.find_element(By.ID, f"resume-{AGENT}").click()
    wait(page, lambda d: d.find_elements(By.ID, f"pause-{AGENT}"), "the row shows it running")
    wait(page, lambda d: status(base, job_id) == "completed", "the job ran once resumed")
    rate = page.find_element(By.CSS_SELECTOR, f"#queue-{AGENT} input[name=rate]")
    rate.send_keys("fast")
    page.find_element(By.ID, f"save-{AGENT}").click()
    wait(page, lambda d: "is not a rate" in text(d, "#settings-error"), "the error, inline")
    assert same_page(page)
    with wizd.connect_sync(str(h.db)) as q:
        assert q.queue_limits(AGENT).rate is None
