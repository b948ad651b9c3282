"""Outputs of a relayed stream: each one is a frame sink attached to a :class:`media.relay.Relay`.

The PyAV outputs (:mod:`.hls`, :mod:`.rtmp`, :mod:`.record`, :mod:`.snapshot`) do their
libavformat work in a thread per output; see :mod:`._av`.
"""

from ._av import OutputError

__all__ = ["OutputError"]
