"""Media relay library: RTP, MPEG-PS and FLV for GB/T 28181 streams (usable without SIP)."""

from ._frame import Frame
from .flv import FlvMuxer
from .psmux import PsMuxer, RtpPacketizer, rfc4571_frame
from .errors import MediaError, MediaFormatError
from .ps import PsDemuxer
from .receiver import RtpPsReceiver
from .rtp import JitterBuffer, Rfc4571Framer, RtpPacket, parse_rtp

__all__ = ["Frame"]
__all__ += ["FlvMuxer", "PsMuxer", "RtpPacketizer", "rfc4571_frame"]
__all__ += ["MediaError", "MediaFormatError", "PsDemuxer", "JitterBuffer", "Rfc4571Framer",
            "RtpPacket", "parse_rtp", "RtpPsReceiver"]
