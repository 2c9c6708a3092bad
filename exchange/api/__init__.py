"""The market-maker API: REST + WebSocket over aiohttp, above the engine (``create_app``)."""
