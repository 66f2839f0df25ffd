"""Masking of secrets for logs, health output, metrics and ``config show``."""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit, urlunsplit

MASK = "***"

_DSN_KV = re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.IGNORECASE)


def mask_secret(value: object) -> str:
    """A secret as shown to people: only whether it is set."""
    return MASK if value not in (None, "") else ""


def mask_url(url: str) -> str:
    """``scheme://user:***@host/db`` for URLs and ``password=***`` for key=value DSNs."""
    if not isinstance(url, str) or not url:
        return url
    if "://" in url:
        try:
            parts = urlsplit(url)
        except ValueError:
            return MASK
        if parts.password is None:
            return _DSN_KV.sub(rf"\g<1>{MASK}", url)
        netloc = parts.netloc.rsplit("@", 1)[-1]
        user = parts.username or ""
        netloc = f"{user}:{MASK}@{netloc}"
        masked = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
        return _DSN_KV.sub(rf"\g<1>{MASK}", masked)
    return _DSN_KV.sub(rf"\g<1>{MASK}", url)


def mask_secret_url(url: str) -> str:
    """``scheme://***``: for URLs whose host and path are themselves tokens (``tgram://bot-token/chat``,
    ``discord://webhook_id/webhook_token``), where masking only the password would show the secret."""
    if not isinstance(url, str) or not url:
        return url
    scheme, sep, _ = url.partition("://")
    return f"{scheme}://{MASK}" if sep and scheme.replace("+", "").isalnum() else MASK


def url_endpoint(url: str) -> str:
    """``host:port/db`` of a URL or DSN, for messages that must name a server without its credentials."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "?"
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    path = parts.path.lstrip("/")
    return f"{host}{port}/{path}" if path else f"{host}{port}"


_PLACEHOLDERS = ("none", "null", "changeme", "your_api_key", "your_api_secret")


def usable_credential(value: object) -> str | None:
    """A credential worth using, or None for empty, unset, placeholder or uninterpolated (``${...}``) values."""
    if value is None:
        return None
    text = str(value).strip()
    if not text or text.startswith("${") or text.lower() in _PLACEHOLDERS:
        return None
    return text


_URL_PASSWORD = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)([^@\s]+)(@)")
_KV_PASSWORD = re.compile(r"(password\s*=\s*)(\S+)", re.IGNORECASE)


def scrub(text: str) -> str:
    """Cut passwords out of any URL or ``password=`` pair in ``text``."""
    return _KV_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1***\3", text))


class SecretFilter(logging.Filter):
    """Last line of defence: cut passwords out of URLs and DSNs in every log message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
