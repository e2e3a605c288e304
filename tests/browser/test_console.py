"""The web console in a real browser: log in, watch a tiny job go from queued to succeeded with its curves drawn,
pause / resume / cancel jobs, compare runs (two evaluations give a significance verdict), move and roll back an
alias, read a data set's versions, quality report and records, annotate two records into a new version.
Each page's screenshot is saved in the test's temporary folder, or under docs/screenshots/ (the README shows them)
with TUNEFORGE_SCREENSHOTS=1, so a plain test run leaves the checkout clean."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

import httpx2 as httpx
import pytest

from fixtures.platform import running_server, tiny_server_settings, wait_for, write_chat

pytestmark = pytest.mark.browser
SHOTS = (Path(__file__).resolve().parents[2] / "docs" / "screenshots" if os.environ.get("TUNEFORGE_SCREENSHOTS")
         else Path(tempfile.mkdtemp(prefix="tuneforge-screenshots-")))
TRAIN = {"max_steps": 6, "batch_size": 4, "precision": "fp32", "logging_steps": 1, "eval_steps": 2}


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model):
    with running_server(tiny_server_settings(tmp_path_factory.mktemp("console"), tiny_model)) as running:
        yield running


@pytest.fixture(scope="module")
def api(server):
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.keys['acme']}"},
                      timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def file_id(api, tmp_path_factory):
    data = write_chat(tmp_path_factory.mktemp("data") / "train.jsonl")
    with data.open("rb") as handle:
        upload = api.post("/v1/files", files={"file": ("train.jsonl", handle)}, data={"purpose": "fine-tune"})
    return upload.json()["id"]


@pytest.fixture(scope="module")
def adder_jobs(api, file_id) -> tuple[str, str]:
    """Two fine-tuning jobs (registered as adder:1 and adder:2 once they succeed); the second is queued behind
    the first when this returns. Tests that need them finished use ``adder``."""
    first = train(api, file_id, seed=1)
    wait_for(lambda: api.get(f"/ui/api/jobs/{first}").json()["job"]["status"] != "queued", what="a claim")
    return first, train(api, file_id, seed=2)  # one worker slot: it waits


@pytest.fixture(scope="module")
def adder(api, adder_jobs) -> tuple[str, str]:
    """The two jobs, succeeded and registered."""
    assert [finished(api, j)["status"] for j in adder_jobs] == ["succeeded", "succeeded"]
    wait_for(lambda: len(api.get("/api/v1/registry/models/adder").json().get("versions", [])) == 2, what="adder:2")
    return adder_jobs


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def train(api, file_id: str, *, steps: int = 6, suffix: str = "adder", seed: int = 0) -> str:
    config = {"model": "tiny-llama", "data": {"train": file_id, "eval": file_id}, "seed": seed,
              "train": {**TRAIN, "max_steps": steps}}
    return api.post("/api/v1/fine-tuning/jobs", params={"suffix": suffix}, json=config).json()["id"]


def status_of(page, job_id: str):
    return page.locator(f"tr:has(a:text-is('{job_id}')) [data-status]")


def finished(api, job_id: str) -> dict:
    return wait_for(lambda: (j := api.get(f"/ui/api/jobs/{job_id}").json()["job"])["status"]
                    in ("succeeded", "failed", "cancelled") and j, timeout=180, what=job_id)


def test_login_is_required_and_a_wrong_key_is_refused(chromium, server):
    context = chromium.new_context()
    tab = context.new_page()
    tab.goto(f"{server.url}/ui/models")
    tab.wait_for_url(re.compile(r"/ui/login\?next=%2Fui%2Fmodels"))
    shot(tab, "login")
    tab.fill("#api-key", "tf-not-a-key")
    tab.click("button[type=submit]")
    tab.locator("#error", has_text="not valid").wait_for()
    assert tab.evaluate("sessionStorage.length") == 0
    context.close()


def test_a_job_goes_from_queued_to_succeeded_with_its_curves_drawn(page, server, api, adder_jobs):
    first, second = adder_jobs
    page.goto(f"{server.url}/ui/jobs")  # polling
    status_of(page, second).filter(has_text="queued").wait_for(timeout=60_000)
    row = page.locator(f"tr:has(a:text-is('{second}'))")
    row.locator("td").nth(7).filter(has_text="1").wait_for()  # queue position
    shot(page, "jobs")
    status_of(page, second).filter(has_text="succeeded").wait_for(timeout=180_000)
    assert finished(api, first)["status"] == "succeeded"

    row.locator("a").click()
    page.wait_for_url(re.compile(f"/ui/jobs/{second}$"))
    page.locator("#status[data-status=succeeded]").wait_for()
    page.locator("#chart-loss canvas").wait_for()
    loss = page.locator("#chart-loss")
    assert int(loss.get_attribute("data-points")) >= 6 + 3  # 6 train losses, 3 eval losses (steps 2, 4, 6)
    assert loss.get_attribute("data-series") == "2"
    assert int(page.locator("#chart-lr").get_attribute("data-points")) == 6
    assert page.locator("#events li").filter(has_text="Step 6/6").count() >= 1
    assert json.loads(page.locator("#config").inner_text())["train"]["max_steps"] == 6
    page.locator("#events li").filter(has_text="adder").first.wait_for()  # registered as adder:2
    shot(page, "job")


def test_pause_resume_and_cancel_from_the_jobs_page(page, server, api, file_id):
    long_job, short_job = train(api, file_id, steps=2000, suffix="long"), train(api, file_id, steps=2, suffix="short")
    page.goto(f"{server.url}/ui/jobs")
    row = page.locator(f"tr:has(a:text-is('{short_job}'))")
    status_of(page, short_job).filter(has_text="queued").wait_for()
    row.locator("button[data-action=pause]").click()
    status_of(page, short_job).filter(has_text="paused").wait_for()
    row.locator("button[data-action=resume]").click()
    status_of(page, short_job).filter(has_text="queued").wait_for()
    page.locator(f"tr:has(a:text-is('{long_job}')) button[data-action=cancel]").click()
    status_of(page, long_job).filter(has_text="cancelled").wait_for(timeout=60_000)
    assert api.get(f"/ui/api/jobs/{long_job}").json()["job"]["status"] == "cancelled"
    page.select_option("#status", "cancelled")  # the filter leaves the cancelled job alone
    page.locator("#jobs tbody tr").filter(has_text=short_job).wait_for(state="detached")
    assert page.locator("#jobs tbody tr").count() == 1 and long_job in page.locator("#jobs tbody").inner_text()
    page.select_option("#status", "")
    assert finished(api, short_job)["status"] == "succeeded"


def test_compare_overlays_curves_and_gives_the_verdict_of_two_evaluations(page, server, api, file_id, adder):
    suite = {"tasks": [{"data": file_id, "metrics": ["exact_match"], "max_new_tokens": 4, "limit": 6}],
             "latency_samples": 0}
    evaluations = [api.post("/api/v1/evaluations", json={"model": model, "suite": suite}).json()["id"]
                   for model in ("adder:1", "adder:2")]
    assert [finished(api, j)["status"] for j in evaluations] == ["succeeded", "succeeded"]
    query = "&".join(f"job={j}" for j in [*adder, *evaluations])
    page.goto(f"{server.url}/ui/compare?{query}")
    page.locator("#chart-loss canvas").wait_for()
    assert page.locator("#chart-loss").get_attribute("data-series") == "2"  # the two training runs
    assert page.locator("#metrics tbody tr").count() == 4
    header = page.locator("#metrics thead").inner_text()
    assert "eval_loss" in header and "exact_match" in header
    overall = page.locator("#overall")
    overall.wait_for()
    assert "exact_match" in overall.inner_text() and "adder:1" in overall.inner_text()
    assert page.locator("#verdict tbody tr").count() == 1
    shot(page, "compare")
    page.locator("#metrics a", has_text=evaluations[0]).click()  # its job page: the report's scores
    page.locator("#report tbody tr", has_text="exact_match").wait_for()


def test_deploy_and_roll_back_an_alias(page, server, api, adder):
    page.goto(f"{server.url}/ui/models")
    page.locator("#models a", has_text="adder").click()
    page.wait_for_url(re.compile("/ui/models/adder$"))
    page.locator("#versions tbody tr").nth(1).wait_for()
    for version in ("1", "2"):
        page.select_option("#version", version)
        page.click("#deploy button[type=submit]")
        page.locator("#aliases tbody tr", has_text="production").filter(has_text=version).wait_for()
    assert api.get("/api/v1/registry/models/adder@production").json()["version"] == 2
    page.locator("#aliases tbody tr", has_text="production").locator("button[data-action=rollback]").click()
    page.locator("#moves tbody tr").nth(2).wait_for()
    assert api.get("/api/v1/registry/models/adder@production").json()["version"] == 1
    assert page.locator("#moves tbody tr").first.inner_text().split("\t")[4] == "rollback"
    page.locator("#versions button[data-action=lineage]").first.click()
    page.locator("#chain", has_text="data sha256").wait_for()
    assert page.locator("#chain a").inner_text().endswith("(succeeded)")  # the job that trained it
    shot(page, "model")
    page.goto(f"{server.url}/ui/models")
    page.locator("#models tbody tr", has_text="production → 1").wait_for()
    shot(page, "models")


def test_datasets_report_search_and_annotation_make_a_new_version(page, server, api, file_id):
    version = api.post("/api/v1/data", json={"name": "sums", "file_id": file_id}).json()
    assert version["ref"] == "sums:1"
    page.goto(f"{server.url}/ui/data")
    page.locator("#datasets a", has_text="sums").click()
    page.locator("#records .record").first.wait_for()
    page.fill("#query", "8 plus 1")
    page.click("#search button[type=submit]")
    page.locator("#matched", has_text="1 of 12 records match").wait_for()
    page.locator("#versions button[data-action=report]").click()
    page.locator("#report details summary").first.wait_for()
    shot(page, "dataset")

    page.goto(f"{server.url}/ui/annotate/sums:1")
    page.locator("#position", has_text="Record 1 of 12").wait_for()
    assert page.input_value("#answer") == "3"
    page.fill("#answer", "three")
    page.click("#accept")
    page.locator("#position", has_text="Record 2 of 12").wait_for()
    page.click("#reject")
    page.check("#make-pairs")
    assert page.input_value("#pairs-to") == "sums-prefs"
    shot(page, "annotate")
    page.click("#save")
    page.locator("#new-version", has_text="sums:2").wait_for()
    page.locator("#new-pairs", has_text="sums-prefs:1 (1 pairs)").wait_for()
    records = api.get("/ui/api/data/sums:2/records", params={"limit": 50}).json()
    assert records["total"] == 11 and records["records"][0]["record"]["messages"][-1]["content"] == "three"

    page.goto(f"{server.url}/ui/data/sums")
    row = page.locator("#versions tbody tr").first
    row.filter(has_text="sums:2").wait_for()
    assert "annotate" in row.inner_text() and '"rejected":1' in row.inner_text()
    page.goto(f"{server.url}/ui/data")
    shot(page, "datasets")


def test_picking_the_better_answer_of_a_pair_swaps_it(page, server, api, tmp_path):
    pairs = tmp_path / "prefs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": f"What is {n} plus 1?", "chosen": "no idea", "rejected": str(n + 1)})
                             + "\n" for n in range(3)))
    with pairs.open("rb") as handle:
        upload = api.post("/v1/files", files={"file": ("prefs.jsonl", handle)}, data={"purpose": "fine-tune"}).json()
    assert api.post("/api/v1/data", json={"name": "prefs", "file_id": upload["id"]}).json()["format"] == "preference"
    page.goto(f"{server.url}/ui/annotate/prefs:1")
    page.locator("#answer-b", has_text="1").wait_for()
    assert page.locator("#answer-a").inner_text() == "no idea" and page.locator("#edit").is_hidden()
    page.click("#pick-b")
    page.locator("#position", has_text="Record 2 of 3").wait_for()
    page.click("#pick-a")
    page.click("#save")
    page.locator("#new-version", has_text="prefs:2").wait_for()
    records = [r["record"] for r in api.get("/ui/api/data/prefs:2/records").json()["records"]]
    assert [(r["chosen"], r["rejected"]) for r in records] == [("1", "no idea"), ("no idea", "2"), ("no idea", "3")]


def test_another_projects_jobs_are_not_visible(chromium, server, api, adder_jobs):
    context = chromium.new_context()
    tab = context.new_page()
    tab.goto(f"{server.url}/ui/login")
    tab.fill("#api-key", server.keys["other"])
    tab.click("button[type=submit]")
    tab.wait_for_url(re.compile(r"/ui/jobs$"))
    tab.locator("#empty").wait_for()
    tab.goto(f"{server.url}/ui/jobs/{adder_jobs[0]}")
    tab.locator("#error", has_text="no job").wait_for()
    assert tab.locator("#summary dl").count() == 0
    tab.goto(f"{server.url}/ui/studies")
    tab.locator("#empty").wait_for()  # none of this project (tests/browser/test_studies.py shows a study)
    context.close()
