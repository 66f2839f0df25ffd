"""``arbframe resume``: release the live kill switch (see :mod:`arbframe.commands.kill`)."""

from __future__ import annotations

from arbframe.commands.kill import add_resume_parser as add_parser

__all__ = ["add_parser"]
