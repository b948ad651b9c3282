"""FLV muxer: the compiled stage ``media._flv`` or its pure-Python twin ``media._flv_py``.

``SIP28181_NO_EXTENSIONS=1`` forces the twin. Both produce the same bytes for the same frames.
"""

from __future__ import annotations

from . import _flv_py
from ._impl import load

_chosen, _twin = load("flv")

#: The muxer in use (compiled when built).
FlvMuxer = _chosen.FlvMuxer
#: The pure-Python reference muxer, always available.
FlvMuxerPy = _twin.FlvMuxer

split_annexb = _flv_py.split_annexb
annexb_to_avcc = _flv_py.annexb_to_avcc
parse_h264_sps = _flv_py.parse_h264_sps
parse_h265_sps = _flv_py.parse_h265_sps
normalize_codec = _flv_py.normalize_codec

__all__ = ["FlvMuxer", "FlvMuxerPy", "split_annexb", "annexb_to_avcc", "parse_h264_sps",
           "parse_h265_sps", "normalize_codec"]
