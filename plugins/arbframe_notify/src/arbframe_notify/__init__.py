"""arbframe-notify: trading events as chat/e-mail messages through apprise, batched and rate-limited."""

from arbframe_notify.notifier import Notifier, NotifyEvent, url_secrets

__all__ = ["Notifier", "NotifyEvent", "url_secrets"]
