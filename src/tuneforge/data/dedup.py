"""Exact and near duplicates, and leakage between two sets of texts.

Exact duplicates share the sha256 of their normalized text (lower case, runs of white space as one space).
Near duplicates are found with MinHash LSH (``datasketch``) over character 5-grams of the normalized text:
LSH proposes candidate pairs, and a pair is kept when its estimated Jaccard similarity reaches the
threshold. Clusters are connected components of the kept pairs; the first index of a cluster is the one a
dedup keeps.
"""

from __future__ import annotations

import functools
import hashlib
import re
import zlib
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from tuneforge.errors import ConfigError, MissingDependencyError

if TYPE_CHECKING:
    from datasketch import MinHash, MinHashLSH

SHINGLE = 5  # characters per shingle
NUM_PERM = 128
_SPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Lower case with runs of white space as one space, stripped: what "the same text" means here."""
    return _SPACE.sub(" ", text).strip().lower()


def text_hash(text: str) -> str:
    """The sha256 of the normalized text."""
    return hashlib.sha256(normalize_text(text).encode()).hexdigest()


def exact_clusters(texts: Sequence[str]) -> list[list[int]]:
    """Groups of two or more indices whose texts are equal once normalized, by first index."""
    groups: dict[str, list[int]] = {}
    for index, text in enumerate(texts):
        groups.setdefault(text_hash(text), []).append(index)
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: g[0])


def minhash(text: str, *, num_perm: int = NUM_PERM) -> MinHash:
    """The MinHash of a text's character 5-grams (a shorter text is one shingle)."""
    template = _template(num_perm)
    encoded = normalize_text(text).encode()
    shingles = [encoded[i:i + SHINGLE] for i in range(max(1, len(encoded) - SHINGLE + 1))]
    signature = _datasketch().MinHash(num_perm=num_perm, hashfunc=zlib.crc32, permutations=template.permutations,
                                      scheme=template.scheme)
    signature.update_batch(shingles)
    return signature


@functools.lru_cache(maxsize=4)
def _template(num_perm: int) -> MinHash:
    """A MinHash whose permutations every signature shares (datasketch draws them anew for each object,
    from the same seed: a third of the time of a signature)."""
    return _datasketch().MinHash(num_perm=num_perm, hashfunc=zlib.crc32)


def near_clusters(texts: Sequence[str], *, threshold: float = 0.8, num_perm: int = NUM_PERM) -> list[list[int]]:
    """Groups of indices whose texts are near duplicates (estimated Jaccard >= ``threshold``), by first index.

    Raises:
        ConfigError: A threshold outside (0, 1].
    """
    signatures = [minhash(text, num_perm=num_perm) for text in texts]
    lsh = _lsh(threshold, num_perm)
    parent = list(range(len(texts)))
    for index, signature in enumerate(signatures):
        for other in lsh.query(signature):
            if signature.jaccard(signatures[other]) >= threshold:
                _union(parent, index, other)
        lsh.insert(index, signature)
    groups: dict[int, list[int]] = {}
    for index in range(len(texts)):
        groups.setdefault(_root(parent, index), []).append(index)
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: g[0])


def leaked_pairs(texts: Sequence[str], others: Sequence[str], *, threshold: float = 0.8,
                 num_perm: int = NUM_PERM) -> list[tuple[int, int, str]]:
    """``(index, other_index, "exact" | "near")`` for each text that also occurs (nearly) in ``others``.

    One pair per text: an exact match wins over a near one.
    """
    exact = {text_hash(text): j for j, text in reversed(list(enumerate(others)))}
    lsh, signatures = _lsh(threshold, num_perm), {}
    for j, text in enumerate(others):
        signatures[j] = minhash(text, num_perm=num_perm)
        lsh.insert(j, signatures[j])
    pairs = []
    for index, text in enumerate(texts):
        if (match := exact.get(text_hash(text))) is not None:
            pairs.append((index, match, "exact"))
            continue
        signature = minhash(text, num_perm=num_perm)
        near = [j for j in lsh.query(signature) if signature.jaccard(signatures[j]) >= threshold]
        if near:
            pairs.append((index, min(near), "near"))
    return pairs


def best_matches(texts: Sequence[str], others: Sequence[str], *, threshold: float = 0.5,
                 num_perm: int = NUM_PERM) -> dict[int, int]:
    """A one-to-one pairing ``index -> other_index`` of similar texts (estimated Jaccard >= ``threshold``),
    the most similar pairs first (the version of a record after an edit)."""
    lsh = _lsh(threshold, num_perm)
    theirs = [minhash(text, num_perm=num_perm) for text in others]
    for j, signature in enumerate(theirs):
        lsh.insert(j, signature)
    scored = []
    for index, text in enumerate(texts):
        signature = minhash(text, num_perm=num_perm)
        scored.extend((signature.jaccard(theirs[j]), index, j) for j in lsh.query(signature))
    pairs: dict[int, int] = {}
    taken: set[int] = set()
    for score, index, j in sorted(scored, key=lambda s: (-s[0], s[1], s[2])):
        if score >= threshold and index not in pairs and j not in taken:
            pairs[index] = j
            taken.add(j)
    return pairs


def removed_by_dedup(clusters: Iterable[list[int]]) -> list[int]:
    """The indices a dedup drops: all but the first of each cluster."""
    return sorted(index for cluster in clusters for index in cluster[1:])


def _lsh(threshold: float, num_perm: int) -> MinHashLSH:
    if not 0 < threshold <= 1:
        raise ConfigError(f"near-duplicate threshold {threshold} is outside (0, 1]", field="threshold",
                          hint="a Jaccard similarity such as 0.8")
    # Weighted towards recall: LSH only proposes candidates, each checked against the threshold afterwards,
    # so a false positive costs one comparison while a false negative is a duplicate missed.
    return _datasketch().MinHashLSH(threshold=min(threshold, 0.99), num_perm=num_perm, weights=(0.2, 0.8))


def _union(parent: list[int], a: int, b: int) -> None:
    ra, rb = _root(parent, a), _root(parent, b)
    if ra != rb:
        parent[max(ra, rb)] = min(ra, rb)


def _root(parent: list[int], index: int) -> int:
    while parent[index] != index:
        parent[index] = parent[parent[index]]
        index = parent[index]
    return index


def _datasketch():  # noqa: ANN202 - the module
    try:
        import datasketch
    except ImportError:
        raise MissingDependencyError("datasketch", extra="data", purpose="near-duplicate detection") from None
    return datasketch
