"""``perpdex``: the command line of the exchange."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from exchange.core.errors import ExchangeError
from exchange.deposit_cli import register as register_deposit_command
from exchange.liquidation_cli import register as register_liquidation_commands
from settlement.gov_cli import register as register_gov_commands


def _node_config(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """``--config`` (tables ``[engine]``, ``[api]``, ``[node]``) and the command-line overrides."""
    from dataclasses import replace

    from exchange.node import NodeConfig

    config = NodeConfig.from_toml(args.config) if args.config else NodeConfig()
    if args.data_dir is not None:
        config = replace(config, engine=replace(config.engine, data_dir=args.data_dir))
    if args.api_port is not None:
        config = replace(config, api=replace(config.api, port=args.api_port))
    overrides = {
        k: v
        for k, v in (
            ("rpc_port", args.rpc_port),
            ("ws_port", args.ws_port),
            ("market_makers", args.makers),
            ("takers", args.takers),
            ("seed", args.seed),
        )
        if v is not None
    }
    return replace(config, **overrides) if overrides else config


def _engine_config(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    return _node_config(args).engine


def cmd_run(args: argparse.Namespace) -> int:
    """The main job: the whole exchange on this machine (``--demo-only``: the engine alone on
    a seeded in-memory order flow)."""
    if not args.demo_only:
        return _run_node(args)
    from exchange.demo import run_demo
    from exchange.engine.sequencer import Engine

    config = _engine_config(args)
    engine = Engine(config)
    rec = engine.recovery
    print(f"perpdex engine: data in {config.data_dir.resolve()}")
    print(
        f"recovered {rec.events_replayed} events after snapshot seq {rec.snapshot_seq} in "
        f"{rec.seconds * 1000:.1f} ms; state {rec.state_hash[:16]} at seq {rec.last_seq}"
    )
    try:
        seed = 7 if args.seed is None else args.seed
        report = run_demo(engine, rounds=args.rounds, seed=seed + rec.last_seq)
    except KeyboardInterrupt:
        print("\ninterrupted: every acknowledged command is in the journal")
        engine.close()
        return 130
    engine.snapshot()
    engine.close()
    print(
        f"\nthroughput: {report.commands} commands -> {report.events} durable events in "
        f"{report.seconds:.2f} s = {report.commands / report.seconds:,.0f} commands/s, "
        f"{report.events / report.seconds:,.0f} events/s (group commit)"
    )
    print(
        f"fills {report.fills}, rejections {report.rejections}; state hash "
        f"{report.state_hash} at seq {report.last_seq}"
    )
    print(f"verify with: perpdex replay {config.data_dir}")
    return 0


def _run_node(args: argparse.Namespace) -> int:
    """``perpdex run``: start the node, print where to look, run until Ctrl+C / SIGTERM."""
    import asyncio
    import logging

    from exchange.node import Node, NodeError

    if args.validator is not None:
        print(
            "perpdex run: NODE: --validator: expected the embedded cluster for now (the "
            "simulated oracle writes accounts directly), got a validator request",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for chatty in ("httpx", "solanaweb3"):  # one line per RPC request at INFO
        logging.getLogger(chatty).setLevel(logging.WARNING)
    config = _node_config(args)

    async def main() -> int:
        node = Node(config)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, node.request_stop)
        try:
            await node.start()
        except BaseException:
            await node.stop()
            raise
        _print_where_to_look(node)
        await node.wait()
        print("stopping: traders, oracle, settlement, API, engine, chain ...", flush=True)
        await node.stop()
        print(f"stopped: state hash {node.final_hash} at seq {node.final_seq}", flush=True)
        print(f"verify with: perpdex replay {config.data_dir}", flush=True)
        return 0

    try:
        return asyncio.run(main())
    except NodeError as exc:
        print(f"perpdex run: {exc.code}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a port in use, an unwritable data directory
        print(f"perpdex run: NODE: expected free ports and a writable data dir, got {exc}",
              file=sys.stderr)  # fmt: skip
        return 1


def _print_where_to_look(node) -> None:  # type: ignore[no-untyped-def]
    from exchange.demo import DEMO_MARKETS
    from settlement.onchain import LOCALNET_PROGRAM_ID

    e = node.endpoints
    print(
        f"perpdex node: engine data in {e.data_dir} (recovered state {node.recovered_hash} "
        f"at seq {node.recovered_seq})\n"
        f"  latency    {node.runner.cpu_latency.detail}  (PM QoS CPU-latency request)\n"
        f"  API        {e.api_url}  (OpenAPI {e.api_url}/openapi.json, websocket {e.ws_url})\n"
        f"  metrics    {e.metrics_url}\n"
        f"  Solana     RPC {e.rpc_url}, PubSub {e.rpc_ws_url}; clearing program "
        f"{LOCALNET_PROGRAM_ID}\n"
        f"  markets    {', '.join(f'{m.market_id}={m.symbol}' for m in DEMO_MARKETS)}\n"
        f"  traders    "
        + ", ".join(f"{name} (owner {owner})" for name, owner in node.wallet_names())
        + f"\n  endpoints  {e.data_dir}/node.json; verify the journal: perpdex replay "
        f"{e.data_dir}\nperpdex ready (Ctrl+C stops)",
        flush=True,
    )


def cmd_replay(args: argparse.Namespace) -> int:
    """Verify a data directory's journal and print the state hash it folds to."""
    import time

    from exchange.engine.journal import Journal
    from perp.clearinghouse import Clearinghouse

    if not (args.data_dir / "journal.sqlite").is_file():
        print(
            f"replay: expected a data directory with journal.sqlite, got {args.data_dir}",
            file=sys.stderr,
        )
        return 2
    journal = Journal.for_data_dir(args.data_dir)
    started = time.perf_counter()
    core = Clearinghouse()  # the fold needs no config: market parameters are journaled
    snapshots = journal.snapshot_hashes(args.upto)
    count = 0
    checked = 0
    if 0 in snapshots:  # a snapshot of the empty exchange
        if core.state_hash() != snapshots[0]:
            return _mismatch(0)
        checked += 1
    for event in journal.read(after_seq=0, upto_seq=args.upto):
        core.apply(event)
        count += 1
        expected = snapshots.get(event.seq)
        if expected is not None:
            if core.state_hash() != expected:
                return _mismatch(event.seq)
            checked += 1
    core.check_invariants()
    seconds = time.perf_counter() - started
    print(f"replayed {count} events in {seconds:.2f} s; {checked} snapshot hashes verified")
    print(f"last seq {core.next_seq - 1}")
    print(f"state hash {core.state_hash()}")
    journal.close()
    return 0


