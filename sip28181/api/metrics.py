"""Prometheus metrics of one server, in a registry of its own.

Each :class:`Metrics` holds a private ``CollectorRegistry`` (never the process-wide default), so
several servers can run in one process (tests) without their counts mixing or names clashing.
The services are handed the ``Metrics`` object and update its attributes::

    metrics.registrations.labels(result="ok").inc()
    metrics.devices_online.set(len(online))
    metrics.sip_messages.labels(direction="in", method="MESSAGE").inc()

and ``metrics.register(api)`` serves ``GET /metrics`` in the Prometheus text format (or
OpenMetrics when the scraper asks for it).
"""

from __future__ import annotations

from typing import Callable

from typing import TYPE_CHECKING

from aiohttp import hdrs, web
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.exposition import choose_encoder
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

if TYPE_CHECKING:
    from .routing import ApiRouter, Route

__all__ = ["Metrics", "REGISTRATION_RESULTS", "INVITE_RESULTS"]

#: Values of the ``result`` label of ``sip28181_registrations_total``.
REGISTRATION_RESULTS = ("ok", "challenge", "forbidden", "throttled", "unregistered")
#: Values of the ``result`` label of ``sip28181_invites_total``.
INVITE_RESULTS = ("ok", "rejected", "timeout", "cancelled", "bad_answer", "error")


