"""The studies pages in a real browser: a 3-trial study of the tiny model, run as ``hpo_trial`` jobs by the
server's worker, is listed with its counts and best value; its page shows the trials (with their jobs), the
optimization history and the intermediate-value curves drawn, and the parameter importances; a second study is
paused, resumed and cancelled with the page's buttons. Screenshots as in test_console.py."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import pytest

from fixtures.data import MEMORIZE, write_jsonl
from fixtures.platform import api_client, running_server, study_request, tiny_server_settings, upload_file, wait_for

pytestmark = pytest.mark.browser
pytest.importorskip("optuna")
SHOTS = (Path(__file__).resolve().parents[2] / "docs" / "screenshots" if os.environ.get("TUNEFORGE_SCREENSHOTS")
         else Path(tempfile.mkdtemp(prefix="tuneforge-screenshots-")))
SPACE = {"train.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
         "method.r": {"type": "categorical", "choices": [2, 4, 8]}}


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model):
    with running_server(tiny_server_settings(tmp_path_factory.mktemp("studies"), tiny_model)) as running:
        yield running


@pytest.fixture(scope="module")
def api(server):
    return api_client(server)


@pytest.fixture(scope="module")
def files(api, tmp_path_factory):
    folder = tmp_path_factory.mktemp("study-data")
    return {split: upload_file(api, write_jsonl(folder / f"{split}.jsonl", rows))
            for split, rows in (("train", MEMORIZE), ("eval", MEMORIZE[:4]))}


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_a_finished_study_shows_trials_history_curves_and_importances(page, server, api, files):
    body = study_request("sweep", files, space=SPACE, sampler="random", pruner="median", n_trials=3)
    assert api.post("/api/v1/hpo/studies", json=body).status_code == 200
    page.goto(f"{server.url}/ui/studies")
    row = page.locator("#studies tr:has(a:text-is('sweep'))")
    row.locator("[data-state=running]").wait_for()
    row.locator("[data-state=finished]").wait_for(timeout=240_000)  # the list polls
    study = api.get("/api/v1/hpo/studies/sweep").json()
    assert study["complete"] >= 2 and study["complete"] + study["pruned"] == 3, study
    cells = row.locator("td").all_inner_texts()
    assert cells[2] == "3/3" and cells[3] == str(study["complete"]) and cells[4] == str(study["pruned"])
    assert f"(trial {study['best'][0]['number']})" in cells[7] and "train.learning_rate=" in cells[8]
    shot(page, "studies")

    row.locator("a").click()
    page.wait_for_url(re.compile("/ui/studies/sweep$"))
    page.locator("#trials tbody tr").nth(2).wait_for()
    states = page.locator("#trials tbody [data-state]").all_inner_texts()
    assert sorted(states) == sorted(t["state"] for t in study["trials"])
    page.locator("#chart-history canvas").wait_for()
    history = page.locator("#chart-history")
    assert history.get_attribute("data-series") == "2"  # value per trial, best so far
    assert int(history.get_attribute("data-points")) == 2 * study["complete"]
    curves = page.locator("#chart-intermediate")
    curves.locator("canvas").wait_for()
    reported = [t for t in study["trials"] if t["intermediate"]]
    assert len(reported) == 3  # the median pruner gets the eval loss of every trial, pruned or not
    assert curves.get_attribute("data-series") == "3"
    assert int(curves.get_attribute("data-points")) == sum(len(t["intermediate"]) for t in reported)
    assert all(t["intermediate"][0][1] > 0 for t in reported)  # eval losses (not negated)

    importances = page.locator("#importances tr[data-param]")
    importances.nth(1).wait_for()  # two parameters searched
    shares = {r.get_attribute("data-param"): float(r.locator("td").nth(2).inner_text()) for r in importances.all()}
    assert set(shares) == set(SPACE) and sum(shares.values()) == pytest.approx(1.0, abs=0.01)
    assert page.locator("#actions button[data-action=cancel]").is_disabled()  # a finished study
    shot(page, "study")

    job_id = study["trials"][0]["job_id"]
    page.locator(f"#trials a:text-is('{job_id}')").click()  # the trial's job page
    page.locator("#status[data-status=succeeded]").wait_for()


def test_pause_resume_and_cancel_a_study_from_its_page(page, server, api, files):
    body = study_request("held", files, max_steps=40, n_trials=2)
    assert api.post("/api/v1/hpo/studies", json=body).status_code == 200
    page.goto(f"{server.url}/ui/studies/held")
    state = page.locator("#summary [data-state]")
    for action, after in (("pause", "paused"), ("resume", "running"), ("cancel", "cancelled")):
        page.locator(f"#actions button[data-action={action}]").click()
        state.filter(has_text=after).wait_for()
        assert api.get("/api/v1/hpo/studies/held").json()["state"] == after
    assert page.locator("#actions button[data-action=resume]").is_disabled()
    wait_for(lambda: not {j["status"] for j in api.get("/api/v1/hpo/trials").json()["data"]
                          if j["request"].get("study") == "held"} & {"queued", "running"},
             timeout=120, what="no trial job of the cancelled study left to run")
