"""The studies pages in a real browser: a 3-trial study of the tiny model, run as ``hpo_trial`` jobs by the
server's worker, is listed with its counts and best value; its page shows the trials (with their jobs), the
optimization history and the intermediate-value curves drawn, and the parameter importances; a second study is
paused, resumed and cancelled with the page's buttons; the best config of the first is trained as a normal train job
from its page; a two-objective study shows its Pareto front.
Screenshots as in test_console.py."""

from __future__ import annotations

import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

from fixtures.platform import api_client, running_server, study_files, study_request, tiny_server_settings, wait_for
from tuneforge.hpo.study import load_study

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
    return study_files(api, tmp_path_factory.mktemp("study-data"))


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@contextmanager
def slot_held(api, files):
    """A long fine-tuning job holds the server's one worker slot until the block ends (then it is cancelled)."""
    config = {"model": "tiny-llama", "data": {"train": files["train"]},
              "train": {"max_steps": 5000, "precision": "fp32"}}
    job = api.post("/api/v1/fine-tuning/jobs", json=config).json()["id"]
    wait_for(lambda: api.get(f"/ui/api/jobs/{job}").json()["job"]["status"] == "running", what="the blocking job")
    yield
    api.post(f"/ui/api/jobs/{job}/cancel").raise_for_status()  # the worker stops it; then the trials run


def test_a_finished_study_shows_trials_history_curves_and_importances(page, server, api, files):
    body = study_request("sweep", files, space=SPACE, sampler="random", pruner="median", n_trials=3)
    with slot_held(api, files):  # the trials are fixed before any trial job starts: two that learn, one that cannot
        assert api.post("/api/v1/hpo/studies", json=body).status_code == 200
        study = load_study("sweep", settings=server.settings)
        for lr, r in ((3e-2, 2), (1e-2, 8), (1e-7, 4)):
            study.enqueue_trial({"train.learning_rate": lr, "method.r": r})
    page.goto(f"{server.url}/ui/studies")
    row = page.locator("#studies tr:has(a:text-is('sweep'))")
    row.locator("[data-state=running]").wait_for()
    row.locator("[data-state=finished]").wait_for(timeout=240_000)  # the list polls
    study = api.get("/api/v1/hpo/studies/sweep").json()
    assert [t["state"] for t in study["trials"]] == ["complete", "complete", "pruned"]  # the median pruner
    cells = row.locator("td").all_inner_texts()
    assert cells[2:5] == ["3/3", "2", "1"]  # done, complete, pruned
    assert f"(trial {study['best'][0]['number']})" in cells[7] and "train.learning_rate=" in cells[8]
    shot(page, "studies")

    row.locator("a").click()
    page.wait_for_url(re.compile("/ui/studies/sweep$"))
    page.locator("#trials tbody tr").nth(2).wait_for()
    assert page.locator("#trials tbody [data-state]").all_inner_texts() == ["complete", "complete", "pruned"]
    page.locator("#chart-history canvas").wait_for()
    history = page.locator("#chart-history")
    assert history.get_attribute("data-series") == "2"  # value per trial, best so far
    assert int(history.get_attribute("data-points")) == 2 * 2  # the complete trials
    curves = page.locator("#chart-intermediate")
    curves.locator("canvas").wait_for()
    assert [[step for step, _ in t["intermediate"]] for t in study["trials"]] == [[2, 4], [2, 4], [2]]
    assert curves.get_attribute("data-series") == "3" and curves.get_attribute("data-points") == "5"
    assert "trial 2 (pruned)" in curves.inner_text()  # its legend
    assert all(loss > 0 for t in study["trials"] for _, loss in t["intermediate"])  # eval losses (not negated)

    importances = page.locator("#importances tr[data-param]")
    importances.nth(1).wait_for()  # two parameters searched
    shares = {r.get_attribute("data-param"): float(r.locator("td").nth(2).inner_text()) for r in importances.all()}
    assert set(shares) == set(SPACE) and sum(shares.values()) == pytest.approx(1.0, abs=0.01)
    assert page.locator("#actions button[data-action=cancel]").is_disabled()  # a finished study
    shot(page, "study")

    job_id = study["trials"][0]["job_id"]
    page.locator(f"#trials a:text-is('{job_id}')").click()  # the trial's job page
    page.locator("#status[data-status=succeeded]").wait_for()
    page.locator("#study").click()  # and back to its study
    page.wait_for_url(re.compile("/ui/studies/sweep$"))


def test_train_best_queues_a_normal_train_job_of_the_best_config(page, server, api):
    """After the study above finished: its page's button queues the best config as a fine-tuning job."""
    response = api.get("/api/v1/hpo/studies/sweep")
    assert response.status_code == 200, response.text
    study = response.json()
    best = study["best"][0]["params"]
    page.goto(f"{server.url}/ui/studies/sweep")
    page.locator("#train-best:enabled").click()
    page.wait_for_url(re.compile(r"/ui/jobs/ftjob-[0-9a-f]+$"))
    job_id = page.url.rsplit("/", 1)[1]
    job = api.get(f"/api/v1/fine-tuning/jobs/{job_id}").json()  # a train job like any other
    assert job["kind"] == "train" and job["model"] == "tiny-llama" and job["training_file"].startswith("file-")
    assert job["config"]["train"]["learning_rate"] == pytest.approx(best["train.learning_rate"])
    assert job["config"]["method"]["r"] == best["method.r"]
    page.locator("#status[data-status=succeeded]").wait_for(timeout=120_000)
    logs = api.get(f"/api/v1/fine-tuning/jobs/{job_id}/logs").json()["lines"]
    assert any("best config of study sweep: trial " in line for line in logs)
    page.goto(f"{server.url}/ui/jobs")
    page.locator(f"#jobs a:text-is('{job_id}')").wait_for()  # listed with the other jobs
    assert api.post("/api/v1/hpo/studies/nope/train-best").status_code == 404


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


def test_a_two_objective_study_shows_its_pareto_front(page, server):
    """Trials added through Optuna to a study stored as the platform stores one (no training needed here)."""
    import optuna

    from tuneforge.hpo.study import open_storage

    study = optuna.create_study(study_name="front", storage=open_storage(server.settings),
                                directions=["minimize", "maximize"])
    search = {"n_trials": 4, "sampler": "nsga2", "pruner": "none",
              "objective": [{"metric": "eval_loss"}, {"metric": "exact_match"}]}
    for key, value in {"project": "acme", "state": "finished", "search": search}.items():
        study.set_user_attr(key, value)
    rate = optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)
    for lr, loss, match in ((1e-4, 3.0, 0.2), (1e-3, 2.0, 0.5), (3e-3, 1.5, 0.4), (1e-2, 2.5, 0.1)):
        study.add_trial(optuna.trial.create_trial(params={"train.learning_rate": lr},
                                                  distributions={"train.learning_rate": rate}, values=[loss, match]))
    page.goto(f"{server.url}/ui/studies/front")
    page.locator("#chart-pareto canvas").wait_for()
    front = page.locator("#chart-pareto")
    assert front.get_attribute("data-series") == "2" and front.get_attribute("data-points") == str(4 + 2)
    assert "2 on the Pareto front" in page.locator("#summary").inner_text()
    page.locator("#importances h3").nth(1).wait_for()  # one block per objective
    assert page.locator("#importances h3").all_inner_texts() == ["eval_loss", "exact_match"]
