"""`python -m localnet` starts a cluster that answers JSON-RPC and serves preloaded accounts."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

FIXTURE = (
    Path(__file__).parents[2] / "fixtures" / "oracle-accounts" / "pyth-pull-price-update-v2.json"
)
ROOT = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def call(url: str, method: str, params: list[Any]) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


def test_python_m_localnet_serves_preloaded_account() -> None:
    rpc_port, ws_port = free_port(), free_port()
    address = "11111111111111111111111111111112"  # --account ADDRESS overrides the file's pubkey
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "localnet",
            "--rpc-port",
            str(rpc_port),
            "--ws-port",
            str(ws_port),
            "--account",
            address,
            str(FIXTURE),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{rpc_port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if call(url, "getHealth", [])["result"] == "ok":
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        info = call(url, "getAccountInfo", [address, {"encoding": "base64"}])["result"]["value"]
        assert (
            info["owner"] == "rec5EKMGg6MxZYaMdyBfgwp4d5rB9T1VQH5pJv5LtFJ" and info["space"] == 134
        )
        with socket.create_connection(("127.0.0.1", ws_port), timeout=2):
            pass  # the PubSub port is listening too
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
