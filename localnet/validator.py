"""Run ``solana-test-validator`` instead of the embedded cluster, with the same preloads.

Kept small on purpose: the validator cannot be installed on our own machines, so this path
builds its command line (tested exactly), launches it with its log in the data directory,
waits for ``getHealth``, and shuts it down cleanly (SIGTERM, then SIGKILL after a grace).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

VALIDATOR = "solana-test-validator"


class ValidatorError(RuntimeError):
    code = "LOCALNET_VALIDATOR"


@dataclass(frozen=True, slots=True, kw_only=True)
class ValidatorOptions:
    """What to start: preloads as ``--bpf-program`` / ``--account`` / ``--account-dir``."""

    data_dir: Path
    executable: str = VALIDATOR
    host: str = "127.0.0.1"
    rpc_port: int = 8899
    ws_port: int | None = None  # the validator always uses rpc_port + 1
    faucet_port: int = 9900
    programs: Sequence[tuple[str, Path]] = field(default_factory=tuple)  # (address, .so)
    accounts: Sequence[tuple[str | None, Path]] = field(default_factory=tuple)  # (address, json)
    account_dirs: Sequence[Path] = field(default_factory=tuple)
    reset: bool = True

    def __post_init__(self) -> None:
        if self.ws_port is not None and self.ws_port != self.rpc_port + 1:
            raise ValidatorError(
                f"ws_port: expected {self.rpc_port + 1} (solana-test-validator serves PubSub on "
                f"rpc port + 1), got {self.ws_port}"
            )

    @property
    def ledger_dir(self) -> Path:
        return self.data_dir / "validator-ledger"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "validator.log"

    @property
    def rpc_url(self) -> str:
        return f"http://{self.host}:{self.rpc_port}"


def account_address(path: Path) -> str:
    """The ``pubkey`` recorded in a ``solana account --output json`` file."""
    try:
        pubkey = json.loads(path.read_text())["pubkey"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValidatorError(
            f"account file {path}: expected JSON with a pubkey, got {exc!r}"
        ) from exc
    if not isinstance(pubkey, str):
        raise ValidatorError(f"account file {path}: expected a string pubkey, got {pubkey!r}")
    return pubkey


def validator_command(options: ValidatorOptions) -> list[str]:
    """The exact argv that starts the validator with ``options``."""
    argv = [
        options.executable,
        "--ledger",
        str(options.ledger_dir),
        "--bind-address",
        options.host,
        "--rpc-port",
        str(options.rpc_port),
        "--faucet-port",
        str(options.faucet_port),
    ]
    if options.reset:
        argv.append("--reset")  # genesis flags are ignored on an existing ledger without it
    for program_address, so_path in options.programs:
        argv += ["--bpf-program", program_address, str(so_path)]
    for account, json_path in options.accounts:
        argv += ["--account", account or account_address(json_path), str(json_path)]
    for directory in options.account_dirs:
        argv += ["--account-dir", str(directory)]
    return argv


def find_validator(executable: str = VALIDATOR) -> str | None:
    """Path of the validator if it can be run here."""
    return shutil.which(executable)


def healthy(url: str, timeout_s: float = 1.0) -> bool:
    """Whether the node at ``url`` answers ``getHealth`` with ``ok``."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "getHealth"}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return bool(json.loads(response.read()).get("result") == "ok")
    except (OSError, ValueError, urllib.error.URLError):
        return False


class ValidatorProcess:
    """A started validator; use as a context manager or call ``stop``."""

    def __init__(self, options: ValidatorOptions, *, ready_timeout_s: float = 60.0) -> None:
        if find_validator(options.executable) is None:
            raise ValidatorError(
                f"validator: expected {options.executable!r} on PATH, got nothing; the embedded "
                "cluster needs no install (omit --validator)"
            )
        self.options = options
        options.data_dir.mkdir(parents=True, exist_ok=True)
        self._log = options.log_path.open("ab")
        self.process = subprocess.Popen(
            validator_command(options),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + ready_timeout_s
        while not healthy(options.rpc_url):
            if self.process.poll() is not None:
                self._log.close()
                raise ValidatorError(
                    f"validator: expected a healthy node, got exit code {self.process.returncode}"
                    f" (see {options.log_path})"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise ValidatorError(
                    f"validator: expected getHealth ok within {ready_timeout_s} s, got none "
                    f"(see {options.log_path})"
                )
            time.sleep(0.2)

    def stop(self, grace_s: float = 10.0) -> int:
        """SIGTERM, wait up to ``grace_s``, then SIGKILL; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode

    def __enter__(self) -> ValidatorProcess:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
