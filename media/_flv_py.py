"""FLV muxing of access units — the readable reference implementation.

The compiled twin ``cext/_flv.pyx`` produces byte-identical output; it shares the cold helpers of
this module (SPS parsing, decoder configuration records, AMF0, ADTS headers) and reimplements only
the per-frame path (Annex B scanning and tag writing).

References:

* Adobe "Video File Format Specification" v10.1, annex E (FLV header, tags, ``AVCVIDEOPACKET``,
  ``AACAUDIODATA``, ``SCRIPTDATA`` in AMF0).
* Veovera "Enhanced RTMP" v1 (``ExVideoTagHeader``: bit 7 ``IsExHeader``, FourCC ``hvc1``,
  PacketType ``SequenceStart`` 0 / ``CodedFrames`` 1 / ``SequenceEnd`` 2 / ``CodedFramesX`` 3).
* ISO/IEC 14496-15 §5.3.3.1 (``AVCDecoderConfigurationRecord``) and §8.3.3.1
  (``HEVCDecoderConfigurationRecord``).
* ITU-T H.264 §7.3.2.1.1 and H.265 §7.3.2.2 (sequence parameter sets), ISO/IEC 14496-3 §1.6.2.1
  (``AudioSpecificConfig``) and §1.A.2 (ADTS).
* The "legacy" H.265 mode writes CodecID 12 with the AVC packet layout, as Chinese flv.js forks and
  players built on them expect.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Any

from ._frame import Frame

__all__ = [
    "FlvMuxer",
    "normalize_codec",
    "split_annexb",
    "annexb_to_avcc",
    "parse_h264_sps",
    "parse_h265_sps",
    "avc_decoder_configuration_record",
    "hevc_decoder_configuration_record",
    "parse_adts",
    "amf0_script_tag",
]

# --------------------------------------------------------------------------------------------
# Codec names
# --------------------------------------------------------------------------------------------

#: Accepted spellings of codec names, mapped to the canonical names used by the media stages.
_CODEC_ALIASES = {
    "h264": "h264", "avc": "h264", "h.264": "h264",
    "h265": "h265", "hevc": "h265", "h.265": "h265",
    "g711a": "g711a", "pcma": "g711a", "pcm_alaw": "g711a", "alaw": "g711a",
    "g711u": "g711u", "pcmu": "g711u", "pcm_mulaw": "g711u", "ulaw": "g711u", "mulaw": "g711u",
    "aac": "aac",
}

VIDEO_CODECS = ("h264", "h265")
AUDIO_CODECS = ("g711a", "g711u", "aac")


def normalize_codec(name: str | None) -> str | None:
    """Canonical name (``h264``, ``h265``, ``g711a``, ``g711u``, ``aac``); None if unknown."""
    if name is None:
        return None
    return _CODEC_ALIASES.get(name.lower())


# --------------------------------------------------------------------------------------------
# FLV constants
# --------------------------------------------------------------------------------------------

TAG_AUDIO = 8
TAG_VIDEO = 9
TAG_SCRIPT = 18

CODEC_ID_AVC = 7
CODEC_ID_HEVC_LEGACY = 12
FOURCC_HVC1 = b"hvc1"

# Enhanced RTMP video packet types.
EX_SEQUENCE_START = 0
EX_CODED_FRAMES = 1
EX_SEQUENCE_END = 2
EX_CODED_FRAMES_X = 3

SOUND_FORMAT = {"g711a": 7, "g711u": 8, "aac": 10}
#: First byte of an audio tag. G.711: SoundRate 0 (the rate is implied: 8 kHz), 16-bit, mono —
#: the flags FFmpeg writes and flv.js-derived players accept. AAC: always 44 kHz/16-bit/stereo.
AUDIO_TAG_BYTE = {"g711a": 0x72, "g711u": 0x82, "aac": 0xAF}

MASK33 = (1 << 33) - 1
HALF33 = 1 << 32

FLV_HEADER_SIZE = 9
TAG_HEADER_SIZE = 11

H264_NAL_SPS = 7
H264_NAL_PPS = 8
H264_NAL_AUD = 9
H264_NAL_IDR = 5
H265_NAL_VPS = 32
H265_NAL_SPS = 33
H265_NAL_PPS = 34
H265_NAL_AUD = 35

AAC_SAMPLE_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025,
                    8000, 7350)


# --------------------------------------------------------------------------------------------
# Annex B
# --------------------------------------------------------------------------------------------

def split_annexb(data: bytes) -> list[tuple[int, int]]:
    """``(start, end)`` of every NAL unit in an Annex B byte stream.

    A NAL unit starts after a ``00 00 01`` start code and ends before the next one; the zero bytes
    before a start code (the leading zero of a 4-byte start code, ``trailing_zero_8bits``) belong
    to no NAL unit (H.264 §B.1). Bytes before the first start code are ignored; empty units are
    skipped.
    """
    spans: list[tuple[int, int]] = []
    find = data.find
    i = find(b"\x00\x00\x01")
    n = len(data)
    while i >= 0:
        start = i + 3
        j = find(b"\x00\x00\x01", start)
        end = n if j < 0 else j
        while end > start and data[end - 1] == 0:
            end -= 1
        if end > start:
            spans.append((start, end))
        i = j
    return spans


def annexb_to_avcc(data: bytes) -> bytes:
    """Every NAL unit of ``data`` with a 4-byte big-endian length prefix instead of a start code."""
    return b"".join(struct.pack(">I", e - s) + data[s:e] for s, e in split_annexb(data))


def _unescape(nal: bytes) -> bytes:
    """RBSP of a NAL unit: drop the emulation-prevention byte of every ``00 00 03``."""
    if b"\x00\x00\x03" not in nal:
        return nal
    out = bytearray()
    i = 0
    n = len(nal)
    zeros = 0
    while i < n:
        b = nal[i]
        if zeros >= 2 and b == 3:
            zeros = 0
            i += 1
            continue
        out.append(b)
        zeros = zeros + 1 if b == 0 else 0
        i += 1
    return bytes(out)


class _Bits:
    """Big-endian bit reader with Exp-Golomb codes; reading past the end raises ValueError."""

    __slots__ = ("data", "pos", "size")

    def __init__(self, data: bytes, byte_offset: int = 0) -> None:
        self.data = data
        self.pos = byte_offset * 8
        self.size = len(data) * 8

    def u(self, n: int) -> int:
        if self.pos + n > self.size:
            raise ValueError("parameter set truncated")
        v = 0
        for _ in range(n):
            v = (v << 1) | ((self.data[self.pos >> 3] >> (7 - (self.pos & 7))) & 1)
            self.pos += 1
        return v

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("invalid Exp-Golomb code")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


def parse_h264_sps(sps: bytes) -> dict[str, int]:
    """Fields of an H.264 SPS NAL unit (with its 1-byte header) needed for FLV (H.264 §7.3.2.1.1).

    Returns profile_idc, constraint_flags, level_idc, chroma_format_idc, bit_depth_luma,
    bit_depth_chroma, width and height (cropped). Raises ValueError on a malformed SPS.
    """
    rbsp = _unescape(sps)
    if len(rbsp) < 4 or rbsp[0] & 0x1F != H264_NAL_SPS:
        raise ValueError("not an H.264 SPS")
    r = _Bits(rbsp, 1)
    profile = r.u(8)
    constraints = r.u(8)
    level = r.u(8)
    r.ue()  # seq_parameter_set_id
    chroma_format_idc = 1
    separate_colour_plane = 0
    bit_depth_luma = bit_depth_chroma = 8
    if profile in (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135):
        chroma_format_idc = r.ue()
        if chroma_format_idc == 3:
            separate_colour_plane = r.u(1)
        bit_depth_luma = r.ue() + 8
        bit_depth_chroma = r.ue() + 8
        r.u(1)  # qpprime_y_zero_transform_bypass_flag
        if r.u(1):  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format_idc != 3 else 12):
                if r.u(1):
                    size = 16 if i < 6 else 64
                    last = nxt = 8
                    for _ in range(size):
                        if nxt:
                            nxt = (last + r.se() + 256) % 256
                        last = nxt or last
    r.ue()  # log2_max_frame_num_minus4
    poc_type = r.ue()
    if poc_type == 0:
        r.ue()
    elif poc_type == 1:
        r.u(1)
        r.se()
        r.se()
        for _ in range(r.ue()):
            r.se()
    r.ue()  # max_num_ref_frames
    r.u(1)  # gaps_in_frame_num_value_allowed_flag
    width_mbs = r.ue() + 1
    height_map_units = r.ue() + 1
    frame_mbs_only = r.u(1)
    if not frame_mbs_only:
        r.u(1)  # mb_adaptive_frame_field_flag
    r.u(1)  # direct_8x8_inference_flag
    crop = (0, 0, 0, 0)
    if r.u(1):
        crop = (r.ue(), r.ue(), r.ue(), r.ue())
    chroma_array_type = 0 if separate_colour_plane else chroma_format_idc
    if chroma_array_type == 0:
        crop_x, crop_y = 1, 2 - frame_mbs_only
    else:
        sub_w = 1 if chroma_format_idc == 3 else 2
        sub_h = 2 if chroma_format_idc == 1 else 1
        crop_x, crop_y = sub_w, sub_h * (2 - frame_mbs_only)
    width = width_mbs * 16 - crop_x * (crop[0] + crop[1])
    height = (2 - frame_mbs_only) * height_map_units * 16 - crop_y * (crop[2] + crop[3])
    if width <= 0 or height <= 0:
        raise ValueError("SPS cropping exceeds the picture size")
    return {
        "profile_idc": profile, "constraint_flags": constraints, "level_idc": level,
        "chroma_format_idc": chroma_format_idc, "bit_depth_luma": bit_depth_luma,
        "bit_depth_chroma": bit_depth_chroma, "width": width, "height": height,
    }


def parse_h265_sps(sps: bytes) -> dict[str, Any]:
    """Fields of an H.265 SPS NAL unit (with its 2-byte header) needed for FLV (H.265 §7.3.2.2).

    Returns general_profile_tier_level (the 12 bytes of the general profile_tier_level, copied
    as-is into the HEVCDecoderConfigurationRecord), max_sub_layers, temporal_id_nesting,
    chroma_format_idc, bit_depth_luma, bit_depth_chroma, width and height (conformance window
    applied). Raises ValueError on a malformed SPS.
    """
    rbsp = _unescape(sps)
    if len(rbsp) < 15 or (rbsp[0] >> 1) & 0x3F != H265_NAL_SPS:
        raise ValueError("not an H.265 SPS")
    r = _Bits(rbsp, 2)
    r.u(4)  # sps_video_parameter_set_id
    max_sub_layers_minus1 = r.u(3)
    nesting = r.u(1)
    general_ptl = bytes(rbsp[3:15])
    r.pos += 96
    if max_sub_layers_minus1 > 7 - 1 + 1:
        raise ValueError("invalid sps_max_sub_layers_minus1")
    profile_present = []
    level_present = []
    for _ in range(max_sub_layers_minus1):
        profile_present.append(r.u(1))
        level_present.append(r.u(1))
    if max_sub_layers_minus1 > 0:
        for _ in range(max_sub_layers_minus1, 8):
            r.u(2)
    for i in range(max_sub_layers_minus1):
        if profile_present[i]:
            r.u(32)
            r.u(32)
            r.u(24)
        if level_present[i]:
            r.u(8)
    r.ue()  # sps_seq_parameter_set_id
    chroma_format_idc = r.ue()
    if chroma_format_idc > 3:
        raise ValueError("invalid chroma_format_idc")
    if chroma_format_idc == 3:
        r.u(1)  # separate_colour_plane_flag
    width = r.ue()
    height = r.ue()
    if r.u(1):  # conformance_window_flag
        left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
        sub_w = 2 if chroma_format_idc in (1, 2) else 1
        sub_h = 2 if chroma_format_idc == 1 else 1
        width -= sub_w * (left + right)
        height -= sub_h * (top + bottom)
    bit_depth_luma = r.ue() + 8
    bit_depth_chroma = r.ue() + 8
    if width <= 0 or height <= 0:
        raise ValueError("SPS picture size invalid")
    return {
        "general_profile_tier_level": general_ptl, "max_sub_layers": max_sub_layers_minus1 + 1,
        "temporal_id_nesting": nesting, "chroma_format_idc": chroma_format_idc,
        "bit_depth_luma": bit_depth_luma, "bit_depth_chroma": bit_depth_chroma,
        "width": width, "height": height,
    }


def avc_decoder_configuration_record(sps_list: list[bytes], pps_list: list[bytes]) -> bytes:
    """``AVCDecoderConfigurationRecord`` (ISO/IEC 14496-15 §5.3.3.1) with 4-byte NAL lengths."""
    if not sps_list or not pps_list:
        raise ValueError("an AVC configuration needs an SPS and a PPS")
    info = parse_h264_sps(sps_list[0])
    sps0 = sps_list[0]
    out = bytearray([1, sps0[1], sps0[2], sps0[3], 0xFF, 0xE0 | len(sps_list)])
    for sps in sps_list:
        out += struct.pack(">H", len(sps)) + sps
    out.append(len(pps_list))
    for pps in pps_list:
        out += struct.pack(">H", len(pps)) + pps
    if info["profile_idc"] in (100, 110, 122, 144):
        out += bytes([0xFC | info["chroma_format_idc"], 0xF8 | (info["bit_depth_luma"] - 8),
                      0xF8 | (info["bit_depth_chroma"] - 8), 0])
    return bytes(out)


def hevc_decoder_configuration_record(vps_list: list[bytes], sps_list: list[bytes],
                                      pps_list: list[bytes]) -> bytes:
    """``HEVCDecoderConfigurationRecord`` (ISO/IEC 14496-15 §8.3.3.1) with 4-byte NAL lengths."""
    if not vps_list or not sps_list or not pps_list:
        raise ValueError("an HEVC configuration needs a VPS, an SPS and a PPS")
    info = parse_h265_sps(sps_list[0])
    out = bytearray([1])
    out += info["general_profile_tier_level"]
    out += bytes([
        0xF0, 0x00,                                   # min_spatial_segmentation_idc 0
        0xFC,                                         # parallelismType 0 (unknown)
        0xFC | info["chroma_format_idc"],
        0xF8 | (info["bit_depth_luma"] - 8),
        0xF8 | (info["bit_depth_chroma"] - 8),
        0x00, 0x00,                                   # avgFrameRate unspecified
        (info["max_sub_layers"] << 3) | (info["temporal_id_nesting"] << 2) | 3,
        3,                                            # numOfArrays: VPS, SPS, PPS
    ])
    for nal_type, nals in ((H265_NAL_VPS, vps_list), (H265_NAL_SPS, sps_list),
                           (H265_NAL_PPS, pps_list)):
        out += bytes([0x80 | nal_type]) + struct.pack(">H", len(nals))
        for nal in nals:
            out += struct.pack(">H", len(nal)) + nal
    return bytes(out)


# --------------------------------------------------------------------------------------------
# AAC (ADTS)
# --------------------------------------------------------------------------------------------

def parse_adts(data: bytes) -> tuple[bytes | None, int, list[tuple[int, int]]]:
    """Split ADTS frames: ``(AudioSpecificConfig, sample_rate, [(start, end) of raw payloads])``.

    Stops at the first byte that does not start a well-formed ADTS header (the rest is dropped);
    returns ``(None, 0, [])`` when ``data`` holds no ADTS frame at all.
    """
    asc = None
    rate = 0
    spans: list[tuple[int, int]] = []
    i = 0
    n = len(data)
    while i + 7 <= n:
        if data[i] != 0xFF or data[i + 1] & 0xF6 != 0xF0:
            break
        protection_absent = data[i + 1] & 1
        profile = data[i + 2] >> 6
        freq_index = (data[i + 2] >> 2) & 0x0F
        channels = ((data[i + 2] & 1) << 2) | (data[i + 3] >> 6)
        length = ((data[i + 3] & 3) << 11) | (data[i + 4] << 3) | (data[i + 5] >> 5)
        header = 7 if protection_absent else 9
        if freq_index >= len(AAC_SAMPLE_RATES) or length <= header or i + length > n:
            break
        if asc is None:
            object_type = profile + 1
            asc = bytes([(object_type << 3) | (freq_index >> 1),
                         ((freq_index & 1) << 7) | (channels << 3)])
            rate = AAC_SAMPLE_RATES[freq_index]
        spans.append((i + header, i + length))
        i += length
    return asc, rate, spans


# --------------------------------------------------------------------------------------------
# Tags
# --------------------------------------------------------------------------------------------

def flv_file_header(has_audio: bool, has_video: bool) -> bytes:
    """The 9-byte FLV header followed by ``PreviousTagSize0`` (0)."""
    flags = (4 if has_audio else 0) | (1 if has_video else 0)
    return b"FLV\x01" + bytes([flags]) + b"\x00\x00\x00\x09" + b"\x00\x00\x00\x00"


def tag(tag_type: int, timestamp_ms: int, body: bytes) -> bytes:
    """One FLV tag followed by its PreviousTagSize field."""
    size = len(body)
    ts = timestamp_ms & 0xFFFFFFFF
    return (bytes([tag_type, (size >> 16) & 0xFF, (size >> 8) & 0xFF, size & 0xFF,
                   (ts >> 16) & 0xFF, (ts >> 8) & 0xFF, ts & 0xFF, ts >> 24, 0, 0, 0])
            + body + struct.pack(">I", size + TAG_HEADER_SIZE))


def _amf0_value(value: Any) -> bytes:
    if isinstance(value, bool):
        return b"\x01" + (b"\x01" if value else b"\x00")
    if isinstance(value, (int, float)):
        return b"\x00" + struct.pack(">d", float(value))
    if isinstance(value, str):
        raw = value.encode()
        return b"\x02" + struct.pack(">H", len(raw)) + raw
    raise TypeError(f"unsupported AMF0 value {value!r}")


def amf0_script_tag(name: str, properties: dict[str, Any]) -> bytes:
    """A script data tag (timestamp 0): AMF0 string ``name`` then an ECMA array of properties."""
    body = bytearray(_amf0_value(name))
    body += b"\x08" + struct.pack(">I", len(properties))
    for key, value in properties.items():
        raw = key.encode()
        body += struct.pack(">H", len(raw)) + raw + _amf0_value(value)
    body += b"\x00\x00\x09"
    return tag(TAG_SCRIPT, 0, bytes(body))


def _floor90(t: int) -> int:
    """90 kHz ticks to milliseconds, rounding towards minus infinity."""
    return t // 90


def build_metadata(video_codec: str | None, audio_codec: str | None, enhanced: bool, width: int,
                   height: int, aac_config: bytes | None, aac_rate: int) -> dict[str, Any]:
    """``onMetaData`` properties for the given stream parameters (width 0: unknown)."""
    meta: dict[str, Any] = {"duration": 0.0}
    if video_codec is not None:
        if width:
            meta["width"] = float(width)
            meta["height"] = float(height)
        if enhanced:
            meta["videocodecid"] = float(int.from_bytes(FOURCC_HVC1, "big"))
        else:
            meta["videocodecid"] = float(CODEC_ID_AVC if video_codec == "h264"
                                         else CODEC_ID_HEVC_LEGACY)
    if audio_codec is not None:
        meta["audiocodecid"] = float(SOUND_FORMAT[audio_codec])
        if audio_codec == "aac":
            if aac_rate:
                meta["audiosamplerate"] = float(aac_rate)
        else:
            meta["audiosamplerate"] = 8000.0
        meta["audiosamplesize"] = 16.0
        meta["stereo"] = bool(aac_config and (aac_config[1] >> 3) & 0x0F > 1)
    meta["encoder"] = "sip28181"
    return meta


def video_configuration(video_codec: str, vps: list[bytes], sps: list[bytes],
                        pps: list[bytes]) -> tuple[bytes, int, int] | None:
    """``(decoder configuration record, width, height)``; None if the sets are incomplete/bad."""
    try:
        if video_codec == "h265":
            if not (vps and sps and pps):
                return None
            record = hevc_decoder_configuration_record(vps, sps, pps)
            info = parse_h265_sps(sps[0])
        else:
            if not (sps and pps):
                return None
            record = avc_decoder_configuration_record(sps, pps)
            info = parse_h264_sps(sps[0])
    except ValueError:
        return None
    return record, info["width"], info["height"]


def video_sequence_header_body(config: bytes, enhanced: bool, codec_id: int) -> bytes:
    """Body of the video tag carrying a decoder configuration record."""
    if enhanced:
        return bytes([0x80 | (1 << 4) | EX_SEQUENCE_START]) + FOURCC_HVC1 + config
    return bytes([(1 << 4) | codec_id, 0, 0, 0, 0]) + config


def video_end_body(enhanced: bool, codec_id: int) -> bytes:
    """Body of the video end-of-sequence tag."""
    if enhanced:
        return bytes([0x80 | (1 << 4) | EX_SEQUENCE_END]) + FOURCC_HVC1
    return bytes([(1 << 4) | codec_id, 2, 0, 0, 0])


# --------------------------------------------------------------------------------------------
# Muxer
# --------------------------------------------------------------------------------------------

class FlvMuxer:
    """Turns :class:`~media.Frame` access units into FLV tags.

    ``video_codec`` is None, ``"h264"`` or ``"h265"``; ``audio_codec`` is None, ``"g711a"``,
    ``"g711u"`` or ``"aac"``. ``hevc_mode`` is ``"enhanced"`` (Enhanced RTMP FourCC ``hvc1``) or
    ``"legacy"`` (CodecID 12).

    * :meth:`mux` returns the tags for one frame (possibly empty): the sequence header before the
      first keyframe and again before a keyframe whose parameter sets changed; frames before the
      first video keyframe (audio included, when a video codec is configured) are dropped and
      counted in :attr:`frames_dropped`.
    * :meth:`header` is the FLV file header plus the ``onMetaData`` tag (width and height once an
      SPS has been seen); :meth:`init_segment` adds the sequence headers in force, so a viewer
      joining late gets ``init_segment() + <tags from the last keyframe on>``.
    * Timestamps are milliseconds from the DTS of the first emitted frame, unwrapped across the
      33-bit PES timestamp wrap and kept monotonic per stream; the composition time of video tags
      is PTS − DTS (B-frames).
    """

    def __init__(self, video_codec: str | None = None, audio_codec: str | None = None,
                 hevc_mode: str = "enhanced") -> None:
        vc = normalize_codec(video_codec)
        ac = normalize_codec(audio_codec)
        if video_codec is not None and vc not in VIDEO_CODECS:
            raise ValueError(f"unsupported FLV video codec {video_codec!r}")
        if audio_codec is not None and ac not in AUDIO_CODECS:
            raise ValueError(f"unsupported FLV audio codec {audio_codec!r}")
        if vc is None and ac is None:
            raise ValueError("an FLV stream needs a video or an audio codec")
        if hevc_mode not in ("enhanced", "legacy"):
            raise ValueError("hevc_mode must be 'enhanced' or 'legacy'")
        self.video_codec = vc
        self.audio_codec = ac
        self.hevc_mode = hevc_mode
        self._enhanced = vc == "h265" and hevc_mode == "enhanced"
        self._codec_id = CODEC_ID_AVC if vc == "h264" else CODEC_ID_HEVC_LEGACY
        #: Picture size from the SPS (0 until known).
        self.width = 0
        self.height = 0
        self.frames_in = 0
        self.frames_out = 0
        self.frames_dropped = 0
        self._base: int | None = None      # unwrapped 90 kHz DTS of time 0
        self._last: int | None = None      # last unwrapped DTS (any stream): unwrap reference
        self._video_ms = 0
        self._audio_ms = 0
        self._video_dts: int | None = None
        self._audio_next: int | None = None  # unwrapped DTS following the last audio frame
        self._started = vc is None
        self._vps: list[bytes] = []
        self._sps: list[bytes] = []
        self._pps: list[bytes] = []
        self._video_config: bytes | None = None     # record in the last video sequence header
        self._param_sets: tuple[list[bytes], list[bytes], list[bytes]] | None = None
        self._video_seq_body = b""
        self._video_seq_tag = b""
        self._audio_seq_tag = b""
        self._aac_config: bytes | None = None
        self._aac_rate = 0

    # ---- public ---------------------------------------------------------------------------

    def header(self) -> bytes:
        """FLV header, ``PreviousTagSize0`` and the ``onMetaData`` script tag."""
        return (flv_file_header(self.audio_codec is not None, self.video_codec is not None)
                + amf0_script_tag("onMetaData", self.metadata()))

    def metadata(self) -> dict[str, Any]:
        """The ``onMetaData`` properties as known now."""
        return build_metadata(self.video_codec, self.audio_codec, self._enhanced, self.width,
                              self.height, self._aac_config, self._aac_rate)

    def init_segment(self) -> bytes | None:
        """:meth:`header` plus the sequence headers in force; None until the stream can start."""
        if not self._started:
            return None
        return self.header() + self._video_seq_tag + self._audio_seq_tag

    @property
    def started(self) -> bool:
        """True once the first video keyframe (or, audio-only, the first frame) was emitted."""
        return self._started

    def mux(self, frame: Frame) -> bytes:
        """Tags for ``frame`` (empty when the frame is dropped or only carried parameter sets)."""
        self.frames_in += 1
        codec = normalize_codec(frame.codec)
        if codec is not None and codec == self.video_codec:
            out = self._mux_video(frame)
        elif codec is not None and codec == self.audio_codec:
            out = self._mux_audio(frame)
        else:
            out = b""
        if out:
            self.frames_out += 1
        else:
            self.frames_dropped += 1
        return out

    def mux_batch(self, frames: Iterable[Frame],
                  refused: list[tuple[Frame, Exception]] | None = None) -> list[bytes]:
        """Tags for several frames, as few ``bytes`` as possible: a new one starts at every
        video keyframe tag (so only the first may start elsewhere). The bytes equal the joined
        :meth:`mux` results. A frame that raises is skipped and ``(frame, exception)`` appended
        to ``refused`` when given, else the exception propagates (the batch's tags are lost)."""
        chunks: list[bytes] = []
        run: list[bytes] = []
        for frame in frames:
            try:
                out = self.mux(frame)
            except Exception as exc:
                if refused is None:
                    raise
                refused.append((frame, exc))
                continue
            if out:
                if run and out[0] == TAG_VIDEO and (out[11] >> 4) & 7 == 1:
                    chunks.append(b"".join(run))
                    run = []
                run.append(out)
        if run:
            chunks.append(b"".join(run))
        return chunks

    def end(self) -> bytes:
        """End-of-sequence tag for the video stream (empty if no video was written)."""
        if self.video_codec is None or not self._started or self._video_dts is None:
            return b""
        body = video_end_body(self._enhanced, self._codec_id)
        return tag(TAG_VIDEO, self._video_ms, body)

    # ---- timing ---------------------------------------------------------------------------

    def _unwrap(self, raw: int) -> int:
        last = self._last
        if last is None:
            ext = raw & MASK33
        else:
            d = (raw - last) & MASK33
            if d >= HALF33:
                d -= 1 << 33
            ext = last + d
        self._last = ext
        return ext

    # ---- video ----------------------------------------------------------------------------

    def _mux_video(self, frame: Frame) -> bytes:
        data = frame.data
        if not isinstance(data, bytes):
            data = bytes(data)
        spans = split_annexb(data)
        hevc = self.video_codec == "h265"
        key = bool(frame.keyframe)
        vps: list[bytes] = []
        sps: list[bytes] = []
        pps: list[bytes] = []
        body = []
        for s, e in spans:
            if hevc:
                t = (data[s] >> 1) & 0x3F
                if t == H265_NAL_VPS:
                    vps.append(bytes(data[s:e]))
                    continue
                if t == H265_NAL_SPS:
                    sps.append(bytes(data[s:e]))
                    continue
                if t == H265_NAL_PPS:
                    pps.append(bytes(data[s:e]))
                    continue
                if t == H265_NAL_AUD:
                    continue
                if 16 <= t <= 23:
                    key = True
            else:
                t = data[s] & 0x1F
                if t == H264_NAL_SPS:
                    sps.append(bytes(data[s:e]))
                    continue
                if t == H264_NAL_PPS:
                    pps.append(bytes(data[s:e]))
                    continue
                if t == H264_NAL_AUD:
                    continue
                if t == H264_NAL_IDR:
                    key = True
            body.append((s, e))
        if vps:
            self._vps = vps
        if sps:
            self._sps = sps
        if pps:
            self._pps = pps
        if not body:
            return b""
        if not self._started and not key:
            return b""
        dts_raw = frame.dts if frame.dts is not None else frame.pts
        if dts_raw is None and self._video_dts is None:
            return b""
        seq = b""
        if key:
            config = self._video_configuration()
            if config is None:
                if not self._started:
                    return b""
            elif config != self._video_config:
                seq = self._set_video_config(config)
        if dts_raw is None:
            dts = self._video_dts
        else:
            dts = self._unwrap(dts_raw)
        pts = dts
        if frame.pts is not None and dts_raw is not None:
            d = (frame.pts - dts_raw) & MASK33
            if d >= HALF33:
                d -= 1 << 33
            pts = dts + d
        if self._base is None:
            self._base = dts
        self._started = True
        self._video_dts = dts
        ms = _floor90(dts - self._base)
        if ms < self._video_ms:
            ms = self._video_ms
        self._video_ms = ms
        cts = _floor90(pts - self._base) - ms
        if seq:
            seq = tag(TAG_VIDEO, ms, seq)
            self._video_seq_tag = tag(TAG_VIDEO, 0, self._video_seq_body)
        frame_type = 1 if key else 2
        if self._enhanced:
            if cts:
                head = bytes([0x80 | (frame_type << 4) | EX_CODED_FRAMES]) + FOURCC_HVC1 + \
                    (cts & 0xFFFFFF).to_bytes(3, "big")
            else:
                head = bytes([0x80 | (frame_type << 4) | EX_CODED_FRAMES_X]) + FOURCC_HVC1
        else:
            head = (bytes([(frame_type << 4) | self._codec_id, 1])
                    + (cts & 0xFFFFFF).to_bytes(3, "big"))
        parts = [head]
        for s, e in body:
            parts.append(struct.pack(">I", e - s))
            parts.append(data[s:e])
        return seq + tag(TAG_VIDEO, ms, b"".join(parts))

    def _video_configuration(self) -> bytes | None:
        """Decoder configuration record for the parameter sets in force (None if incomplete)."""
        current = (self._vps, self._sps, self._pps)
        if current == self._param_sets:
            return self._video_config
        found = video_configuration(self.video_codec or "", self._vps, self._sps, self._pps)
        if found is None:
            return None
        self._param_sets = current
        record, self.width, self.height = found
        return record

    def _set_video_config(self, config: bytes) -> bytes:
        """Remember ``config``; return the body of its sequence header tag."""
        self._video_config = config
        self._video_seq_body = video_sequence_header_body(config, self._enhanced, self._codec_id)
        return self._video_seq_body

    # ---- audio ----------------------------------------------------------------------------

    def _mux_audio(self, frame: Frame) -> bytes:
        if not self._started:
            return b""
        data = frame.data
        if not isinstance(data, bytes):
            data = bytes(data)
        codec = self.audio_codec
        if codec == "aac":
            asc, rate, spans = parse_adts(data)
            if asc is None:
                return b""
            samples = 1024 * len(spans)
        else:
            if not data:
                return b""
            rate = 8000
            samples = len(data)
            spans = [(0, len(data))]
        raw = frame.dts if frame.dts is not None else frame.pts
        if raw is None:
            if self._audio_next is None:
                return b""
            dts = self._audio_next
        else:
            dts = self._unwrap(raw)
        if self._base is None:
            self._base = dts
        self._audio_next = dts + samples * 90000 // rate
        out = []
        if codec == "aac":
            if asc != self._aac_config:
                self._aac_config = asc
                self._aac_rate = rate
                body = b"\xaf\x00" + asc
                self._audio_seq_tag = tag(TAG_AUDIO, 0, body)
                out.append(tag(TAG_AUDIO, max(self._audio_ms, _floor90(dts - self._base), 0), body))
            lead = b"\xaf\x01"
        else:
            lead = bytes([AUDIO_TAG_BYTE[codec]])
        for k, (s, e) in enumerate(spans):
            t = dts + k * 1024 * 90000 // rate if codec == "aac" else dts
            ms = _floor90(t - self._base)
            if ms < self._audio_ms:
                ms = self._audio_ms
            self._audio_ms = ms
            out.append(tag(TAG_AUDIO, ms, lead + data[s:e]))
        return b"".join(out)
