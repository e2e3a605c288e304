"""A/B traffic on a real uvicorn through the official openai SDK: a split alias answers each user from one
version (header and model field say which), every request is logged, feedback is recorded and reported,
ending the split reroutes with no restart, and corrections become a new dataset version."""

from __future__ import annotations

import json

import httpx2 as httpx
import openai
import pytest
from typer.testing import CliRunner

from fixtures.platform import running_server, temp_platform, wait_for
from fixtures.serving import make_lora_adapter
from tuneforge.cli.app import app
from tuneforge.serving.config import ServingConfig
from tuneforge.settings import Settings

ASK = [{"role": "user", "content": "What is 2 plus 3?"}]
GREEDY = {"temperature": 0, "max_tokens": 6}
HEADER = "x-tuneforge-model-version"


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model):
    home = tmp_path_factory.mktemp("ab")
    settings = Settings(home=str(home), database_url=f"sqlite:///{home / 'tuneforge.db'}", concurrency=0,
                        base_models={"tiny-llama": str(tiny_model)})
    with temp_platform(home, database_url=settings.database_url) as platform:
        from tuneforge.services.registry import register, set_alias

        for seed in (1, 2):
            register(platform, make_lora_adapter(tiny_model, home / f"lora-{seed}", seed=seed), project="acme",
                     name="bot", created_by="test")
        set_alias(platform, "bot", 1, "production", project="acme", actor="test")
    config = ServingConfig(max_batch=8, batch_wait_ms=10, log_requests=True)
    with running_server(settings, serving=config) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=server.keys["acme"], max_retries=0)


def ask(client, user=None, **extra):
    raw = client.chat.completions.with_raw_response.create(model="bot@production", messages=ASK,
                                                           **({"user": user} if user else {}), **GREEDY, **extra)
    reply = raw.parse()
    return raw.headers[HEADER], reply


def native(server, method, path, *, project="acme", **body):
    response = httpx.request(method, server.url + path, json=body or None, timeout=60,
                             headers={"Authorization": f"Bearer {server.keys[project]}"})
    return response


def feedback(server, response_id, *, project="acme", **body):
    return native(server, "POST", "/v1/feedback", project=project, response_id=response_id, **body)


def test_split_is_sticky_per_user_logged_and_reported(server, client):
    split = native(server, "PUT", "/api/v1/registry/models/bot/aliases/production/split", weights={"1": 0.5, "2": 0.5})
    assert split.status_code == 200 and split.json()["action"] == "split"
    seen: dict[str, str] = {}
    for user in (f"user-{i}" for i in range(8)):
        header, reply = ask(client, user)
        again_header, again = ask(client, user)
        assert header == reply.model == again_header == again.model  # one user, one version, named twice
        assert reply.choices[0].message.content == again.choices[0].message.content
        seen[user] = header
        assert feedback(server, reply.id, score="up" if header == "bot:2" else "down").status_code == 200
    assert set(seen.values()) == {"bot:1", "bot:2"}
    streamed = client.chat.completions.with_raw_response.create(model="bot@production", messages=ASK, user="user-0",
                                                                stream=True, **GREEDY)
    assert streamed.headers[HEADER] == seen["user-0"]
    text = "".join(c.choices[0].delta.content or "" for c in streamed.parse() if c.choices)

    assert feedback(server, "chatcmpl-unknown", score="up").status_code == 404
    assert feedback(server, reply.id, project="other", score="up").status_code == 404  # another project's response
    assert feedback(server, reply.id, score="great").status_code == 400
    assert feedback(server, reply.id, score="nan").status_code == 400
    assert feedback(server, "chatcmpl-" + "x" * 5000, score="up").status_code == 400
    with pytest.raises(openai.BadRequestError, match="user"):  # a 5,000-character user id: refused, not truncated
        client.chat.completions.create(model="bot@production", messages=ASK, user="u" * 5000, **GREEDY)

    report = wait_for(lambda: _report(server, 17), what="17 logged requests")
    variants = {v["version"]: v for v in report["variants"]}
    assert sum(v["requests"] for v in variants.values()) == 17 and sum(v["feedback"] for v in variants.values()) == 8
    assert variants[2]["mean_score"] == 1.0 and variants[1]["mean_score"] == 0.0
    assert variants[1]["latency_p50_ms"] > 0 and variants[1]["users"] + variants[2]["users"] == 8
    assert report["verdict"]["decision"] == "inconclusive" and report["promoted"] is None  # < 30 scores each
    with temp_platform(server.settings.home, database_url=server.settings.database_url) as platform:
        logged = platform.store.list_served_requests(project="acme", name="bot")
    last = logged[-1]
    assert (last.user_id, last.variant, last.answer) == ("user-0", seen["user-0"], text)  # --log-requests: the text
    assert last.prompt == {"messages": ASK} and last.completion_tokens > 0


def _report(server, count):
    report = native(server, "POST", "/api/v1/registry/models/bot/ab-report", min_samples=30).json()
    return report if sum(v["requests"] for v in report["variants"]) == count else None


def test_ending_the_split_reroutes_with_no_restart_and_corrections_become_data(server, client, monkeypatch):
    monkeypatch.setenv("TUNEFORGE_HOME", server.settings.home)
    monkeypatch.setenv("TUNEFORGE_DATABASE_URL", server.settings.database_url)
    monkeypatch.setenv("TUNEFORGE_PROJECT", "acme")

    def cli(*args: str) -> str:
        result = CliRunner().invoke(app, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    assert "bot@production: 1: 0.5, 2: 0.5" in cli("registry", "split", "bot", "--to", "1=0.5,2=0.5")
    cli("registry", "split", "bot", "--alias", "production", "--to", "2=1.0")  # ends the split
    history = cli("registry", "show", "bot")
    assert "production: 1 -> 1=0.5, 2=0.5 (split" in history and "production: 1 -> 2 (set" in history
    answered = {ask(client, f"user-{i}")[0] for i in range(6)} | {ask(client)[0] for _ in range(3)}
    assert answered == {"bot:2"}
    _, reply = ask(client, "user-9")
    cli("feedback", reply.id, "--score", "down", "--correction", "5")  # the CLI, as POST /v1/feedback
    liked = ask(client, "user-8")[1]
    assert feedback(server, liked.id, score="up").status_code == 200
    out = cli("data", "collect", "support", "--from-traffic", "bot@production", "--include-liked")
    assert "collected support:1" in out and "collected pairs support-pairs:1" in out
    with temp_platform(server.settings.home, database_url=server.settings.database_url) as platform:
        from tuneforge.services.datasets import records_of

        _, chats = records_of(platform, "support", project="acme")
        _, pairs = records_of(platform, "support-pairs", project="acme")
    corrected = {"messages": [*ASK, {"role": "assistant", "content": "5"}]}
    assert corrected in chats and {"messages": [*ASK, {"role": "assistant", "content":
                                                        liked.choices[0].message.content}]} in chats
    assert pairs == [{"prompt": ASK, "chosen": "5", "rejected": reply.choices[0].message.content}]
    report = json.loads(cli("ab", "report", "bot", "--json", "--promote"))
    assert not report["split_active"] and report["promoted"] is None  # no verdict: the alias stays where it is
