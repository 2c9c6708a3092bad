"""The JSON-RPC method registry and the per-app state every handler receives."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web
from solders.keypair import Keypair

from localnet.cluster import EmbeddedCluster
from localnet.jsonrpc import SOLANA_CORE_VERSION


class RpcState:
    """Per-app state the handlers need besides the cluster."""

    def __init__(self, cluster: EmbeddedCluster, rpc_url: str, ws_url: str) -> None:
        self.cluster = cluster
        self.identity = Keypair().pubkey()
        self.rpc_url = rpc_url
        self.ws_url = ws_url


CLUSTER_KEY = web.AppKey("localnet_cluster", EmbeddedCluster)
STATE_KEY = web.AppKey("localnet_rpc_state", RpcState)

Handler = Callable[[RpcState, list[Any]], Any]
METHODS: dict[str, Handler] = {}


def method(name: str) -> Callable[[Handler], Handler]:
    """Register a handler for the JSON-RPC method `name`."""

    def register(fn: Handler) -> Handler:
        if name in METHODS:
            raise RuntimeError(f"JSON-RPC method {name!r} registered twice")
        METHODS[name] = fn
        return fn

    return register


def context(cluster: EmbeddedCluster) -> dict[str, Any]:
    return {"apiVersion": SOLANA_CORE_VERSION, "slot": cluster.slot}


def with_context(cluster: EmbeddedCluster, value: Any) -> dict[str, Any]:
    """The `{context, value}` wrapper of RpcResponse-shaped answers."""
    return {"context": context(cluster), "value": value}
