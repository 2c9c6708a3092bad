"""Serving the API on a real socket, for ``perpdex run`` and benchmarks."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from exchange.api.app import create_app
from exchange.api.config import ApiConfig
from exchange.engine.process import EngineProcess
from exchange.engine.sequencer import EngineRunner


@dataclass(slots=True)
class ApiServer:
    """A started API: its app, its base URL, and ``close`` (the engine stays the caller's)."""

    app: web.Application
    runner: web.AppRunner
    url: str

    async def close(self) -> None:
        """Close websockets, stop the engine port, release the socket."""
        await self.runner.cleanup()


async def start_api(config: ApiConfig, engine_runner: EngineRunner | EngineProcess) -> ApiServer:
    """Build the app and listen on ``config.host:config.port`` (port 0: any free port)."""
    app = create_app(config, engine_runner)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    host, port = runner.addresses[0][:2]
    return ApiServer(app, runner, f"http://{host}:{port}")
