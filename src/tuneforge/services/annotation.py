"""Human review of a data set version (the console's record browser and annotation page).

A reviewer searches records, then goes through them one by one: accepts or rejects each, edits the
assistant's answer, and for preference pairs picks the better of the two answers. Saving makes a new version
of the same data set (operation ``annotate``) whose details count what was accepted, rejected, edited and
swapped; records left unreviewed are kept as they were. Edits can also become preference pairs (the edited
answer chosen over the original) in another data set, the way reviewed answers feed DPO.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tuneforge.data.fields import record_text
from tuneforge.errors import ConfigError
from tuneforge.registry.datasets import store_version
from tuneforge.services.datasets import DataOutcome, records_of
from tuneforge.services.platform import Platform

# Where the answer of a record is, by format: a key, or the last message of a role in a message list.
ANSWER_KEYS = {"alpaca": "output", "prompt_completion": "completion", "qa": "answer", "preference": "chosen"}
ANSWER_MESSAGES = {"messages": ("messages", "role", ("assistant",), "content"),
                   "sharegpt": ("conversations", "from", ("gpt", "assistant"), "value")}


class Decision(BaseModel):
    """The review of one record."""

    model_config = ConfigDict(extra="forbid")

    index: int = Field(ge=0, description="0-based index of the record in the version.")
    action: Literal["accept", "reject"] = Field(description="Keep the record (accept) or drop it (reject).")
    answer: str | None = Field(None, description="The edited assistant answer (accepted records only).")
    better: Literal["a", "b"] | None = Field(None, description="Preference records: the better answer, 'a' the "
                                             "chosen one as stored, 'b' the rejected one (then they swap).")


class AnnotationRequest(BaseModel):
    """A batch of reviews of one version, saved as its next version."""

    model_config = ConfigDict(extra="forbid")

    decisions: list[Decision] = Field(min_length=1, description="One review per record reviewed.")
    pairs_to: str | None = Field(None, description="Also store each edited answer as a preference pair (the edit "
                                 "chosen over the original) in this data set, for DPO.")


@dataclass(frozen=True)
class AnnotationOutcome:
    """The reviewed version, and the version of preference pairs made from the edits (when asked for)."""

    reviewed: DataOutcome
    pairs: DataOutcome | None = None


def search_records(platform: Platform, ref: str, *, project: str, query: str = "", offset: int = 0,
                   limit: int = 20) -> dict[str, Any]:
    """Records of a version whose text contains ``query`` (case-insensitive), with their indices.

    Returns:
        ``{"version", "format", "total", "matched", "records": [{"index", "record"}]}``.
    """
    version, records = records_of(platform, ref, project=project)
    needle = query.strip().lower()
    hits = [i for i, r in enumerate(records) if not needle or needle in record_text(r).lower()]
    return {"version": version.ref, "format": version.format, "total": len(records), "matched": len(hits),
            "records": [{"index": i, "record": records[i]} for i in hits[offset:offset + limit]]}


def annotate_data(platform: Platform, ref: str, request: AnnotationRequest, *, project: str) -> AnnotationOutcome:
    """Apply reviews to version ``ref`` and store the result as the next version of its data set (and the
    edits as preference pairs in ``request.pairs_to``).

    Raises:
        ConfigError: An index out of range or reviewed twice, an edit of a format without answers, a pick
            on records that are not preference pairs, or pairs asked of a format without a prompt.
        DataError: Every record rejected (a version is never empty), or pairs asked with no edit.
    """
    parent, records = records_of(platform, ref, project=project)
    by_index: dict[int, Decision] = {}
    for decision in request.decisions:
        if decision.index >= len(records) or decision.index in by_index:
            raise ConfigError(f"decision for record {decision.index}: {ref} has {len(records)} records (0-based) "
                              "and each is reviewed once", field="decisions.index")
        by_index[decision.index] = decision
    kept, pairs = [], []
    counts = {"reviewed": len(by_index), "accepted": 0, "rejected": 0, "edited": 0, "swapped": 0}
    for index, record in enumerate(records):
        decision = by_index.get(index)
        if decision is None:
            kept.append(record)
        elif decision.action == "reject":
            counts["rejected"] += 1
        else:
            counts["accepted"] += 1
            kept.append(_reviewed(record, decision, fmt=parent.format, counts=counts))
            if request.pairs_to and kept[-1] != record and parent.format != "preference":
                pairs.append(_edit_pair(record, kept[-1], fmt=parent.format, index=index))
    store = {"store": platform.store, "artifacts": platform.artifacts, "project": project, "operation": "annotate",
             "parent": parent, "params": {"source": parent.ref}}
    reviewed = DataOutcome(*store_version(**store, name=parent.name, records=kept, fmt=parent.format, details=counts))
    if not request.pairs_to:
        return AnnotationOutcome(reviewed)
    paired = store_version(**store, name=request.pairs_to, records=pairs, fmt="preference",
                           details={"pairs_from_edits": len(pairs)})
    return AnnotationOutcome(reviewed, DataOutcome(*paired))


def _reviewed(record: dict[str, Any], decision: Decision, *, fmt: str, counts: dict[str, int]) -> dict[str, Any]:
    """An accepted record with its pick and edit applied."""
    record = copy.deepcopy(record)
    if decision.better is not None:
        if fmt != "preference":
            raise ConfigError(f"record {decision.index} is a {fmt} record: only preference pairs have two answers "
                              "to pick from", field="decisions.better")
        if decision.better == "b":
            record["chosen"], record["rejected"] = record["rejected"], record["chosen"]
            counts["swapped"] += 1
    if decision.answer is not None and decision.answer != answer_of(record, fmt=fmt):
        _set_answer(record, decision.answer, fmt=fmt, index=decision.index)
        counts["edited"] += 1
    return record


def _edit_pair(original: dict[str, Any], edited: dict[str, Any], *, fmt: str, index: int) -> dict[str, Any]:
    """``{prompt, chosen: the edit, rejected: the original answer}`` of an edited record."""
    if fmt == "messages":
        turns = original["messages"]
        last = max(i for i, m in enumerate(turns) if m.get("role") == "assistant")
        prompt: Any = [{"role": m["role"], "content": m["content"]} for m in turns[:last]]
    elif fmt == "prompt_completion":
        prompt = original["prompt"]
    elif fmt == "alpaca":
        prompt = "\n\n".join(p for p in (original["instruction"], original.get("input")) if p)
    else:
        raise ConfigError(f"record {index} is a {fmt} record: pairs from edits need messages, prompt/completion or "
                          "instruction/output records", field="pairs_to", hint="save without pairs_to")
    return {"prompt": prompt, "chosen": answer_of(edited, fmt=fmt), "rejected": answer_of(original, fmt=fmt)}


def answer_of(record: dict[str, Any], *, fmt: str) -> str | None:
    """The assistant's answer of a record (the chosen one of a preference pair), or ``None`` if it has none."""
    if fmt in ANSWER_KEYS:
        value = record.get(ANSWER_KEYS[fmt])
        return value if isinstance(value, str) else None
    if fmt in ANSWER_MESSAGES:
        key, role_key, roles, text_key = ANSWER_MESSAGES[fmt]
        turns = [m for m in record.get(key, []) if m.get(role_key) in roles]
        return turns[-1].get(text_key) if turns else None
    return None


def _set_answer(record: dict[str, Any], answer: str, *, fmt: str, index: int) -> None:
    if answer_of(record, fmt=fmt) is None:
        raise ConfigError(f"record {index} ({fmt}) has no assistant answer to edit", field="decisions.answer",
                          hint="edit records of a chat, instruction, completion, QA or preference data set")
    if fmt in ANSWER_KEYS:
        record[ANSWER_KEYS[fmt]] = answer
        return
    key, role_key, roles, text_key = ANSWER_MESSAGES[fmt]
    [m for m in record[key] if m.get(role_key) in roles][-1][text_key] = answer
