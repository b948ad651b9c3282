"""Outputs of a :class:`~media.relay.Relay`: writers that take a stream to viewers.

* :mod:`.httpflv` — FLV over an HTTP chunked response;
* :mod:`.wsflv` — FLV over WebSocket binary messages (flv.js, mpegts.js).

Both stream the tag bytes of the relay's shared :class:`~media.relay.FlvHub`; each viewer has a
bounded queue (see :mod:`media.relay` for the drop policy) and is released as soon as its client
goes away.

The PyAV outputs — :mod:`.hls`, :mod:`.rtmp` (push), :mod:`.record` (MP4), :mod:`.snapshot`
(JPEG) — are frame sinks whose libavformat work runs in a thread per output (:mod:`._av`).
"""

from __future__ import annotations

from ._av import OutputError
from .httpflv import FLV_CONTENT_TYPE, ClientWatch, stream_flv
from .wsflv import stream_wsflv, wants_websocket

__all__ = ["FLV_CONTENT_TYPE", "ClientWatch", "OutputError", "stream_flv", "stream_wsflv",
           "wants_websocket"]
