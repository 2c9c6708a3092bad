"""The solana-test-validator path: its exact command line, and launch / health / shutdown
through `perpdex localnet` against a stand-in executable (the real validator cannot be
installed on these machines; the stand-in records its argv and answers getHealth)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from localnet.validator import ValidatorError, ValidatorOptions, validator_command

FIXTURES = Path(__file__).parents[2] / "fixtures" / "oracle-accounts"
PULL = FIXTURES / "pyth-pull-price-update-v2.json"


def test_command_line_carries_programs_accounts_ports_and_reset(tmp_path: Path) -> None:
    options = ValidatorOptions(
        data_dir=tmp_path,
        rpc_port=18899,
        faucet_port=19900,
        programs=[("Prog1111111111111111111111111111111111111111", tmp_path / "p.so")],
        accounts=[(None, PULL), ("Addr1111111111111111111111111111111111111111", PULL)],
        account_dirs=[tmp_path / "accounts"],
    )
    pull_address = json.loads(PULL.read_text())["pubkey"]
    assert validator_command(options) == [
        "solana-test-validator",
        "--ledger",
        str(tmp_path / "validator-ledger"),
        "--bind-address",
        "127.0.0.1",
        "--rpc-port",
        "18899",
        "--faucet-port",
        "19900",
        "--reset",
        "--bpf-program",
        "Prog1111111111111111111111111111111111111111",
        str(tmp_path / "p.so"),
        "--account",
        pull_address,
        str(PULL),
        "--account",
        "Addr1111111111111111111111111111111111111111",
        str(PULL),
        "--account-dir",
        str(tmp_path / "accounts"),
    ]


def test_websocket_port_must_follow_the_rpc_port(tmp_path: Path) -> None:
    with pytest.raises(ValidatorError, match="expected 8900"):
        ValidatorOptions(data_dir=tmp_path, rpc_port=8899, ws_port=9000)


def test_account_file_without_pubkey_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    options = ValidatorOptions(data_dir=tmp_path, accounts=[(None, bad)])
    with pytest.raises(ValidatorError, match="expected JSON with a pubkey"):
        validator_command(options)


STAND_IN = """#!{python}
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
argv = sys.argv[1:]
open({record!r}, "w").write(json.dumps(argv))
port = int(argv[argv.index("--rpc-port") + 1])
class H(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        body = json.dumps({{"jsonrpc": "2.0", "id": 1, "result": "ok"}}).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body)))
        self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
HTTPServer(("127.0.0.1", port), H).serve_forever()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_perpdex_localnet_launches_health_checks_and_stops_the_validator(tmp_path: Path) -> None:
    # Arrange: a stand-in validator on PATH.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "argv.json"
    exe = bin_dir / "solana-test-validator"
    exe.write_text(STAND_IN.format(python=sys.executable, record=str(record)))
    exe.chmod(0o755)
    port = _free_port()
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    # Act: found on PATH, so `perpdex localnet` chooses it.
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "exchange.cli",
            "localnet",
            "--data-dir",
            str(tmp_path / "d"),
            "--rpc-port",
            str(port),
            "--account",
            "",
            str(PULL),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    # Assert: healthy, logging to the data dir, launched with our argv; stops cleanly.
    assert "solana-test-validator healthy" in line and "validator.log" in line
    argv = json.loads(record.read_text())
    assert argv[argv.index("--rpc-port") + 1] == str(port) and "--reset" in argv
    pull_address = json.loads(PULL.read_text())["pubkey"]
    assert argv[argv.index("--account") + 1 : argv.index("--account") + 3] == [
        pull_address,
        str(PULL),
    ]
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0


def test_asking_for_a_missing_validator_is_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "exchange.cli",
            "localnet",
            "--validator",
            str(tmp_path / "no-such-validator"),
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "expected" in result.stderr and "on PATH" in result.stderr


def test_perpdex_localnet_embedded_serves_and_stops(tmp_path: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "exchange.cli",
            "localnet",
            "--embedded",
            "--rpc-port",
            str(port),
            "--ws-port",
            str(_free_port()),
            "--account",
            "",
            str(PULL),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        from localnet.validator import healthy

        deadline = time.monotonic() + 60
        while not healthy(f"http://127.0.0.1:{port}"):
            assert proc.poll() is None, "embedded cluster exited"
            assert time.monotonic() < deadline, "embedded cluster never became healthy"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
