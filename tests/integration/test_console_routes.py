"""The web console's pages and JSON routes over HTTP, without a browser (these run where Chromium is missing):
pages are data-free shells with a strict CSP, static files are served, the JSON needs the key and keeps
projects apart, and the compare route refuses a bad request with the documented error."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tuneforge.api.app import create_app
from tuneforge.services.platform import create_api_key, open_platform
from tuneforge.settings import Settings


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    settings = Settings(home=str(tmp_path_factory.mktemp("console-routes")))
    platform = open_platform(settings)
    keys = {p: create_api_key(platform, project=p) for p in ("acme", "other")}
    platform.close()
    with TestClient(create_app(settings, workers=0)) as http:
        http.keys = keys
        yield http


def auth(client, project="acme") -> dict:
    return {"Authorization": f"Bearer {client.keys[project]}"}


@pytest.mark.parametrize("path, script", [("/ui/jobs", "jobs"), ("/ui/jobs/ftjob-x", "job"), ("/ui/compare", "compare"),
                                          ("/ui/models/a%3Cb%3E", "model"), ("/ui/data/sums", "dataset"),
                                          ("/ui/annotate/sums:1", "annotate"), ("/ui/studies", "studies"),
                                          ("/ui/studies/a%3Cb%3E", "study"),
                                          ("/ui/login", "login")])
def test_pages_are_shells_with_a_strict_policy(client, path, script):
    response = client.get(path)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert f'<script type="module" src="/ui/static/js/{script}.js">' in response.text
    assert "<b>" not in response.text  # path parameters are escaped
    assert client.get(f"/ui/static/js/{script}.js").status_code == 200


def test_the_home_redirects_and_the_vendored_chart_library_is_served(client):
    assert client.get("/ui", follow_redirects=False).headers["location"] == "/ui/jobs"
    library = client.get("/ui/static/vendor/uPlot.esm.js")
    assert library.status_code == 200 and "export { uPlot as default }" in library.text
    assert client.get("/ui/static/../app.py").status_code == 404


def test_the_json_needs_a_key_and_keeps_projects_apart(client, tmp_path):
    assert client.get("/ui/api/jobs").status_code == 401
    assert client.get("/ui/api/whoami", headers=auth(client, "other")).json() == {"project": "other"}
    upload = tmp_path / "d.jsonl"
    upload.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n')
    with upload.open("rb") as handle:
        file_id = client.post("/v1/files", headers=auth(client), files={"file": ("d.jsonl", handle)},
                              data={"purpose": "fine-tune"}).json()["id"]
    assert client.post("/api/v1/data", headers=auth(client), json={"name": "d", "file_id": file_id}).status_code == 200
    assert client.get("/ui/api/data/d:1/records", headers=auth(client)).json()["total"] == 1
    assert client.get("/ui/api/data/d:1/records", headers=auth(client, "other")).status_code == 404
    body = {"decisions": [{"index": 0, "action": "accept", "answer": "hello"}]}
    assert client.post("/ui/api/data/d:1/annotate", headers=auth(client, "other"), json=body).status_code == 404
    saved = client.post("/ui/api/data/d:1/annotate", headers=auth(client), json=body).json()
    assert (saved["ref"], saved["operation"], saved["details"]["edited"]) == ("d:2", "annotate", 1)


def test_compare_and_job_routes_answer_with_the_documented_errors(client):
    wrong = client.get("/ui/api/compare", params={"job": ["ftjob-a"]}, headers=auth(client))
    assert wrong.status_code == 400 and "compare 2 to 8" in wrong.json()["error"]["message"]
    assert client.get("/ui/api/jobs/ftjob-nope", headers=auth(client)).status_code == 404
    assert client.post("/ui/api/jobs/ftjob-nope/explode", headers=auth(client)).status_code == 400  # not an action