def localnet_programs(args: argparse.Namespace) -> list[tuple[str, Path]]:
    """``--bpf-program`` preloads, led by the clearing program at its localnet address unless
    ``--no-clearing-program`` (the same .so for the embedded cluster and the validator)."""
    programs = [(address, Path(path)) for address, path in args.bpf_program]
    if not args.no_clearing_program:
        from settlement.onchain import LOCALNET_PROGRAM_ID, PROGRAM_SO

        programs.insert(0, (str(LOCALNET_PROGRAM_ID), PROGRAM_SO))
    return programs


def cmd_localnet(args: argparse.Namespace) -> int:
    """Serve a local Solana cluster: solana-test-validator when on PATH (or asked for), else
    the embedded LiteSVM cluster; both with the same programs and accounts preloaded."""
    from localnet.server import run_embedded
    from localnet.validator import (
        VALIDATOR,
        ValidatorError,
        ValidatorOptions,
        ValidatorProcess,
        find_validator,
    )

    accounts = [(address, Path(path)) for address, path in args.account]
    programs = localnet_programs(args)
    use_validator = args.validator is not None or (
        not args.embedded and find_validator(VALIDATOR) is not None
    )
    if use_validator:
        try:
            options = ValidatorOptions(
                data_dir=args.data_dir,
                executable=args.validator or VALIDATOR,
                rpc_port=args.rpc_port,
                ws_port=args.ws_port,
                programs=programs,
                accounts=accounts,
                account_dirs=[Path(d) for d in args.account_dir],
            )
            with ValidatorProcess(options) as validator:
                print(
                    f"solana-test-validator healthy at {options.rpc_url} "
                    f"(ws port {options.rpc_port + 1}); log {options.log_path}",
                    flush=True,
                )
                validator.process.wait()
        except ValidatorError as exc:
            print(f"perpdex localnet: {exc.code}: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("stopped", flush=True)
        return 0
    print(
        f"embedded cluster at http://127.0.0.1:{args.rpc_port} "
        f"(ws port {args.ws_port or args.rpc_port + 1}); Ctrl+C stops it",
        flush=True,
    )
    run_embedded(
        rpc_port=args.rpc_port,
        ws_port=args.ws_port,
        accounts=[(a, str(p)) for a, p in accounts],
        account_dirs=args.account_dir,
        programs=[(a, str(p)) for a, p in programs],
    )
    return 0


def _mismatch(seq: int) -> int:
    print(f"replay: snapshot at seq {seq} does not match the fold of the journal", file=sys.stderr)
    return 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="perpdex", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run", help="start the exchange: cluster, program, oracle, engine, API, settlement, bots"
    )
    run.add_argument("--data-dir", type=Path, default=None, help="state directory (./data)")
    run.add_argument(
        "--config", type=Path, default=None, help="TOML file: [engine], [api], [node] tables"
    )
    run.add_argument("--seed", type=int, default=None, help="oracle walk and taker seed (7)")
    run.add_argument("--api-port", type=int, default=None, help="API port (8080; 0: any free)")
    run.add_argument("--rpc-port", type=int, default=None, help="Solana RPC port (8899)")
    run.add_argument("--ws-port", type=int, default=None, help="Solana PubSub port (rpc + 1)")
    run.add_argument("--makers", type=int, default=None, help="demo market makers (2)")
    run.add_argument("--takers", type=int, default=None, help="demo takers (1)")
    run.add_argument("--validator", metavar="EXECUTABLE", default=None, help=argparse.SUPPRESS)
    run.add_argument("--log-level", default="warning", choices=["debug", "info", "warning"])
    run.add_argument(
        "--demo-only",
        action="store_true",
        help="only the engine on a seeded in-memory order flow (no cluster, API or bots)",
    )
    run.add_argument("--rounds", type=int, default=400, help="--demo-only: flow rounds")
    run.set_defaults(func=cmd_run)
    replay = sub.add_parser("replay", help="verify a journal and print its state hash")
    replay.add_argument("data_dir", type=Path)
    replay.add_argument("--upto", type=int, default=None, help="stop after this seq")
    replay.set_defaults(func=cmd_replay)
    net = sub.add_parser("localnet", help="serve a local Solana cluster (embedded by default)")
    choice = net.add_mutually_exclusive_group()
    choice.add_argument(
        "--validator",
        metavar="EXECUTABLE",
        default=None,
        help="run this solana-test-validator instead of the embedded cluster",
    )
    choice.add_argument(
        "--embedded",
        action="store_true",
        help="the embedded cluster even if solana-test-validator is on PATH",
    )
    net.add_argument("--data-dir", type=Path, default=Path("data"), help="ledger and logs")
    net.add_argument("--rpc-port", type=int, default=8899)
    net.add_argument("--ws-port", type=int, default=None, help="default: rpc port + 1")
    net.add_argument(
        "--account",
        nargs=2,
        action="append",
        default=[],
        metavar=("ADDRESS", "FILE"),
        help="preload a `solana account` JSON file",
    )
    net.add_argument("--account-dir", action="append", default=[], metavar="DIR")
    net.add_argument(
        "--bpf-program",
        nargs=2,
        action="append",
        default=[],
        metavar=("ADDRESS", "SO"),
        help="preload a program",
    )
    net.add_argument(
        "--no-clearing-program",
        action="store_true",
        help="do not deploy settlement/program/perpdex_clearing.so at its localnet address",
    )
    net.set_defaults(func=cmd_localnet)
    register_liquidation_commands(sub)
    register_gov_commands(sub)
    register_deposit_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        code: int = args.func(args)
    except ExchangeError as exc:
        print(f"perpdex: {exc.code}: {exc}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
