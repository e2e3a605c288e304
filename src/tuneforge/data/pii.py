"""Personal data in text: emails, phone numbers, credit-card numbers, IP addresses and IBANs.

Candidates are found by patterns and then confirmed by the library made for each kind: ``phonenumbers``
(Google's libphonenumber) for phone numbers, ``python-stdnum`` for the Luhn check of card numbers and the
mod-97 check of IBANs, ``ipaddress`` for IP addresses. A span is reported once, by the first kind that claims
it (IBAN and card numbers before phone numbers, so that a card is not also a phone).

Person names are not detected: Presidio finds them with a spaCy NER model and scrubadub with spaCy or
TextBlob models, and neither model can be installed offline (they are downloads, not packages of the
registry). A name list would be a home-made, low-recall copy; the README says so.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from tuneforge.errors import MissingDependencyError

PII_TYPES = ("EMAIL", "IBAN", "CREDIT_CARD", "IP_ADDRESS", "PHONE")

_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![\w-])")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")
_CARD = re.compile(r"(?<![\d.-])(?:\d[ -]?){12,18}\d(?![\d-])")
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.]*\d)")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_PHONE = re.compile(r"(?<![\w+])(?:\+|\(\d)?[\d()][\d ().-]{5,18}\d(?!\w)")


@dataclass(frozen=True)
class PiiSpan:
    """A piece of personal data in a text: its kind and ``text[start:end]``."""

    type: str
    start: int
    end: int


def _emails(text: str) -> Iterator[tuple[int, int]]:
    for match in _EMAIL.finditer(text):
        yield match.span()


def _ibans(text: str) -> Iterator[tuple[int, int]]:
    iban = _stdnum("iban")
    for match in _IBAN.finditer(text):
        value = match.group()
        while len(value.replace(" ", "")) >= 15:  # a trailing word in capitals may have been swallowed
            if iban.is_valid(value):
                yield match.start(), match.start() + len(value)
                break
            value = value[:-1].rstrip()


def _cards(text: str) -> Iterator[tuple[int, int]]:
    luhn = _stdnum("luhn")
    for match in _CARD.finditer(text):
        digits = re.sub(r"[ -]", "", match.group())
        if 13 <= len(digits) <= 19 and digits[0] in "23456" and luhn.is_valid(digits):
            yield match.span()


def _ips(text: str) -> Iterator[tuple[int, int]]:
    for pattern in (_IPV4, _IPV6):
        for match in pattern.finditer(text):
            if match.group().count(":") != 1 and _is_ip(match.group()):
                yield match.span()


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _phones(text: str, region: str = "US") -> Iterator[tuple[int, int]]:
    try:
        import phonenumbers
    except ImportError:
        raise MissingDependencyError("phonenumbers", extra="data", purpose="finding phone numbers") from None
    for match in _PHONE.finditer(text):
        value = match.group()
        if not 7 <= sum(c.isdigit() for c in value) <= 15:
            continue
        try:
            number = phonenumbers.parse(value, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            yield match.span()


def _stdnum(name: str):  # noqa: ANN202 - a module
    try:
        from importlib import import_module

        return import_module(f"stdnum.{name}")
    except ImportError:
        raise MissingDependencyError("python-stdnum", extra="data", purpose="checking card numbers and IBANs") from None


DETECTORS: dict[str, Callable[[str], Iterator[tuple[int, int]]]] = {
    "EMAIL": _emails, "IBAN": _ibans, "CREDIT_CARD": _cards, "IP_ADDRESS": _ips, "PHONE": _phones,
}


def find_pii(text: str, *, types: tuple[str, ...] = PII_TYPES) -> list[PiiSpan]:
    """The personal data in ``text``, by position; overlapping candidates go to the kind listed first.

    Args:
        text: Any text.
        types: The kinds to look for (:data:`PII_TYPES`).
    """
    found: list[PiiSpan] = []
    for kind in types:
        for start, end in DETECTORS[kind](text):
            if not any(start < other.end and other.start < end for other in found):
                found.append(PiiSpan(kind, start, end))
    return sorted(found, key=lambda span: span.start)


def redact(text: str, spans: list[PiiSpan]) -> str:
    """``text`` with each span replaced by its typed placeholder (``<EMAIL>``, ``<PHONE>``, ...)."""
    for span in sorted(spans, key=lambda s: s.start, reverse=True):
        text = f"{text[:span.start]}<{span.type}>{text[span.end:]}"
    return text


def mask(value: str) -> str:
    """A preview of a found value that does not repeat it: ``j***m`` (kept in reports)."""
    return value[0] + "***" + value[-1] if len(value) > 2 else "***"
