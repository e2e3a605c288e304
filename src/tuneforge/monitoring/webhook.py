"""The alert webhook: POST an alert as JSON, retried with exponential backoff (requests + urllib3's Retry)."""

from __future__ import annotations

import logging
from typing import Any

RETRY_STATUSES = (408, 425, 429, 500, 502, 503, 504)
log = logging.getLogger("tuneforge.monitoring")


def send_webhook(url: str, payload: dict[str, Any], *, retries: int = 3, backoff: float = 0.5,
                 timeout: float = 5.0) -> bool:
    """POST ``payload`` to ``url``; retries connection errors and 408/429/5xx answers with backoff.

    Args:
        url: The receiver (``Settings.alert_webhook_url``).
        payload: The JSON body (``job``, ``kind``, ``value``, ``threshold``, ``message``, ...).
        retries: Retries after the first try.
        backoff: urllib3's backoff factor: waits of ``backoff * 2**n`` seconds between tries.
        timeout: Seconds per try.

    Returns:
        Whether the receiver answered 2xx. A failed delivery is logged, never raised: an alert must not end the
        job it is about.
    """
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    retry = Retry(total=retries, backoff_factor=backoff, status_forcelist=RETRY_STATUSES,
                  allowed_methods=frozenset({"POST"}), raise_on_status=False)
    with requests.Session() as session:
        session.mount("http://", HTTPAdapter(max_retries=retry))
        session.mount("https://", HTTPAdapter(max_retries=retry))
        try:
            answer = session.post(url, json=payload, timeout=timeout)
        except requests.RequestException as exc:
            log.warning("alert webhook %s failed after %d retries: %s", url, retries, exc)
            return False
    if not answer.ok:
        log.warning("alert webhook %s answered %s after %d retries", url, answer.status_code, retries)
    return answer.ok
