"""The web console in a real browser: the Job page's relations graph leads to the jobs it
draws, and "Run now" on the Schedules page enqueues a job you can open."""

from __future__ import annotations

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

import wizd
from tests.browser.test_console import text, wait


def fresh(page: WebDriver, base: str) -> None:
    """No session cookie of an earlier test's server: cookies are per host, not port."""
    page.get(base + "/static/console.css")
    page.delete_all_cookies()


def test_the_graphs_nodes_lead_to_their_jobs(page: WebDriver, guarded: tuple[str, str]) -> None:
    base, db = guarded
    with wizd.connect_sync(db) as q:
        first = q.enqueue("fetch", queue="researcher")
        job = q.enqueue("summarise", queue="researcher", depends_on=[first])
        after = q.enqueue("publish", queue="researcher", depends_on=[job])
    fresh(page, base)
    for other in (first, after):
        page.get(f"{base}/jobs/{job.id}")
        node = f'svg.graph a.node[data-job="{other.id}"]'
        wait(page, lambda d, n=node: d.find_elements(By.CSS_SELECTOR, n), "the node in the graph")
        page.find_element(By.CSS_SELECTOR, node).click()
        wait(page, lambda d, o=other: d.current_url.endswith(f"/jobs/{o.id}"), "the job's page")
        wait(page, lambda d, o=other: text(d, "#job-status") == o.status, "the job's status")
        assert text(page, "h1").startswith(f"Job #{other.id}")
        assert page.find_elements(By.CSS_SELECTOR, f'svg.graph a.node.self[data-job="{other.id}"]')
    page.execute_script("document.getElementById('graph').scrollIntoView();")  # for the shot


def test_run_now_on_a_schedule_makes_a_job_appear(
    page: WebDriver, guarded: tuple[str, str]
) -> None:
    base, db = guarded
    with wizd.connect_sync(db) as q:
        s = q.schedule("digest", {"day": "today"}, queue="researcher", cron="0 9 * * *")
        before = {j.id for j in q.list(limit=100)}
    fresh(page, base)
    page.get(f"{base}/schedules")
    wait(page, lambda d: d.find_elements(By.ID, f"schedule-{s.id}-run"), "the Run now button")
    page.find_element(By.ID, f"schedule-{s.id}-run").click()
    wait(page, lambda d: d.find_elements(By.ID, "enqueued"), "the job it enqueued")
    page.find_element(By.ID, "enqueued").click()
    wait(page, lambda d: text(d, "#job-status") == "pending", "the new job's page")
    assert "digest" in text(page, "h1")
    assert '"day": "today"' in text(page, "#payload")
    with wizd.connect_sync(db) as q:
        (made,) = [j for j in q.list(limit=100) if j.id not in before]
        assert (made.name, made.queue) == ("digest", "researcher")
        assert page.current_url.endswith(f"/jobs/{made.id}")
