"""``perpdex gov``: propose, approve, execute and cancel risk-parameter changes on the clearing
program, set a stricter market status as the guardian, and list or show proposals.

Keys are solana CLI keypair files (a JSON array of the 64 secret-key bytes); the key given
with ``--keypair`` signs and pays. A refusal by the program is printed with its IDL error
name, code and message (``NotCouncilMember (6051): signer: expected a Governance council
key``) and exits with status 2; a failure to reach the cluster exits with 1.

The library half (``GovClient``) is what the command line, the tests and the main job use.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import datetime as dt
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, TextIO

from anchorpy import Program
from anchorpy.error import ProgramError
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solana.rpc.core import RPCException
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.transaction import Transaction

from settlement.errors import SettlementError
from settlement.gov_watcher import MARKET_STATUS_NAMES, GovernanceSnapshot, read_snapshot
from settlement.governance import (
    GLOBAL_TARGET,
    approve_ix,
    cancel_ix,
    execute_ix,
    global_params_of,
    governance_pda,
    guardian_set_status_ix,
    proposal_pda,
    propose_ix,
    risk_params_of,
)
from settlement.onchain import (
    CONFIRMED_OPTS,
    LOCALNET_PROGRAM_ID,
    ClearingAddresses,
    clearing_program,
)
from settlement.spec import TYPES

DEFAULT_RPC_URL: Final = "http://127.0.0.1:8899"
#: RiskParams fields ``--set`` may change (``margin_tiers`` has its own option).
SCALAR_RISK_FIELDS: Final = (
    "funding_cap_rate", "oracle_max_age_slots", "oracle_max_age_seconds", "max_position_base",
    "max_open_interest_base", "maker_fee_ppm", "taker_fee_ppm", "insurance_share_ppm",
    "oracle_max_confidence_ppm", "liquidation_fee_ppm", "max_leverage", "liquidator_share_ppm",
    "liquidation_buffer_ppm",
)  # fmt: skip
#: GlobalParams fields ``propose --global`` may change (one option each).
GLOBAL_FIELDS: Final = ("timelock_seconds", "max_leverage_cap", "escape_hatch_slots")
U64_MAX: Final = 2**64 - 1
#: Integer range of each RiskParams / GlobalParams field, from the program's description.
_BITS: Final = {"u8": 8, "u16": 16, "u32": 32, "u64": 64, "i32": -32, "i64": -64}
FIELD_RANGES: Final = {
    (struct.name, fld.name): (
        (0, 2 ** _BITS[fld.type] - 1)
        if _BITS[fld.type] > 0
        else (-(2 ** (-_BITS[fld.type] - 1)), 2 ** (-_BITS[fld.type] - 1) - 1)
    )
    for struct in TYPES
    if struct.name in ("RiskParams", "GlobalParams")
    for fld in struct.fields
    if isinstance(fld.type, str) and fld.type in _BITS
}


class GovCliError(SettlementError):
    """Bad input to a governance command (a key file, a value, an unknown proposal)."""

    code = "GOV_CLI"


class ProgramRefused(SettlementError):
    """The clearing program refused the transaction; ``name`` and ``error_code`` from the IDL."""

    code = "GOV_PROGRAM_REFUSED"

    def __init__(self, name: str, error_code: int, message: str) -> None:
        super().__init__(f"{name} ({error_code}): {message}")
        self.name = name
        self.error_code = error_code


def load_keypair(path: Path) -> Keypair:
    """A solana CLI keypair file: a JSON array of 64 bytes."""
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise GovCliError(f"keypair {path}: expected a readable JSON file, got {exc}") from exc
    if not (
        isinstance(raw, list)
        and len(raw) == 64
        and all(type(b) is int and 0 <= b < 256 for b in raw)
    ):
        raise GovCliError(f"keypair {path}: expected a JSON array of 64 bytes (solana CLI format)")
    try:
        return Keypair.from_bytes(bytes(raw))
    except ValueError as exc:
        raise GovCliError(f"keypair {path}: expected a valid ed25519 keypair, got {exc}") from exc


def write_keypair(path: Path, keypair: Keypair) -> None:
    """Write ``keypair`` in the solana CLI format (tests, provisioning)."""
    Path(path).write_text(json.dumps(list(bytes(keypair))))


def parse_value(text: str) -> int:
    """An integer field value; ``max`` is u64 max (the program's "no cap")."""
    if text == "max":
        return U64_MAX
    try:
        return int(text.replace("_", ""))
    except ValueError:
        raise GovCliError(f"value: expected an integer or 'max', got {text!r}") from None


def check_range(struct: str, name: str, value: int, option: str) -> int:
    """``value`` if it fits the on-chain type of ``struct.name``, else a ``GovCliError``."""
    low, high = FIELD_RANGES[(struct, name)]
    if not low <= value <= high:
        raise GovCliError(f"{option}: expected {name} in {low}..{high}, got {value}")
    return value


def apply_changes(
    risk: dict[str, Any], sets: Sequence[str], margin_tiers: str | None
) -> dict[str, Any]:
    """The current ``RiskParams`` with ``NAME=VALUE`` changes and, optionally, new margin
    tiers (a JSON list of ``[up_to_notional_quote, initial_ppm, maintenance_ppm]``; the
    count must stay, as the program requires)."""
    out = copy.deepcopy(risk)
    for item in sets:
        name, sep, value = item.partition("=")
        if not sep or name not in SCALAR_RISK_FIELDS:
            raise GovCliError(
                f"--set: expected NAME=VALUE with NAME in {SCALAR_RISK_FIELDS}, got {item!r}"
            )
        out[name] = check_range("RiskParams", name, parse_value(value), "--set")
    if margin_tiers is not None:
        try:
            tiers = json.loads(margin_tiers.replace('"max"', str(U64_MAX)))
        except ValueError as exc:
            raise GovCliError(f"--margin-tiers: expected JSON, got {exc}") from exc
        if not (
            isinstance(tiers, list)
            and all(
                isinstance(t, list) and len(t) == 3 and all(type(v) is int for v in t)
                for t in tiers
            )
        ):
            raise GovCliError(
                f"--margin-tiers: expected [[bound, initial_ppm, maintenance_ppm], ...], got {margin_tiers!r}"
            )
        if len(tiers) != out["num_margin_tiers"]:
            raise GovCliError(
                f"--margin-tiers: expected {out['num_margin_tiers']} tiers (the count stays), got {len(tiers)}"
            )
        for row, (bound, initial, maintenance) in zip(out["margin_tiers"], tiers, strict=False):
            row.update(up_to_notional_quote=bound, initial_ppm=initial, maintenance_ppm=maintenance)
    return out


def _idl_error_names(program: Program) -> dict[int, tuple[str, str]]:
    return {e.code: (e.name, e.msg or "") for e in (program.idl.errors or [])}


class GovClient:
    """Governance transactions and reads over one RPC endpoint."""

    def __init__(self, client: AsyncClient, payer: Keypair, program_id: Pubkey) -> None:
        self.client = client
        self.payer = payer
        self.program = clearing_program(client, payer, program_id)
        self.program_id = program_id
        self._errors = _idl_error_names(self.program)

    async def send(self, instructions: list[Instruction], signers: Sequence[Keypair] = ()) -> str:
        """One transaction paid and signed by the payer (plus ``signers``), confirmed; a
        program refusal raises ``ProgramRefused`` with the IDL's name for its code."""
        blockhash = (await self.client.get_latest_blockhash(Confirmed)).value.blockhash
        keys = [self.payer, *[s for s in signers if s.pubkey() != self.payer.pubkey()]]
        tx = Transaction(keys, Message(instructions, self.payer.pubkey()), blockhash)
        try:
            sig = (await self.client.send_transaction(tx, opts=CONFIRMED_OPTS)).value
        except RPCException as exc:
            parsed = ProgramError.parse(
                exc.args[0], {c: m for c, (_, m) in self._errors.items()}, self.program_id
            )
            if parsed is not None and parsed.code in self._errors:
                name, message = self._errors[parsed.code]
                raise ProgramRefused(name, parsed.code, message) from exc
            raise
        await self.client.confirm_transaction(sig, Confirmed)
        return str(sig)

    async def fetch(self, name: str, address: Pubkey) -> Any:
        info = (await self.client.get_account_info(address, commitment=Confirmed)).value
        if info is None:
            raise GovCliError(f"{name} {address}: expected an account, got none")
        return self.program.coder.accounts.decode(bytes(info.data))

    async def governance(self) -> Any:
        return await self.fetch("governance", governance_pda(self.program_id)[0])

    async def proposal(self, proposal_id: int) -> Any:
        return await self.fetch(
            f"proposal {proposal_id}", proposal_pda(self.program_id, proposal_id)[0]
        )

    async def market_risk(self, market_index: int) -> dict[str, Any]:
        address = ClearingAddresses(self.program_id).market(market_index)[0]
        return risk_params_of(await self.fetch(f"market {market_index}", address))

    async def propose_market(self, market_index: int, risk: dict[str, Any]) -> int:
        """Propose new RiskParams for a market; returns the proposal id."""
        proposal_id = int((await self.governance()).next_proposal_id)
        await self.send([propose_ix(self.program, proposal_id=proposal_id, proposer=self.payer.pubkey(),
                                    market_index=market_index, risk=risk)])  # fmt: skip
        return proposal_id

    async def propose_global(
        self,
        timelock_seconds: int | None = None,
        max_leverage_cap: int | None = None,
        escape_hatch_slots: int | None = None,
    ) -> int:
        """Propose new GlobalParams: the values in force with the given ones changed (the
        program checks the bounds, and the pace at execution); returns the proposal id."""
        changes = {"timelock_seconds": timelock_seconds, "max_leverage_cap": max_leverage_cap,
                   "escape_hatch_slots": escape_hatch_slots}  # fmt: skip
        if all(v is None for v in changes.values()):
            raise GovCliError(
                "propose --global: expected at least one of --timelock-seconds, "
                "--max-leverage-cap, --escape-hatch-slots"
            )
        for name, value in changes.items():
            if value is not None:
                check_range("GlobalParams", name, value, f"--{name.replace('_', '-')}")
        governance = await self.governance()
        params = global_params_of(governance)
        params.update({name: value for name, value in changes.items() if value is not None})
        proposal_id = int(governance.next_proposal_id)
        await self.send([propose_ix(self.program, proposal_id=proposal_id, proposer=self.payer.pubkey(),
                                    global_params=params)])  # fmt: skip
        return proposal_id

    async def approve(self, proposal_id: int) -> str:
        return await self.send(
            [approve_ix(self.program, proposal_id=proposal_id, member=self.payer.pubkey())]
        )

    async def execute(self, proposal_id: int) -> str:
        proposal = await self.proposal(proposal_id)
        market = None
        if int(proposal.market_index) != GLOBAL_TARGET:
            market = ClearingAddresses(self.program_id).market(int(proposal.market_index))[0]
        return await self.send([execute_ix(self.program, proposal_id=proposal_id, market=market,
                                           exchange=market is None)])  # fmt: skip

    async def cancel(self, proposal_id: int) -> str:
        return await self.send(
            [cancel_ix(self.program, proposal_id=proposal_id, signer=self.payer.pubkey())]
        )

    async def guardian_status(self, market_index: int, status: int) -> str:
        market = ClearingAddresses(self.program_id).market(market_index)[0]
        return await self.send([guardian_set_status_ix(self.program, market=market,
                                                       guardian=self.payer.pubkey(), status=status)])  # fmt: skip

    async def snapshot(self, market_ids: Sequence[int] = ()) -> GovernanceSnapshot:
        return await read_snapshot(self.program, list(market_ids))


# ---------------------------------------------------------------- printing


def _when(unix_s: int) -> str:
    return dt.datetime.fromtimestamp(unix_s, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def print_list(snapshot: GovernanceSnapshot, out: TextIO, *, status: str | None) -> None:
    print(
        f"governance at slot {snapshot.slot}: council {len(snapshot.council)} keys, threshold "
        f"{snapshot.threshold}, timelock {snapshot.timelock_seconds} s, max leverage cap "
        f"{snapshot.max_leverage_cap}, escape hatch {snapshot.escape_hatch_slots} slots, "
        f"guardian {snapshot.guardian}",
        file=out,
    )
    print(
        f"{'id':>4}  {'target':<10} {'status':<10} {'approvals':<10} earliest execution", file=out
    )
    for p in snapshot.proposals:
        if status is not None and p.status_name != status:
            continue
        target = "global" if p.market_index == GLOBAL_TARGET else f"market {p.market_index}"
        approvals = f"{len(p.approvers(snapshot.council))}/{snapshot.threshold}"
        print(
            f"{p.id:>4}  {target:<10} {p.status_name:<10} {approvals:<10} "
            f"{_when(p.earliest_execution_unix_s)} ({p.earliest_execution_unix_s})",
            file=out,
        )


def _check_proposal_id(snapshot: GovernanceSnapshot, proposal_id: int) -> None:
    count = snapshot.next_proposal_id
    if not 0 <= proposal_id < count:
        known = f"ids 0..{count - 1}" if count else "none proposed yet"
        raise GovCliError(f"proposal: expected an existing id ({known}), got {proposal_id}")


def print_show(snapshot: GovernanceSnapshot, proposal_id: int, out: TextIO) -> None:
    _check_proposal_id(snapshot, proposal_id)
    p = snapshot.proposals[proposal_id]
    approvers = p.approvers(snapshot.council)
    print(f"proposal {p.id}: {p.status_name}", file=out)
    target = "global parameters" if p.market_index == GLOBAL_TARGET else f"market {p.market_index}"
    print(f"  target: {target}", file=out)
    print(f"  proposer: {p.proposer}", file=out)
    print(
        f"  approvals: {len(approvers)} of threshold {snapshot.threshold}: {', '.join(approvers)}",
        file=out,
    )
    print(f"  created: {_when(p.created_unix_s)} ({p.created_unix_s})", file=out)
    print(
        f"  earliest execution: {_when(p.earliest_execution_unix_s)} ({p.earliest_execution_unix_s})",
        file=out,
    )
    values = p.risk.to_json() if p.risk is not None else p.global_params
    current = snapshot.markets.get(p.market_index)
    before = current.risk.to_json() if current is not None else {}
    for name, value in (values or {}).items():
        note = f"   (now {before[name]})" if name in before and before[name] != value else ""
        print(f"  {name}: {value}{note}", file=out)


# ---------------------------------------------------------------- command line


def _client(args: argparse.Namespace) -> GovClient:
    payer = load_keypair(args.keypair) if getattr(args, "keypair", None) else Keypair()
    return GovClient(
        AsyncClient(args.rpc_url, commitment=Confirmed), payer, Pubkey.from_string(args.program_id)
    )


async def _run(args: argparse.Namespace, out: TextIO) -> int:
    gov = _client(args)
    try:
        action = args.gov_command
        if action == "propose":
            if args.global_params:
                if args.set or args.margin_tiers is not None or args.market is not None:
                    raise GovCliError(
                        "propose --global: expected --timelock-seconds/--max-leverage-cap/"
                        "--escape-hatch-slots only"
                    )
                proposal_id = await gov.propose_global(
                    args.timelock_seconds, args.max_leverage_cap, args.escape_hatch_slots
                )
            else:
                global_options = [f"--{n.replace('_', '-')}" for n in GLOBAL_FIELDS
                                  if getattr(args, n) is not None]  # fmt: skip
                if global_options:
                    raise GovCliError(f"propose: {', '.join(global_options)} needs --global")
                if args.market is None:
                    raise GovCliError("propose: expected --market INDEX or --global")
                risk = apply_changes(
                    await gov.market_risk(args.market), args.set, args.margin_tiers
                )
                proposal_id = await gov.propose_market(args.market, risk)
            proposal = await gov.proposal(proposal_id)
            print(f"proposed {proposal_id}: earliest execution {_when(int(proposal.earliest_execution_unix_s))} "
                  f"({int(proposal.earliest_execution_unix_s)})", file=out)  # fmt: skip
        elif action in ("approve", "execute", "cancel"):
            sig = await getattr(gov, action)(args.proposal_id)
            done = {"approve": "approved", "execute": "executed", "cancel": "cancelled"}[action]
            print(f"{done} {args.proposal_id}: {sig}", file=out)
        elif action == "guardian-status":
            status = MARKET_STATUS_NAMES.index(args.status)
            sig = await gov.guardian_status(args.market, status)
            print(f"market {args.market} status {args.status}: {sig}", file=out)
        elif action in ("list", "show"):
            markets = sorted(set(args.market or []))
            snapshot = await gov.snapshot(markets)
            if action == "show":
                _check_proposal_id(snapshot, args.proposal_id)
                market = snapshot.proposals[args.proposal_id].market_index
                if market != GLOBAL_TARGET and market not in snapshot.markets:
                    snapshot = await gov.snapshot([*markets, market])
            if args.json:
                body = snapshot.to_json()
                if action == "show":
                    body = {
                        "proposal": body["proposals"][args.proposal_id],
                        "markets": body["markets"],
                    }
                print(json.dumps(body, sort_keys=True), file=out)
            elif action == "list":
                print_list(snapshot, out, status=args.status)
            else:
                print_show(snapshot, args.proposal_id, out)
        return 0
    finally:
        await gov.client.close()


def cmd_gov(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run one ``perpdex gov`` command; exit status 0 ok, 1 input or RPC failure, 2 refused."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        return asyncio.run(_run(args, out))
    except ProgramRefused as exc:
        print(f"perpdex gov {args.gov_command}: refused by the program: {exc}", file=err)
        return 2
    except (GovCliError, SettlementError) as exc:
        print(f"perpdex gov {args.gov_command}: {exc.code}: {exc}", file=err)
        return 1
    except (RPCException, OSError) as exc:
        print(f"perpdex gov {args.gov_command}: RPC {args.rpc_url}: {exc!r}", file=err)
        return 1


def register(sub: Any) -> None:
    """Add ``perpdex gov ...`` to the top-level subparsers."""
    gov = sub.add_parser("gov", help="governance of risk parameters on the clearing program")
    actions = gov.add_subparsers(dest="gov_command", required=True)

    def common(p: argparse.ArgumentParser, *, signs: bool) -> None:
        p.add_argument(
            "--rpc-url", default=DEFAULT_RPC_URL, help=f"Solana JSON-RPC ({DEFAULT_RPC_URL})"
        )
        p.add_argument("--program-id", default=str(LOCALNET_PROGRAM_ID), help="clearing program")
        if signs:
            p.add_argument(
                "--keypair", type=Path, required=True, help="signer and fee payer (solana CLI JSON)"
            )
        p.set_defaults(func=cmd_gov)

    propose = actions.add_parser("propose", help="propose a change (council member)")
    common(propose, signs=True)
    propose.add_argument("--market", type=int, default=None, help="market index")
    propose.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                         help=f"a RiskParams field ({', '.join(SCALAR_RISK_FIELDS)}); 'max' = u64 max")  # fmt: skip
    propose.add_argument("--margin-tiers", default=None, metavar="JSON",
                         help='[[up_to_notional_quote, initial_ppm, maintenance_ppm], ...] ("max" allowed)')  # fmt: skip
    propose.add_argument(
        "--global", dest="global_params", action="store_true", help="a global change"
    )
    propose.add_argument("--timelock-seconds", type=int, default=None, help="global: timelock")
    propose.add_argument("--max-leverage-cap", type=int, default=None,
                         help="global: ceiling of every market's max_leverage")  # fmt: skip
    propose.add_argument("--escape-hatch-slots", type=int, default=None,
                         help="global: operator-silent slots before wallets withdraw on-chain "
                         "(150..1512000, at most x2 or /2 per change)")  # fmt: skip
    for name, what in (("approve", "approve (council member)"), ("execute", "execute (anyone, after "
                       "the timelock and threshold)"), ("cancel", "cancel (proposer or council)")):  # fmt: skip
        p = actions.add_parser(name, help=what)
        common(p, signs=True)
        p.add_argument("proposal_id", type=int)
    guardian = actions.add_parser(
        "guardian-status", help="make a market stricter at once (guardian)"
    )
    common(guardian, signs=True)
    guardian.add_argument("market", type=int)
    guardian.add_argument("status", choices=MARKET_STATUS_NAMES[2:])
    listing = actions.add_parser(
        "list", help="proposals with status, approvals, earliest execution"
    )
    common(listing, signs=False)
    listing.add_argument("--status", choices=["pending", "executed", "cancelled"], default=None)
    listing.add_argument(
        "--market", type=int, action="append", help="also show this market's values"
    )
    listing.add_argument("--json", action="store_true")
    show = actions.add_parser(
        "show", help="one proposal: approvals, timelock, values against the market's"
    )
    common(show, signs=False)
    show.add_argument("proposal_id", type=int)
    show.add_argument("--market", type=int, action="append", help=argparse.SUPPRESS)
    show.add_argument("--json", action="store_true")
