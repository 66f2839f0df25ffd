"""Upbit request signing: a JWT (HS512, as Upbit's authentication guide uses) per request, with a SHA512 hash of
the exact query string.

The query string that is hashed is the parameters joined as ``key=value&...`` *without* percent-encoding,
in the order they are sent; list values repeat the key (``states[]=wait&states[]=watch``). For a JSON body
(``POST /v1/orders``) the body's fields, in body order, form the query string. The string actually sent on
the wire is the percent-encoded form of the same pairs, so the server decodes it back to the hashed text.

Hand-rolled with :mod:`hmac` so the plugin needs no JWT library.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import uuid
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

__all__ = [
    "JwtError",
    "body_query",
    "decode_token",
    "encode_query",
    "hash_query",
    "make_token",
    "query_pairs",
    "raw_query",
    "token_alg",
]

_SAFE = "-_.~[]"


class JwtError(ValueError):
    """A token that does not verify (used by the fake server and tests)."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    pad = "=" * (-len(text) % 4)
    return base64.urlsafe_b64decode(text + pad)


#: HS512: Upbit's authentication guide signs its example tokens with it (HS256 is still accepted).
_HEADER = _b64url(json.dumps({"alg": "HS512", "typ": "JWT"}, separators=(",", ":")).encode())


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def query_pairs(params: Mapping[str, Any] | Iterable[tuple[str, Any]] | None) -> list[tuple[str, str]]:
    """Flatten parameters into ordered ``(key, text)`` pairs; ``None`` values are dropped, lists repeat."""
    if not params:
        return []
    items = params.items() if isinstance(params, Mapping) else params
    out: list[tuple[str, str]] = []
    for key, value in items:
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            out.extend((key, _text(v)) for v in value)
        else:
            out.append((key, _text(value)))
    return out


def raw_query(pairs: Iterable[tuple[str, str]]) -> str:
    """The unencoded query string that is hashed."""
    return "&".join(f"{k}={v}" for k, v in pairs)


def body_query(fields: Mapping[str, Any]) -> str:
    """``raw_query(query_pairs(fields))`` for a JSON body's fields, in one pass (an order body is all strings:
    no per-value type dispatch for them)."""
    parts: list[str] = []
    for key, value in fields.items():
        if type(value) is str:
            parts.append(f"{key}={value}")
        elif value is None:
            continue
        elif isinstance(value, (list, tuple)):
            parts.extend(f"{key}={_text(v)}" for v in value)
        else:
            parts.append(f"{key}={_text(value)}")
    return "&".join(parts)


def encode_query(pairs: Iterable[tuple[str, str]]) -> str:
    """The percent-encoded query string sent on the wire (decodes back to :func:`raw_query`)."""
    return "&".join(f"{quote(k, safe=_SAFE)}={quote(v, safe=_SAFE)}" for k, v in pairs)


def hash_query(raw: str) -> str:
    return hashlib.sha512(raw.encode("utf-8")).hexdigest()


def make_token(access_key: str, secret_key: str, raw: str | None = None, *, nonce: str | None = None) -> str:
    """A signed JWT for one request; ``raw`` is the unencoded query string (None/empty: no parameters)."""
    payload: dict[str, str] = {"access_key": access_key, "nonce": nonce or str(uuid.uuid4())}
    if raw:
        payload["query_hash"] = hash_query(raw)
        payload["query_hash_alg"] = "SHA512"
    body = _b64url(json.dumps(payload, separators=(",", ":")).encode())
    signing_input = f"{_HEADER}.{body}".encode("ascii")
    signature = hmac.new(secret_key.encode("utf-8"), signing_input, hashlib.sha512).digest()
    return f"{_HEADER}.{body}.{_b64url(signature)}"


def random_uuid() -> str:
    """``str(uuid.uuid4())`` spelt from 16 random bytes directly (the version and variant bits set as uuid4 sets
    them), without building a ``UUID`` object: a token is made for every private request."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


#: the first hex digit of the fourth group with the RFC 4122 variant bits (10xx) set
_VARIANT = {d: "89ab"[int(d, 16) & 3] for d in "0123456789abcdef"}


class TokenMaker:
    """:func:`make_token` for one key pair, with what is the same for every token worked out once (the payload's
    head, the keyed HMAC); the tokens are byte for byte those :func:`make_token` makes."""

    __slots__ = ("_head", "_mac")

    def __init__(self, access_key: str, secret_key: str) -> None:
        self._head = '{"access_key":' + json.dumps(access_key) + ',"nonce":'
        self._mac = hmac.new(secret_key.encode("utf-8"), digestmod=hashlib.sha512)

    def __repr__(self) -> str:
        return "TokenMaker(***)"

    def token(self, raw: str | None = None, *, nonce: str | None = None) -> str:
        nonce_json = json.dumps(nonce) if nonce is not None else f'"{random_uuid()}"'
        if raw:
            payload = f'{self._head}{nonce_json},"query_hash":"{hash_query(raw)}","query_hash_alg":"SHA512"}}'
        else:
            payload = f"{self._head}{nonce_json}}}"
        signing_input = f"{_HEADER}.{_b64url(payload.encode())}"
        mac = self._mac.copy()
        mac.update(signing_input.encode("ascii"))
        return f"{signing_input}.{_b64url(mac.digest())}"


def token_alg(token: str) -> str:
    """The ``alg`` of a token's header ("" if unreadable); the fake server records it."""
    try:
        return str(json.loads(_b64url_decode(token.split(".")[0])).get("alg", ""))
    except (ValueError, TypeError, AttributeError):
        return ""


def decode_token(token: str, secret_for: Any) -> dict[str, Any]:
    """Verify a token and return its payload. ``secret_for(access_key)`` returns the secret or None.

    Accepts HS256 and HS512 (Upbit accepts both); raises :class:`JwtError` on anything wrong.
    """
    try:
        head_b64, body_b64, sig_b64 = token.split(".")
        header = json.loads(_b64url_decode(head_b64))
        payload = json.loads(_b64url_decode(body_b64))
        signature = _b64url_decode(sig_b64)
    except (ValueError, TypeError) as exc:
        raise JwtError(f"malformed token: {exc}") from None
    alg = header.get("alg")
    digest = {"HS256": hashlib.sha256, "HS512": hashlib.sha512}.get(alg)
    if digest is None:
        raise JwtError(f"unsupported alg {alg!r}")
    if not isinstance(payload, dict) or not payload.get("access_key") or not payload.get("nonce"):
        raise JwtError("access_key and nonce are required")
    secret = secret_for(payload["access_key"])
    if secret is None:
        raise JwtError("unknown access key")
    expected = hmac.new(secret.encode("utf-8"), f"{head_b64}.{body_b64}".encode("ascii"), digest).digest()
    if not hmac.compare_digest(expected, signature):
        raise JwtError("bad signature")
    return payload
