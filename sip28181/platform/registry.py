"""Live device state in memory; the store gets it on changes of state and in batches.

A keepalive touches only this dictionary. ``dirty`` collects the devices whose persistent fields
changed since the last flush, so one flush writes each of them once however often they changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

from ..transport import Flow


@dataclass(slots=True)
class DeviceState:
    device_id: str
    name: str | None = None
    status: str = "offline"                  # "online" | "offline"
    registered: bool = False
    flow: Flow | None = None                 # where requests to the device go (observed source)
    contact: str | None = None
    expires: int | None = None
    expires_at: float | None = None          # monotonic deadline of the registration
    registered_at: float | None = None       # wall clock
    last_keepalive_at: float | None = None   # wall clock
    last_seen: float | None = None           # monotonic, any message from the device
    call_id: str | None = None
    user_agent: str | None = None
    gb_version: str | None = None
    created_at: float | None = None
    extra: dict = field(default_factory=dict)

    @property
    def transport(self) -> str | None:
        return self.flow.transport if self.flow else None


class Registry:
    def __init__(self) -> None:
        self._devices: dict[str, DeviceState] = {}
        self.dirty: set[str] = set()

    def get(self, device_id: str) -> DeviceState | None:
        return self._devices.get(device_id)

    def get_or_create(self, device_id: str, now_wall: float) -> DeviceState:
        state = self._devices.get(device_id)
        if state is None:
            state = self._devices[device_id] = DeviceState(device_id, created_at=now_wall)
            self.dirty.add(device_id)
        return state

    def add(self, state: DeviceState) -> None:
        self._devices[state.device_id] = state

    def remove(self, device_id: str) -> DeviceState | None:
        self.dirty.discard(device_id)
        return self._devices.pop(device_id, None)

    def mark(self, device_id: str) -> None:
        self.dirty.add(device_id)

    def take_dirty(self) -> list[DeviceState]:
        dirty, self.dirty = self.dirty, set()
        return [s for d in dirty if (s := self._devices.get(d)) is not None]

    def __iter__(self) -> Iterator[DeviceState]:
        return iter(self._devices.values())

    def __len__(self) -> int:
        return len(self._devices)

    def online_count(self) -> int:
        return sum(1 for s in self._devices.values() if s.status == "online")
