"""Built-in generated tasks: small, deterministic, and needing no download.

The quickstart's task, ``profile-extraction``, asks for the facts of a one-sentence profile in a fixed
``key=value`` line. A base chat model answers in prose or in its own format, so it scores near zero on
exact match; a short LoRA fine-tune teaches it the format and the copying it needs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

_FIRST = (
    "Maria Anna Lucas Sofia Omar Chen Priya Jonas Elena Mateo Aisha Noah Yuki Ivan Clara Diego Fatima "
    "Leo Hana Pablo Nina Tariq Zoe Hugo Amara Felix Ines Ravi Lena Marco Sara Tomas Mei Karim Julia "
    "Oscar Leila Emil Rosa Kofi Alma Sven Daria Luca Ayla Bruno Nadia Pedro Iris Victor"
).split()
_LAST = (
    "Lopez Smith Kumar Novak Rossi Tanaka Haddad Schmidt Silva Okafor Jensen Moreau Costa Ivanova Park "
    "Berg Mendes Kaya Fischer Ali Dubois Sato Nowak Romero Weber Singh Laine Horvat Duarte Nilsson"
).split()
_CITIES = (
    "Lisbon Berlin Nairobi Osaka Toronto Lima Oslo Cairo Dublin Seoul Madrid Vienna Lagos Prague "
    "Quito Perth Milan Hanoi Denver Tunis Porto Krakow Bergen Accra Cusco Kyoto Ghent Zurich Split Riga"
).split()
_JOBS = (
    "teacher nurse engineer baker pilot chemist farmer lawyer painter dentist librarian carpenter "
    "architect journalist plumber florist"
).split()
_TEMPLATES = (
    "{name} is a {age}-year-old {job} from {city}.",
    "{name}, aged {age}, works as a {job} in {city}.",
    "Born {age} years ago, {name} now lives in {city} and works as a {job}.",
    "In {city} lives {name}, a {job} who is {age} years old.",
    "Our new {job} is {name}; they are {age} and moved here from {city}.",
    "{name} ({age}) has been a {job} in {city} for years.",
)
INSTRUCTION = "Extract name, age, city and job from the text as key=value pairs separated by semicolons."


@dataclass(frozen=True)
class TaskSplits:
    """The train, eval and test splits of a generated task, as lists of records."""

    train: list[dict]
    eval: list[dict]
    test: list[dict]


def _profile_example(rng: random.Random) -> dict:
    fields = {
        "name": f"{rng.choice(_FIRST)} {rng.choice(_LAST)}",
        "age": rng.randint(19, 79),
        "city": rng.choice(_CITIES),
        "job": rng.choice(_JOBS),
    }
    text = rng.choice(_TEMPLATES).format(**fields)
    answer = "; ".join(f"{key}={fields[key]}" for key in ("name", "age", "city", "job"))
    return {
        "messages": [
            {"role": "user", "content": f"{INSTRUCTION}\nText: {text}"},
            {"role": "assistant", "content": answer},
        ]
    }


def profile_extraction(*, n_train: int = 320, n_eval: int = 40, n_test: int = 60, seed: int = 0) -> TaskSplits:
    """Generate the quickstart's profile-extraction task in the ``messages`` format.

    Args:
        n_train: Number of training examples.
        n_eval: Number of examples for eval loss during training.
        n_test: Number of held-out examples for exact-match accuracy.
        seed: Seed of the generator; the same seed gives the same splits.

    Returns:
        The three splits, with no prompt shared between them.
    """
    rng = random.Random(seed)
    seen: set[str] = set()
    examples: list[dict] = []
    while len(examples) < n_train + n_eval + n_test:
        example = _profile_example(rng)
        prompt = example["messages"][0]["content"]
        if prompt not in seen:
            seen.add(prompt)
            examples.append(example)
    return TaskSplits(
        train=examples[:n_train],
        eval=examples[n_train : n_train + n_eval],
        test=examples[n_train + n_eval :],
    )
