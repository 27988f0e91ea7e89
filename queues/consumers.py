"""The dashboard's websocket: relays the sampler's pushes to a browser. Read-only.

A socket costs the database one permission check when it opens, and one more every
``MQADMIN["SOCKET_RECHECK_INTERVAL"]`` seconds (30) while it stays open; pushes themselves cost nothing:
the sampler sends one message per tick to the group of its database (:func:`queues.metrics.group`) and each consumer
passes it on. Anything the browser sends is ignored.

Close codes: ``4403`` when the session's user may not view the dashboard (anonymous, inactive or
without ``queues.view_dashboard``; superusers pass), at the handshake or at a later re-check (the
permission was revoked, the user logged out or changed password elsewhere). The socket is accepted
first and then closed with that code, so the browser learns why and stops reconnecting (a refused
handshake only says 1006).
"""

from __future__ import annotations

import time
from importlib import import_module
from types import SimpleNamespace
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.contrib.auth import get_user

from queues import conf
from queues.metrics import group
from queues.permissions import can_view

CLOSE_FORBIDDEN = 4403

# Group memberships expire (channel layers default to a day); a dashboard left open on a wall must
# keep receiving, so each socket re-joins now and then, on a push (no timer, no extra work when idle).
_REJOIN_AFTER = 1800.0

# The newest sample this process relayed, so a new socket shows numbers at once, not at the next tick:
# (monotonic time seen, sample interval, JSON text).
_latest: tuple[float, float, str] | None = None


def _fresh_latest() -> str | None:
    if _latest is None:
        return None
    seen, interval, text = _latest
    return text if time.monotonic() - seen <= max(5.0, 3 * interval) else None


class DashboardConsumer(AsyncWebsocketConsumer):
    """``/ws/dashboard/``: one JSON text message per sample.

    ``{"type": "sample", "at", "interval", "queues", "total", "workers", "redrives"}``: see
    ``queues.metrics.sampler`` (``Sampler.tick``) for what each holds.
    """

    joined_at: float | None = None
    checked_at: float = 0.0
    group: str = ""

    async def connect(self) -> None:
        """Join the group and accept if the user may view the dashboard; else accept and close with 4403."""
        if not await self._may_view():
            await self.accept()
            await self.close(code=CLOSE_FORBIDDEN)
            return
        # Joined before accepting: once the browser sees the socket open, no push can miss it.
        self.group = group()
        await self.channel_layer.group_add(self.group, self.channel_name)
        self.joined_at = self.checked_at = time.monotonic()
        await self.accept()
        latest = _fresh_latest()
        if latest is not None:
            await self.send(text_data=latest)

    async def disconnect(self, code: int) -> None:
        """Leave the group (if joined)."""
        if self.joined_at is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)
            self.joined_at = None

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        """Read-only: whatever the browser sends is ignored, unparsed."""

    async def dashboard_sample(self, event: dict[str, Any]) -> None:
        """A sample pushed by the sampler (already JSON text, see ``broadcast``): pass it on."""
        global _latest
        if self.joined_at is None:
            return
        if time.monotonic() - self.checked_at >= float(conf.get("SOCKET_RECHECK_INTERVAL")):
            self.checked_at = time.monotonic()
            if not await self._still_may_view():
                await self.disconnect(CLOSE_FORBIDDEN)
                await self.close(code=CLOSE_FORBIDDEN)
                return
        text = event["text"]
        _latest = (time.monotonic(), float(event.get("interval") or 1.0), text)
        await self.send(text_data=text)
        if time.monotonic() - self.joined_at > _REJOIN_AFTER:
            await self.channel_layer.group_add(self.group, self.channel_name)
            self.joined_at = time.monotonic()

    @database_sync_to_async
    def _may_view(self) -> bool:
        return can_view(self.scope.get("user"))

    @database_sync_to_async
    def _still_may_view(self) -> bool:
        """The handshake's check again, on fresh data: the user as the session names them now.

        The scope's session and user were loaded at the handshake and are never refreshed, so this
        reads the session anew and lets Django's ``get_user`` verify it (a logout deletes it, a
        password change invalidates its hash) before the permission check.
        """
        session = self.scope.get("session")
        if session is None or session.session_key is None:
            return False
        fresh = import_module(settings.SESSION_ENGINE).SessionStore(session.session_key)
        return can_view(get_user(SimpleNamespace(session=fresh)))  # get_user reads only request.session
