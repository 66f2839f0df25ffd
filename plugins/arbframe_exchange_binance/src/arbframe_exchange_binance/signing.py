"""HMAC-SHA256 request signing for Binance SIGNED (TRADE / USER_DATA) endpoints.

Binance signs ``totalParams`` (the query string concatenated with the request body, exactly as sent) with the
secret key and takes the lowercase hex digest as the ``signature`` parameter, appended last. The payload is
built here once, as a string, and the very same string is what goes on the wire: the REST client never lets the
HTTP library re-encode it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from urllib.parse import quote

# Characters Binance accepts unescaped in parameter values (client order ids allow . : / _ -).
_SAFE = "-_.~"


#: a value made of unreserved characters only is sent as it is (no call to ``quote``: most values are symbols,
#: enums, digits and decimals)
_PLAIN = re.compile(r"[A-Za-z0-9._~-]*").fullmatch


def encode_params(params: Mapping[str, object] | Iterable[tuple[str, object]]) -> str:
    """``k=v&k2=v2`` in the given order, values percent-encoded (RFC 3986 unreserved characters kept)."""
    items = params.items() if isinstance(params, Mapping) else params
    keys, texts = [], []
    for key, value in items:
        if value is not None:
            keys.append(key)
            texts.append(value if type(value) is str else _text(value))
    if _PLAIN("".join(texts)) is None:  # one check for all values (the usual case: none needs quoting)
        texts = [text if _PLAIN(text) is not None else quote(text, safe=_SAFE) for text in texts]
    return "&".join([f"{key}={text}" for key, text in zip(keys, texts, strict=True)])


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class Signer:
    """Holds the secret (never printed: ``repr`` masks it) and signs payloads."""

    __slots__ = ("_mac",)

    def __init__(self, secret: str) -> None:
        # keyed once; each signature copies it (the key's padding and first blocks are not worked out per call)
        self._mac = hmac.new(secret.encode(), digestmod=hashlib.sha256)

    def __repr__(self) -> str:
        return "Signer(***)"

    def sign(self, payload: str) -> str:
        """Hex HMAC-SHA256 of ``payload`` (str, encoded as UTF-8)."""
        mac = self._mac.copy()
        mac.update(payload.encode())
        return mac.hexdigest()

    def signed_payload(self, params: Mapping[str, object], *, timestamp: int, recv_window: int | None) -> str:
        """``params`` + ``recvWindow`` + ``timestamp`` encoded, with ``&signature=...`` appended."""
        items = [(k, v) for k, v in params.items() if v is not None]
        if recv_window is not None:
            items.append(("recvWindow", recv_window))
        items.append(("timestamp", timestamp))
        payload = encode_params(items)
        return f"{payload}&signature={self.sign(payload)}"


def verify(secret: str, total_params: str) -> bool:
    """Check a ``...&signature=hex`` payload (used by the fake server and tests)."""
    head, sep, signature = total_params.rpartition("signature=")
    if not sep:
        return False
    payload = head[:-1] if head.endswith("&") else head
    expected = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature.split("&", 1)[0].lower())
