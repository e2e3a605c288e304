"""Requests are bounded and strictly typed (issue 17, items 3 and 5): OpenAI's ranges, no coercion of "3"
or true, suffixes that keep every model id routable."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tuneforge.api.openai.protocol import OpenAIJobRequest
from tuneforge.config import TrainConfig, validate_config
from tuneforge.errors import ConfigError
from tuneforge.services.catalog import check_suffix, fine_tuned_model_name

BASE = {"model": "tiny", "training_file": "file-1"}


def hyper(**values):
    return {**BASE, "method": {"type": "supervised", "supervised": {"hyperparameters": values}}}


@pytest.mark.parametrize("body, field", [
    (hyper(n_epochs=10**9), "n_epochs"), (hyper(n_epochs=0), "n_epochs"), (hyper(n_epochs="3"), "n_epochs"),
    (hyper(n_epochs=True), "n_epochs"), (hyper(batch_size=10**9), "batch_size"), (hyper(batch_size=2.5), "batch_size"),
    (hyper(learning_rate_multiplier=-1), "learning_rate_multiplier"), (hyper(beta="0.1"), "beta"),
    ({**BASE, "seed": 2**70}, "seed"), ({**BASE, "seed": -1}, "seed"), ({**BASE, "seed": "7"}, "seed"),
    ({**BASE, "priority": 10**30}, "priority"), ({**BASE, "priority": True}, "priority"),
    ({**BASE, "metadata": {f"k{i}": "v" for i in range(1000)}}, "metadata"),
    ({**BASE, "metadata": {"k": "v" * 513}}, "metadata"), ({**BASE, "metadata": {"k": 1}}, "metadata"),
    ({**BASE, "suffix": "a:b\nc"}, "suffix"), ({**BASE, "suffix": "../../etc"}, "suffix"),
    ({**BASE, "suffix": "x" * 65}, "suffix"), ({**BASE, "suffix": ""}, "suffix"),
    ({**BASE, "training_file": "f" * 5000}, "training_file"),
])
def test_an_openai_request_out_of_range_or_of_the_wrong_type_is_refused(body, field):
    with pytest.raises(ValidationError) as caught:
        OpenAIJobRequest.model_validate(body)
    assert field in ".".join(str(p) for p in caught.value.errors()[0]["loc"])


def test_in_range_requests_pass():
    request = OpenAIJobRequest.model_validate({**hyper(n_epochs=50, batch_size=256, learning_rate_multiplier=2),
                                               "seed": 2**31 - 1, "suffix": "support-bot_v2.1",
                                               "metadata": {f"k{i}": "v" for i in range(16)}})
    assert request.chosen_hyperparameters().n_epochs == 50 and request.suffix == "support-bot_v2.1"


@pytest.mark.parametrize("train, field", [({"max_seq_length": 10**9}, "max_seq_length"),
                                          ({"batch_size": 10**9}, "batch_size"), ({"epochs": "3"}, "epochs"),
                                          ({"batch_size": True}, "batch_size"), ({"epochs": 10**6}, "epochs")])
def test_a_native_train_config_is_bounded_and_strict_over_the_api(train, field):
    body = {"model": "tiny", "data": {"train": "file-1"}, "train": train}
    with pytest.raises(ConfigError) as caught:
        validate_config(body, TrainConfig, strict=True)
    assert caught.value.field == f"train.{field}"
    with pytest.raises(ConfigError, match="seed"):
        validate_config({"model": "tiny", "data": {"train": "f"}, "seed": 2**70}, TrainConfig)


def test_model_ids_are_made_of_routable_characters():
    assert fine_tuned_model_name(base="tiny-llama", project="acme", suffix="v1", job_id="ftjob-abcdef123456789") \
        == "ft:tiny-llama:acme:v1:abcdef123456"
    name = fine_tuned_model_name(base="/srv/models/My Model../", project="acme", suffix=None, job_id="ftjob-0123456789ab")
    assert name == "ft:My-Model..:acme::0123456789ab" and "/" not in name
    with pytest.raises(ConfigError) as caught:
        check_suffix("a:b\nc")
    assert caught.value.field == "suffix" and "1-64 letters" in caught.value.hint
