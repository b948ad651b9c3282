"""Online/offline judgement (PROTOCOL §4): registration plus keepalives.

Offline when ``now - last keepalive > interval × count`` or when the registration expires; a TCP
device whose connection drops is offline at once (2022 §9.1.1 f). Deadlines sit in a heap that is
checked lazily: a keepalive only moves a timestamp, it never touches the heap.
"""

from __future__ import annotations

import heapq

from .events import DeviceOffline, DeviceOnline
from .registry import DeviceState, Registry


class Presence:
    def __init__(self, registry: Registry, keepalive_interval: float = 60.0, keepalive_count: int = 3) -> None:
        self.registry = registry
        self.keepalive_interval = keepalive_interval
        self.keepalive_count = keepalive_count
        self._heap: list[tuple[float, str]] = []

    @property
    def timeout(self) -> float:
        return self.keepalive_interval * self.keepalive_count

    def deadline(self, state: DeviceState) -> float | None:
        """When ``state`` goes offline if nothing more is heard."""
        if state.status != "online" or state.last_seen is None:
            return None
        deadline = state.last_seen + self.timeout
        if state.expires_at is not None:
            deadline = min(deadline, state.expires_at)
        return deadline

    def went_online(self, state: DeviceState, now: float, wall: float, reason: str) -> list[object]:
        state.last_seen = now
        events: list[object] = []
        if state.status != "online":
            state.status = "online"
            self.registry.mark(state.device_id)
            events.append(DeviceOnline(state.device_id, wall, reason))
        deadline = self.deadline(state)
        if deadline is not None:
            heapq.heappush(self._heap, (deadline, state.device_id))
        return events

    def heard(self, state: DeviceState, now: float) -> None:
        """Any message from the device counts as a sign of life (keepalive, notification, answer)."""
        state.last_seen = now

    def went_offline(self, state: DeviceState, wall: float, reason: str) -> list[object]:
        if state.status == "offline":
            return []
        state.status = "offline"
        self.registry.mark(state.device_id)
        return [DeviceOffline(state.device_id, wall, reason)]

    def next_deadline(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def check(self, now: float, wall: float) -> list[object]:
        """Expire what is due; re-arm the entries whose device was heard from since."""
        events: list[object] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            _deadline, device_id = heapq.heappop(heap)
            state = self.registry.get(device_id)
            if state is None or state.status != "online":
                continue
            real = self.deadline(state)
            if real is None:
                continue
            if real > now:
                heapq.heappush(heap, (real, device_id))
                continue
            registration_over = state.expires_at is not None and state.expires_at <= now
            if registration_over:
                state.registered = False
            events += self.went_offline(state, wall, "registration expired" if registration_over else "keepalive timeout")
        if len(heap) > 4 * max(1, len(self.registry)):
            # stale duplicates from many state changes: rebuild from the live set
            self._heap = [(d, s.device_id) for s in self.registry if (d := self.deadline(s)) is not None]
            heapq.heapify(self._heap)
        return events
