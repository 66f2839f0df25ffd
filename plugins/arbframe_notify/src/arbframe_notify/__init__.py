"""arbframe-notify: trading events as chat/e-mail messages through apprise, batched and rate-limited."""

__version__ = "0.1.0"

from arbframe_notify.notifier import Notifier, NotifyEvent, url_secrets

__all__ = ["Notifier", "NotifyEvent", "__version__", "url_secrets"]
