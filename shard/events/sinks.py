"""Where events go: zot's ``http`` and ``nats`` sinks (CloudEvents, structured JSON) and
Distribution's notification endpoints (its envelope). Each ``deliver`` raises on failure;
the sender (:mod:`shard.events.sender`) retries."""

from __future__ import annotations

import base64
from typing import Any, Protocol

import aiohttp
import nats
from nats.aio.client import Client as NATS

from common.config.lifecycle import Sink
from shard.events.record import ENVELOPE, cloudevent, envelope, notification


class DeliveryError(Exception):
    """The sink did not take the event (an answer that is not 2xx, a timeout, no connection)."""


class Target(Protocol):
    sink: Sink

    async def deliver(self, record: dict[str, Any]) -> bool:
        """Send one event; False when this sink ignores it (nothing to send)."""

    async def close(self) -> None: ...


def _auth_headers(sink: Sink) -> dict[str, str]:
    headers = dict(sink.headers)
    if sink.username:
        token = base64.b64encode(f"{sink.username}:{sink.password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    elif sink.token:
        headers["Authorization"] = f"Bearer {sink.token}"
    return headers


class _Http:
    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self._session: aiohttp.ClientSession | None = None

    async def _post(self, body: bytes, headers: dict[str, str]) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.sink.timeout))
        try:
            async with self._session.post(self.sink.address, data=body, headers={**_auth_headers(self.sink),
                                                                                  **headers}) as response:
                await response.read()
                if not 200 <= response.status < 300:
                    raise DeliveryError(f"{self.sink.label} answered {response.status}")
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise DeliveryError(f"{self.sink.label}: {exc or type(exc).__name__}") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class HttpSink(_Http):
    """zot's ``http`` sink: one POST per event, structured CloudEvent."""

    async def deliver(self, record: dict[str, Any]) -> bool:
        headers, body = cloudevent(record)
        await self._post(body, headers)
        return True


class NotificationSink(_Http):
    """Distribution's endpoint: an envelope with the event; ``ignoredmediatypes`` are skipped."""

    async def deliver(self, record: dict[str, Any]) -> bool:
        event = notification(record)
        if event is None or record.get("mediaType") in self.sink.ignored_media_types:
            return False
        await self._post(envelope([event]), {"Content-Type": ENVELOPE})
        return True


class NatsSink:
    """zot's ``nats`` sink: the structured CloudEvent published on ``channel``, flushed to the server."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self._nc: NATS | None = None

    async def _connect(self) -> NATS:
        if self._nc is None or not self._nc.is_connected:
            if self._nc is not None:
                await self._close_quietly()
            options: dict[str, Any] = {"servers": [self.sink.address], "connect_timeout": self.sink.timeout,
                                       "allow_reconnect": False, "max_reconnect_attempts": 0}
            if self.sink.username:
                options.update(user=self.sink.username, password=self.sink.password)
            elif self.sink.token:
                options["token"] = self.sink.token
            try:
                self._nc = await nats.connect(**options)
            except Exception as exc:  # nats-py raises its own errors and OSError subclasses
                self._nc = None
                raise DeliveryError(f"{self.sink.label}: {exc or type(exc).__name__}") from exc
        return self._nc

    async def deliver(self, record: dict[str, Any]) -> bool:
        nc = await self._connect()
        headers, body = cloudevent(record)
        try:
            await nc.publish(self.sink.channel, body, headers=headers)
            await nc.flush(timeout=max(1, round(self.sink.timeout)))
        except Exception as exc:
            await self._close_quietly()
            raise DeliveryError(f"{self.sink.label}: {exc or type(exc).__name__}") from exc
        return True

    async def _close_quietly(self) -> None:
        nc, self._nc = self._nc, None
        if nc is not None:
            try:
                await nc.close()
            except Exception:  # noqa: BLE001 - already broken
                pass

    async def close(self) -> None:
        await self._close_quietly()


def target(sink: Sink) -> Target:
    if sink.type == "nats":
        return NatsSink(sink)
    if sink.type == "notification":
        return NotificationSink(sink)
    return HttpSink(sink)
