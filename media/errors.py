"""Errors raised by the media stages.

Parsers of wire data raise :class:`MediaFormatError` for malformed input and never let
``IndexError``/``struct.error`` escape. Streaming stages (framer, jitter buffer, PS demuxer) do not
raise on hostile input at all: they drop it and count the reason.
"""

from __future__ import annotations


class MediaError(Exception):
    """Root of every error raised by :mod:`media`."""


class MediaFormatError(MediaError, ValueError):
    """Input bytes do not follow the format (RTP header, PS syntax)."""
