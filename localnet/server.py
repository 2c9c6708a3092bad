"""Start the embedded cluster: JSON-RPC over HTTP on `rpc_port`, PubSub websocket on `ws_port`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from solders.pubkey import Pubkey

from localnet.cluster import EmbeddedCluster, TimeSource
from localnet.pubsub import create_pubsub_app
from localnet.rpc import create_rpc_app

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_RPC_PORT = 8899


@dataclass
class Preload:
    """What to load at start, like solana-test-validator's --account / --bpf-program flags."""

    # `solana account --output json` files, optionally with an address overriding the file's
    accounts: list[Path | tuple[Pubkey | None, Path]] = field(default_factory=list)
    account_dirs: list[Path] = field(default_factory=list)  # like --account-dir
    programs: list[tuple[Pubkey, Path]] = field(default_factory=list)  # like --bpf-program

    def apply(self, cluster: EmbeddedCluster) -> None:
        for entry in self.accounts:
            address, path = entry if isinstance(entry, tuple) else (None, entry)
            cluster.load_account_file(path, address)
        for directory in self.account_dirs:
            cluster.load_account_dir(directory)
        for program_id, so in self.programs:
            cluster.add_program(program_id, so)


class LocalnetServer:
    """Both servers around one cluster. Use `async with LocalnetServer(...) as srv:`.

    Port 0 picks a free port; the chosen ports are in `rpc_port` / `ws_port` after `start()`.
    `ws_port=None` means rpc_port + 1 (the solana-test-validator convention).
    """

    def __init__(
        self,
        cluster: EmbeddedCluster | None = None,
        *,
        host: str = DEFAULT_HOST,
        rpc_port: int = DEFAULT_RPC_PORT,
        ws_port: int | None = None,
        preload: Preload | None = None,
        time_source: TimeSource | None = None,
        shutdown_timeout: float = 60.0,
    ) -> None:
        if cluster is None:
            cluster = (
                EmbeddedCluster()
                if time_source is None
                else EmbeddedCluster(time_source=time_source)
            )
        self.cluster = cluster
        if preload is not None:
            preload.apply(cluster)
        self.host = host
        self.rpc_port = rpc_port
        self.ws_port = ws_port if ws_port is not None else (rpc_port + 1 if rpc_port else 0)
        # seconds `stop()` lets open requests and websockets finish before cancelling them
        self.shutdown_timeout = shutdown_timeout
        self._runners: list[web.AppRunner] = []

    @property
    def rpc_url(self) -> str:
        return f"http://{self.host}:{self.rpc_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.ws_port}"

    async def _serve(self, app: web.Application, port: int) -> int:
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=self.shutdown_timeout)
        await runner.setup()
        self._runners.append(runner)
        site = web.TCPSite(runner, self.host, port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        return int(sockets[0].getsockname()[1]) if sockets else port

    async def start(self) -> None:
        pubsub = create_pubsub_app(self.cluster)
        self.ws_port = await self._serve(pubsub, self.ws_port)
        # the RPC app needs the final URLs for getClusterNodes; bind first on a fixed port
        rpc = create_rpc_app(self.cluster, rpc_url=self.rpc_url, ws_url=self.ws_url)
        self.rpc_port = await self._serve(rpc, self.rpc_port)
        from localnet.rpc import STATE_KEY

        rpc[STATE_KEY].rpc_url = self.rpc_url
        log.info("localnet: JSON-RPC %s, PubSub %s", self.rpc_url, self.ws_url)

    async def stop(self) -> None:
        for runner in reversed(self._runners):
            with contextlib.suppress(Exception):
                await runner.cleanup()
        self._runners.clear()

    async def __aenter__(self) -> LocalnetServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def _account_entry(
    entry: str | Path | tuple[str | None, str | Path],
) -> tuple[Pubkey | None, Path]:
    if isinstance(entry, tuple):
        address, path = entry
        return (Pubkey.from_string(address) if address else None), Path(path)
    return None, Path(entry)


async def serve_forever(server: LocalnetServer) -> None:
    async with server:
        await asyncio.Event().wait()


def run_embedded(
    host: str = DEFAULT_HOST,
    rpc_port: int = DEFAULT_RPC_PORT,
    ws_port: int | None = None,
    *,
    accounts: Sequence[str | Path | tuple[str | None, str | Path]] = (),
    account_dirs: Sequence[str | Path] = (),
    programs: Sequence[tuple[str, str | Path]] = (),
) -> None:
    """Block serving the embedded cluster (Ctrl-C stops it)."""
    preload = Preload(
        accounts=[_account_entry(a) for a in accounts],
        account_dirs=[Path(p) for p in account_dirs],
        programs=[(Pubkey.from_string(a), Path(p)) for a, p in programs],
    )
    server = LocalnetServer(host=host, rpc_port=rpc_port, ws_port=ws_port, preload=preload)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_forever(server))
