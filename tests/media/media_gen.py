"""Test media made with PyAV: encoded video/audio access units as :class:`media.Frame` objects.

Everything is deterministic for given parameters (fixed patterns, no randomness), so tests and the
benchmark can cache what they generate.
"""

from __future__ import annotations

import fractions
import io
import math

import av
import numpy as np

from media import Frame

VIDEO_ENCODERS = {"h264": "libx264", "h265": "libx265"}


def pattern_picture(width: int, height: int, index: int) -> np.ndarray:
    """A moving testsrc-like RGB picture: colour bars, a gradient and a square that moves."""
    x = np.arange(width, dtype=np.uint16)
    y = np.arange(height, dtype=np.uint16)[:, None]
    img = np.empty((height, width, 3), dtype=np.uint8)
    bars = np.array([[255, 255, 255], [255, 255, 0], [0, 255, 255], [0, 255, 0],
                     [255, 0, 255], [255, 0, 0], [0, 0, 255], [0, 0, 0]], dtype=np.uint8)
    shift = (index * 4) % width
    bar_index = (((x + shift) % width) * 8 // width).astype(np.intp)
    img[: height * 2 // 3] = bars[bar_index][None, :, :]
    grad = ((x[None, :] + y + index * 3) & 0xFF).astype(np.uint8)
    img[height * 2 // 3:, :, 0] = grad[height * 2 // 3:]
    img[height * 2 // 3:, :, 1] = 255 - grad[height * 2 // 3:]
    img[height * 2 // 3:, :, 2] = (grad[height * 2 // 3:] // 2)
    size = max(8, height // 6)
    cx = int((width - size) * (0.5 + 0.5 * math.sin(index / 10.0)))
    cy = int((height - size) * (0.5 + 0.5 * math.cos(index / 13.0)))
    img[cy:cy + size, cx:cx + size] = (index * 7 % 256, 128, 255 - index * 5 % 256)
    return img


def encode_video(codec: str = "h264", frames: int = 50, width: int = 320, height: int = 240,
                 fps: int = 25, gop: int = 25, bframes: int = 2, bit_rate: int | None = None,
                 first_pts: int = 0, preset: str = "ultrafast") -> list[Frame]:
    """Encode a moving test pattern; return Annex B access units in decoding order.

    PTS/DTS are in 90 kHz units starting at ``first_pts`` (DTS is shifted so it never exceeds PTS,
    as a PS muxer would write it). Keyframes carry their parameter sets in band.
    """
    enc = av.CodecContext.create(VIDEO_ENCODERS[codec], "w")
    enc.width = width
    enc.height = height
    enc.pix_fmt = "yuv420p"
    enc.time_base = fractions.Fraction(1, fps)
    enc.framerate = fractions.Fraction(fps, 1)
    enc.gop_size = gop
    enc.max_b_frames = bframes
    if bit_rate:
        enc.bit_rate = bit_rate
    if codec == "h264":
        enc.options = {"preset": preset, "bf": str(bframes), "keyint": str(gop),
                       "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes={bframes}"}
        if bframes == 0:
            enc.options["tune"] = "zerolatency"
    else:
        enc.options = {"preset": preset,
                       "x265-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes={bframes}"
                                      ":log-level=error:repeat-headers=1"}
    step = 90000 // fps
    packets = []
    for i in range(frames):
        vf = av.VideoFrame.from_ndarray(pattern_picture(width, height, i), format="rgb24")
        vf = vf.reformat(format="yuv420p")
        vf.pts = i
        packets.extend(enc.encode(vf))
    packets.extend(enc.encode(None))
    # libx264 reports DTS that can precede the first PTS by the B-frame delay: shift DTS.
    delay = max(0, max((p.pts - p.dts) for p in packets)) if packets else 0
    out = []
    for p in packets:
        pts = first_pts + p.pts * step + delay * step
        dts = first_pts + (p.dts + delay) * step
        out.append(Frame(codec, pts & ((1 << 33) - 1), dts & ((1 << 33) - 1), bool(p.is_keyframe),
                         bytes(p), 0xE0))
    return out


def g711_frames(codec: str = "g711a", count: int = 50, samples: int = 320,
                first_pts: int = 0) -> list[Frame]:
    """G.711 frames of a 1 kHz tone, ``samples`` samples each (8 kHz), PTS in 90 kHz."""
    enc = av.CodecContext.create("pcm_alaw" if codec == "g711a" else "pcm_mulaw", "w")
    enc.sample_rate = 8000
    enc.layout = "mono"
    enc.format = "s16"
    out = []
    for i in range(count):
        t = (np.arange(samples) + i * samples) / 8000.0
        pcm = (np.sin(2 * np.pi * 1000 * t) * 8000).astype(np.int16)[None, :]
        af = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        af.sample_rate = 8000
        af.pts = i * samples
        data = b"".join(bytes(p) for p in enc.encode(af))
        pts = (first_pts + i * samples * 90000 // 8000) & ((1 << 33) - 1)
        out.append(Frame(codec, pts, pts, True, data, 0xC0))
    return out


def aac_frames(count: int = 20, sample_rate: int = 16000, channels: int = 1,
               first_pts: int = 0) -> list[Frame]:
    """AAC-LC access units with ADTS headers (one ADTS frame per Frame)."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="adts") as out:
        stream = out.add_stream("aac", rate=sample_rate)
        stream.layout = "mono" if channels == 1 else "stereo"
        samples = 1024
        for i in range(count + 2):
            t = (np.arange(samples) + i * samples) / sample_rate
            pcm = (np.sin(2 * np.pi * 440 * t) * 0.3).astype(np.float32)
            pcm = np.repeat(pcm[None, :], channels, axis=0)
            af = av.AudioFrame.from_ndarray(pcm, format="fltp", layout=stream.layout.name)
            af.sample_rate = sample_rate
            af.pts = i * samples
            for p in stream.encode(af):
                out.mux(p)
        for p in stream.encode(None):
            out.mux(p)
    data = buf.getvalue()
    frames = []
    i = 0
    k = 0
    while i + 7 <= len(data):
        length = ((data[i + 3] & 3) << 11) | (data[i + 4] << 3) | (data[i + 5] >> 5)
        pts = (first_pts + k * 1024 * 90000 // sample_rate) & ((1 << 33) - 1)
        frames.append(Frame("aac", pts, pts, True, data[i:i + length], 0xC0))
        i += length
        k += 1
    return frames[:count]


def interleave(video: list[Frame], audio: list[Frame]) -> list[Frame]:
    """Merge two frame lists by DTS (video first on ties), as a device would send them."""
    out = []
    i = j = 0
    while i < len(video) or j < len(audio):
        if j >= len(audio) or (i < len(video) and video[i].dts <= audio[j].dts):
            out.append(video[i])
            i += 1
        else:
            out.append(audio[j])
            j += 1
    return out
