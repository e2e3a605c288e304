"""``tuneforge data`` through the real CLI, and the ``/api/v1/data`` routes through the app."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

CLI = [sys.executable, "-m", "tuneforge.cli.app"]


TOPICS = ("router", "printer", "invoice", "password", "refund", "laptop", "battery", "monitor", "account", "parcel")
ACTIONS = ("reset", "return", "configure", "replace", "update", "cancel")


def chat(i: int, user: str | None = None) -> dict:
    question = f"Why does my {TOPICS[i % 10]} fail when I {ACTIONS[i % 6]} it on day {i}?"
    return {"messages": [{"role": "user", "content": user or question},
                         {"role": "assistant", "content": f"Hold the button for {i % 9 + 2} seconds."}]}


@pytest.fixture
def run(tmp_path):
    env = {**os.environ, "TUNEFORGE_HOME": str(tmp_path / "home")}

    def tuneforge(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*CLI, "data", *map(str, args)], capture_output=True, text=True, cwd=tmp_path,
                              env=env, timeout=300)
    return tuneforge


def test_import_report_clean_versions_diff_export(run, tmp_path):
    rows = [chat(i) for i in range(30)] + [chat(4), chat(31, "my email is ann@example.org, call +1 415-555-0132")]
    (tmp_path / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    imported = run("import", "chat.jsonl", "--name", "support")
    assert imported.returncode == 0, imported.stderr
    assert "imported support:1: 32 records (messages)" in imported.stdout

    report = run("report", "support:1", "-o", "rep")
    assert report.returncode == 0, report.stderr
    data = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert {i["kind"] for i in data["issues"]} == {"exact_duplicates", "personal_data"}
    assert data["personal_data"]["counts"] == {"EMAIL": 1, "PHONE": 1} and data["version"]["ref"] == "support:1"
    assert (tmp_path / "rep" / "tokens.png").is_file() and "score" in (tmp_path / "rep" / "report.md").read_text()

    cleaned = run("clean", "support:1", "--dedup", "near", "--redact-pii", "--min-tokens", "3", "--drop-empty")
    assert cleaned.returncode == 0, cleaned.stderr
    assert "removed: 0 empty, 1 duplicate" in cleaned.stdout.replace("0 too_short, 0 too_long, ", "")
    assert "cleaned support:2: 31 records" in cleaned.stdout

    versions = run("versions", "support", "--json")
    listed = json.loads(versions.stdout)
    assert [(v["ref"], v["operation"]) for v in listed] == [("support:1", "import"), ("support:2", "clean")]
    assert listed[1]["parent_id"] == listed[0]["id"]

    diff = run("diff", "support:1", "support:2", "--json")
    changes = json.loads(diff.stdout)
    assert changes["removed"] == [30] and changes["changed"] == [{"a": 31, "b": 30}] and changes["added"] == []

    exported = run("export", "support@latest", "-o", "out.jsonl")
    assert exported.returncode == 0, exported.stderr
    last = json.loads((tmp_path / "out.jsonl").read_text().splitlines()[-1])
    assert last["messages"][0]["content"] == "my email is <EMAIL>, call <PHONE>"

    missing = run("show", "suport:1")
    assert missing.returncode == 1 and "error: no data set 'suport'; did you mean 'support'?" in missing.stderr
    assert "hint:" in missing.stderr and "Traceback" not in missing.stderr


def test_api_routes_import_clean_and_show(tmp_path):
    from fastapi.testclient import TestClient

    from tuneforge.api.app import create_app
    from tuneforge.services.platform import create_api_key
    from tuneforge.settings import Settings

    home = tmp_path / "api"
    settings = Settings(home=str(home), database_url=f"sqlite:///{home / 'db.sqlite'}", concurrency=0)
    body = "".join(json.dumps(chat(i)) + "\n" for i in [*range(8), 3])
    with TestClient(create_app(settings, workers=0)) as client:
        headers = {"Authorization": f"Bearer {create_api_key(client.app.state.platform, project='acme')}"}
        upload = client.post("/v1/files", headers=headers, data={"purpose": "fine-tune"},
                             files={"file": ("chat.jsonl", body, "application/jsonl")})
        assert upload.status_code == 200, upload.text
        created = client.post("/api/v1/data", headers=headers, json={"name": "faq", "file_id": upload.json()["id"]})
        assert created.status_code == 200 and created.json()["ref"] == "faq:1" and created.json()["records"] == 9
        cleaned = client.post("/api/v1/data/faq:1/clean", headers=headers, json={"dedup": "exact"})
        assert cleaned.json()["ref"] == "faq:2" and cleaned.json()["details"]["removed_counts"] == {"duplicate": 1}
        shown = client.get("/api/v1/data/faq@latest", headers=headers, params={"head": 2}).json()
        assert shown["version"]["records"] == 8 and len(shown["head"]) == 2
        assert [v["ref"] for v in client.get("/api/v1/data/faq/versions", headers=headers).json()["data"]] == [
            "faq:1", "faq:2"]
        bad = client.post("/api/v1/data/faq:1/clean", headers=headers, json={"dedup": "fuzzy"})
        assert bad.status_code == 400 and "dedup" in bad.json()["error"]["message"]
        gone = client.get("/api/v1/data/faq:9", headers=headers)
        assert gone.status_code == 404 and "its versions are 1, 2" in gone.json()["error"]["hint"]
        other = client.get("/api/v1/data/faq:1", headers={
            "Authorization": f"Bearer {create_api_key(client.app.state.platform, project='other')}"})
        assert other.status_code == 404
