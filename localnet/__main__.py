"""`python -m localnet`: serve the embedded LiteSVM cluster (JSON-RPC + PubSub)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from localnet.server import DEFAULT_HOST, DEFAULT_RPC_PORT, run_embedded


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m localnet", description=__doc__)
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--rpc-port", type=int, default=DEFAULT_RPC_PORT)
    parser.add_argument("--ws-port", type=int, default=None, help="default: rpc port + 1")
    parser.add_argument(
        "--account",
        nargs=2,
        action="append",
        default=[],
        metavar=("ADDRESS", "FILE"),
        help="preload a `solana account --output json` file at ADDRESS",
    )
    parser.add_argument("--account-dir", action="append", default=[], metavar="DIR")
    parser.add_argument(
        "--bpf-program",
        nargs=2,
        action="append",
        default=[],
        metavar=("ADDRESS", "SO"),
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    run_embedded(
        args.host,
        args.rpc_port,
        args.ws_port,
        accounts=[(a, f) for a, f in args.account],
        account_dirs=args.account_dir,
        programs=[(a, p) for a, p in args.bpf_program],
    )


if __name__ == "__main__":
    main()
