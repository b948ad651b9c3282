"""Local control priority over an upper's (sans-IO).

Field requirements for cascaded networks (expressways: "部级控制权小于省级") rank the level that owns
a camera above the levels above it: while an operator here steers a channel, an upper platform's
PTZ and device control on that channel are refused. A local control holds its target for
``hold`` seconds from the last local command; a command on the device itself holds all its
channels. Time is passed in (a monotonic clock), so the rules are tested without sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ControlArbiter", "Hold"]


@dataclass(frozen=True, slots=True)
class Hold:
    """Why an upper's command is refused: a local control holds ``target`` until ``until``."""

    device_id: str
    target: str
    """The channel (or the device itself) the local command went to."""
    until: float


class ControlArbiter:
    """Which targets local control holds, and until when."""

    def __init__(self, hold: float) -> None:
        if hold < 0:
            raise ValueError("the local control hold cannot be negative")
        self.hold = hold
        self._until: dict[tuple[str, str], float] = {}

    def local(self, device_id: str, channel_id: str | None, now: float) -> None:
        """A local control was sent to ``channel_id`` (None: the device itself) at ``now``."""
        if self.hold <= 0:
            return
        self._prune(now)
        self._until[(device_id, channel_id or device_id)] = now + self.hold

    def held(self, device_id: str, channel_id: str | None, now: float) -> Hold | None:
        """The local hold that refuses an upper's command on ``channel_id``, or None (allowed)."""
        target = channel_id or device_id
        for key in ((device_id, target), (device_id, device_id)):
            until = self._until.get(key)
            if until is not None and until > now:
                return Hold(device_id, key[1], until)
        return None

    def release(self, device_id: str, channel_id: str | None = None) -> None:
        """End a hold early (the local operator is done)."""
        self._until.pop((device_id, channel_id or device_id), None)

    def _prune(self, now: float) -> None:
        if len(self._until) > 256:
            self._until = {k: v for k, v in self._until.items() if v > now}