class Metrics:
    """The platform's metrics (names are those exposed, ``_total`` added to counters)."""

    def __init__(self, *, process: bool = True) -> None:
        """``process``: also export ``process_*`` (CPU, memory, fds) and ``python_info``."""
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.registrations = Counter(
            "sip28181_registrations", "REGISTER requests handled, by outcome",
            ["result"], registry=r)
        """``sip28181_registrations_total{result}``: ok, challenge (401 sent), forbidden (403),
        throttled (refused after repeated failures), unregistered (expires=0)."""
        self.devices_online = Gauge(
            "sip28181_devices_online", "Devices currently online (registered and keepalive fresh)",
            registry=r)
        self.devices_registered = Gauge(
            "sip28181_devices_registered", "Devices with an unexpired registration", registry=r)
        self.keepalives = Counter(
            "sip28181_keepalives", "Keepalive notifications received", registry=r)
        self.sip_messages = Counter(
            "sip28181_sip_messages", "SIP messages sent (out) and received (in), by method",
            ["direction", "method"], registry=r)
        """``method`` is the request method, for responses the method of their CSeq."""
        self.sip_parse_errors = Counter(
            "sip28181_sip_parse_errors", "Datagrams or stream frames that failed to parse",
            ["transport"], registry=r)
        self.presence_changes = Counter(
            "sip28181_presence_changes", "Device online/offline transitions",
            ["status"], registry=r)
        self.alarms = Counter(
            "sip28181_alarms", "Alarm notifications received, by AlarmMethod", ["method"], registry=r)
        self.media_streams = Gauge(
            "sip28181_media_streams", "Media streams currently open (one per channel and kind)",
            registry=r)
        self.invites = Counter(
            "sip28181_invites", "INVITEs sent for media sessions, by session kind and result",
            ["kind", "result"], registry=r)
        """``result``: ok, rejected (a final status >= 300), timeout, cancelled, bad_answer, error."""
        self.upper_invites = Counter(
            "sip28181_upper_invites", "INVITEs from upper platforms, by session kind and final status",
            ["kind", "status"], registry=r)
        self.upper_calls_closed = Counter(
            "sip28181_upper_calls_closed", "Media sessions of upper platforms ended, by reason",
            ["reason"], registry=r)
        """``reason``: upper bye, cancelled, stream ended, teardown, no ack, media connection
        closed/failed, upper offline (also disabled or moved), upper removed, shutdown, start failed."""
        self.media_sessions = Gauge(
            "sip28181_media_sessions", "Media session dialogs (INVITE) open or being set up", registry=r)
        self.media_sessions_closed = Counter(
            "sip28181_media_sessions_closed", "Media sessions ended, by reason", ["reason"], registry=r)
        """``reason``: bye, device bye, end of file, device offline, platform stop, gone."""
        self.media_viewers = Gauge(
            "sip28181_media_viewers", "Viewers and outputs holding media streams", registry=r)
        self.media_streams_started = Counter(
            "sip28181_media_streams_started", "Streams whose first frame reached the relay, by kind",
            ["kind"], registry=r)
        self.media_streams_stopped = Counter(
            "sip28181_media_streams_stopped", "Streams ended, by reason", ["reason"], registry=r)
        """``reason``: no viewers, no media, device bye, end of file, device offline, api,
        shutdown, media closed, start failed, cancelled."""
        self.media_bytes_received = Counter(
            "sip28181_media_bytes_received", "Media bytes received (RTP, TCP framing included)",
            registry=r)
        self.media_events = Counter(
            "sip28181_media_events", "Rare media input events (ports, unknown SSRCs...)", ["name"],
            registry=r)
        self.rtp_packets_received = Counter(
            "sip28181_rtp_packets_received", "RTP packets received", registry=r)
        self.rtp_packets_lost = Counter(
            "sip28181_rtp_packets_lost", "RTP packets missing from the sequence", registry=r)
        self.controls = Counter(
            "sip28181_controls", "PTZ and device controls, local or from an upper, by outcome",
            ["source", "result"], registry=r)
        """``source``: local, upper; ``result``: ok, refused, failed (as in the control log)."""
        self.upper_requests = Counter(
            "sip28181_upper_requests", "Queries and controls from upper platforms forwarded to devices",
            ["cmd_type"], registry=r)
        self.upper_alarms = Counter(
            "sip28181_upper_alarms", "Alarms sent to upper platforms, by outcome", ["result"], registry=r)
        """``result``: sent (200), refused (another final status), failed (no answer)."""
        self.upper_positions = Counter(
            "sip28181_upper_positions", "Mobile positions sent to upper platforms, by outcome", ["result"],
            registry=r)

        self.upper_registrations = Counter(
            "sip28181_upper_registrations", "REGISTERs we sent to upper platforms, by outcome",
            ["result"], registry=r)
        """``result``: see :data:`sip28181.cascade.link.UPPER_REGISTRATION_RESULTS`."""
        self.uppers_online = Gauge(
            "sip28181_uppers_online", "Upper platforms we are registered with", registry=r)
        self.cascade_catalog_messages = Counter(
            "sip28181_cascade_catalog_messages",
            "Catalog, device info/status answers and catalog notifications sent to upper platforms, by kind",
            ["kind"], registry=r)

        # Known label values exist from the start, so that rate() sees the first increment.
        for result in REGISTRATION_RESULTS:
            self.registrations.labels(result=result)
        from ..cascade.link import UPPER_REGISTRATION_RESULTS
        for result in UPPER_REGISTRATION_RESULTS:
            self.upper_registrations.labels(result=result)
        for transport in ("udp", "tcp"):
            self.sip_parse_errors.labels(transport=transport)
        for status in ("online", "offline"):
            self.presence_changes.labels(status=status)
        for kind in ("Play", "Playback", "Download"):
            for result in INVITE_RESULTS:
                self.invites.labels(kind=kind, result=result)
        if process:
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
        #: Called before every exposition: hot paths count in plain integers and fold them into
        #: the counters here (a counter increment takes a lock and costs microseconds).
        self.before_collect: list[Callable[[], None]] = []

    def render(self, accept: str = "") -> tuple[bytes, str]:
        """The exposition for an ``Accept`` header value: ``(body, content_type)``."""
        encoder, content_type = choose_encoder(accept)
        for hook in self.before_collect:
            hook()
        return encoder(self.registry), content_type

    async def handle(self, request: web.Request) -> web.Response:
        """Prometheus metrics of this server."""
        body, content_type = self.render(request.headers.get(hdrs.ACCEPT, ""))
        return web.Response(body=body, headers={hdrs.CONTENT_TYPE: content_type})

    def register(self, api: ApiRouter, *, path: str = "/metrics", public: bool = False) -> Route:
        """Serve :meth:`handle` at ``path`` (outside the API prefix) on ``api``.

        ``public=True`` serves it without the API token; the default protects it (see
        :mod:`sip28181.api.auth`).
        """
        return api.add("GET", path, self.handle, prefixed=False, public=public,
                       operation_id="metrics", tags=["monitoring"],
                       content_type="text/plain", response={"type": "string"})
