"""A bounded soak of mixed clients: starting, attaching, cancelling, connecting and dropping
WebSockets, one stalled reader. Afterwards nothing leaks and every healthy watcher saw exactly
one `complete` for every run it watched."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import random
import socket
import tracemalloc
from collections import defaultdict
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.conftest import SettingsFactory
from tests.live_server import LiveServer

API = "/api/v1/demo"
SOAK_SECONDS = 4.0
SERVER_TASK_PREFIXES = ("run-", "launch-", "cancel-", "ws-", "executor-events-", "local-run-")


def _server_tasks() -> list[str]:
    return sorted(
        task.get_name()
        for task in asyncio.all_tasks()
        if task.get_name().startswith(SERVER_TASK_PREFIXES)
    )


class Watcher:
    """A healthy client that reads everything until told to stop."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seen: set[str] = set()
        self.completes: dict[str, int] = defaultdict(int)
        self.progressed = asyncio.Event()

    def settled(self) -> bool:
        return all(self.completes[run_id] for run_id in self.seen)

    async def wait_settled(self) -> None:
        while not self.settled():
            self.progressed.clear()
            await self.progressed.wait()

    async def run(self, stop: asyncio.Event) -> None:
        async with connect(self.url, max_size=None) as ws:
            while not stop.is_set():
                try:
                    async with asyncio.timeout(0.5):
                        frame = json.loads(await ws.recv())
                except TimeoutError:
                    continue
                if frame["type"] == "snapshot" or frame["run_id"] is None:
                    continue
                self.seen.add(frame["run_id"])
                if frame["type"] == "complete":
                    self.completes[frame["run_id"]] += 1
                self.progressed.set()


async def _starter(client: httpx.AsyncClient, stop: asyncio.Event, rng: random.Random) -> None:
    while not stop.is_set():
        response = await client.post(f"{API}/run", json={"batch_count": rng.randint(1, 4)})
        assert response.status_code in (200, 202), response.text
        body = response.json()
        if body["cancel_token"] and rng.random() < 0.4:
            wrong = await client.delete(f"{API}/cancel", headers={"X-Cancel-Token": "guess"})
            assert wrong.status_code in (403, 404)
            right = await client.delete(
                f"{API}/cancel", headers={"X-Cancel-Token": body["cancel_token"]}
            )
            assert right.status_code in (200, 404)
        await asyncio.sleep(rng.uniform(0, 0.2))  # pacing of a person clicking


async def _dropper(url: str, stop: asyncio.Event, rng: random.Random) -> None:
    while not stop.is_set():
        async with connect(url) as ws:
            for _ in range(rng.randint(1, 3)):
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.3):
                        await ws.recv()


async def _poller(client: httpx.AsyncClient, stop: asyncio.Event) -> None:
    while not stop.is_set():
        for path in ("/status", "/active", "/history?limit=5"):
            assert (await client.get(f"{API}{path}")).status_code == 200
        await asyncio.sleep(0.05)  # pacing of a dashboard


@pytest.mark.slow(6)
async def test_soak_of_mixed_clients_leaks_nothing(
    make_settings: SettingsFactory, start_server: Any
) -> None:
    settings = make_settings(demo_generate_seconds=0.05, demo_analyze_seconds=0.05)
    server: LiveServer = await start_server(settings)
    services = server.app.state.services
    rng = random.Random(7)
    gc.collect()
    tracemalloc.start()
    baseline = tracemalloc.get_traced_memory()[0]

    stalled_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    stalled_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    stalled_sock.connect(("127.0.0.1", server.port))
    # It reads nothing, so it never reads the server's answer to its close either: its close
    # gives up after `close_timeout` and drops the connection (the library's default is 10 s).
    stalled = await connect(server.ws_url, sock=stalled_sock, max_queue=1, close_timeout=0.5)

    stop_load, stop_watching = asyncio.Event(), asyncio.Event()
    watchers = [Watcher(server.ws_url) for _ in range(5)]
    async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as client:
        watching = [asyncio.create_task(w.run(stop_watching)) for w in watchers]
        load = [asyncio.create_task(_starter(client, stop_load, rng)) for _ in range(3)]
        load += [asyncio.create_task(_dropper(server.ws_url, stop_load, rng)) for _ in range(4)]
        load.append(asyncio.create_task(_poller(client, stop_load)))
        await asyncio.sleep(SOAK_SECONDS)  # the soak's length, not a stand-in for an event
        stop_load.set()
        await asyncio.gather(*load)

        # The last run finishes on its own; every watcher must see its completion.
        async with asyncio.timeout(30):
            await asyncio.gather(*(watcher.wait_settled() for watcher in watchers))
        stop_watching.set()
        await asyncio.gather(*watching)
        history = (await client.get(f"{API}/history")).json()

    await stalled.close()
    async with asyncio.timeout(10):
        await services.broadcaster.wait_for_clients(lambda count: count == 0)

    assert history, "the soak started no run"
    for watcher in watchers:
        for run_id in watcher.seen:
            assert watcher.completes[run_id] == 1, (run_id, dict(watcher.completes))
    assert await services.manager.get_active() is None
    assert _server_tasks() == []
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - baseline
    tracemalloc.stop()
    assert grown < 8 * 1024 * 1024, f"{grown} bytes still held after the soak"
