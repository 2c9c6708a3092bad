"""The IDL and the C header come from one description and agree byte for byte.

anchorpy (the client the settlement service uses) parses the IDL and encodes instructions /
decodes accounts; every byte it produces or reads is checked against the offsets, sizes and
discriminators the C header declares (which the C compiler static-asserts).
"""

from __future__ import annotations

import random
import re
import shutil
import struct
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from anchorpy import Idl, Program, Provider, Wallet
from anchorpy.coder.event import _event_discriminator
from solana.rpc.async_api import AsyncClient
from solders.pubkey import Pubkey

from settlement import gen_idl
from settlement.spec import (
    SPEC,
    AccountSpec,
    Array,
    Defined,
    Field,
    SpecError,
    TypeRef,
    Vec,
    account_discriminator,
    check_spec,
    instruction_discriminator,
    snake,
)

HEADER = gen_idl.HEADER_PATH.read_text()
OFFSETS: dict[str, dict[str, int]] = {}
for _struct, _field, _at in re.findall(r"__builtin_offsetof\((\w+), (\w+)\) == (\d+)", HEADER):
    OFFSETS.setdefault(_struct, {})[_field] = int(_at)
SIZES = {name: int(size) for name, size in re.findall(r"sizeof\((\w+)\) == (\d+)", HEADER)}
DEFINES = {
    name: int(value, 16) for name, value in re.findall(r"#define (\w+) (0x[0-9a-f]+)", HEADER)
}

_FORMATS = {"u8": "<B", "i8": "<b", "bool": "<?", "u16": "<H", "i16": "<h", "u32": "<I",
            "i32": "<i", "u64": "<Q", "i64": "<q"}  # fmt: skip


@pytest.fixture(scope="module")
def program() -> Program:
    idl = Idl.from_json(gen_idl.IDL_PATH.read_text())
    # No request is sent: the provider only satisfies Program's constructor.
    provider = Provider(AsyncClient("http://127.0.0.1:1"), Wallet.dummy())
    return Program(idl, Pubkey.default(), provider)


def _struct_fields(name: str) -> tuple[Field, ...]:
    for t in SPEC.types:
        if t.name == name:
            return t.fields
    raise AssertionError(name)


def sample(type_: TypeRef, rng: random.Random) -> Any:
    """A value of ``type_`` as anchorpy takes and returns it (snake_case dicts for structs)."""
    if isinstance(type_, str):
        if type_ == "publicKey":
            return Pubkey(bytes(rng.randrange(256) for _ in range(32)))
        if type_ == "bool":
            return rng.random() < 0.5
        bits = int(re.sub(r"\D", "", type_))
        if type_.startswith("u"):
            return rng.choice([0, 1, 2**bits - 1, rng.randrange(2**bits)])
        return rng.choice(
            [
                -(2 ** (bits - 1)),
                -1,
                2 ** (bits - 1) - 1,
                rng.randrange(-(2 ** (bits - 1)), 2 ** (bits - 1)),
            ]
        )
    if isinstance(type_, Array):
        return [sample(type_.element, rng) for _ in range(type_.length)]
    if isinstance(type_, Vec):
        return [sample(type_.element, rng) for _ in range(3)]
    return {x.name: sample(x.type, rng) for x in _struct_fields(type_.name)}


def _as_plain(value: Any) -> Any:
    """anchorpy's decoded containers/dataclasses as plain dicts and lists."""
    if isinstance(value, Pubkey | int | bool | bytes):
        return value
    if isinstance(value, list):
        return [_as_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _as_plain(v) for k, v in value.items() if not k.startswith("_")}
    fields = getattr(value, "__dataclass_fields__", None) or vars(value)
    return {k: _as_plain(getattr(value, k)) for k in fields if not k.startswith("_")}


def c_size(type_: TypeRef) -> int:
    if isinstance(type_, str):
        return (
            32
            if type_ == "publicKey"
            else struct.calcsize(_FORMATS[type_])
            if type_ in _FORMATS
            else 16
        )
    if isinstance(type_, Array):
        return type_.length * c_size(type_.element)
    assert isinstance(type_, Defined)
    return SIZES[f"perpdex_{type_.name}"]


def write(buf: bytearray, at: int, type_: TypeRef, value: Any) -> None:
    """Place ``value`` at ``at`` using only the header's offsets and sizes."""
    if isinstance(type_, str):
        if type_ == "publicKey":
            buf[at : at + 32] = bytes(value)
        elif type_ in ("u128", "i128"):
            buf[at : at + 16] = value.to_bytes(16, "little", signed=type_ == "i128")
        else:
            struct.pack_into(_FORMATS[type_], buf, at, value)
    elif isinstance(type_, Array):
        step = c_size(type_.element)
        for i, item in enumerate(value):
            write(buf, at + i * step, type_.element, item)
    else:
        assert isinstance(type_, Defined)
        offsets = OFFSETS[f"perpdex_{type_.name}"]
        for x in _struct_fields(type_.name):
            write(buf, at + offsets[x.name], x.type, value[x.name])


def read(buf: bytes, at: int, type_: TypeRef) -> Any:
    """Read a value at ``at`` using only the header's offsets and sizes."""
    if isinstance(type_, str):
        if type_ == "publicKey":
            return Pubkey(bytes(buf[at : at + 32]))
        if type_ in ("u128", "i128"):
            return int.from_bytes(buf[at : at + 16], "little", signed=type_ == "i128")
        return struct.unpack_from(_FORMATS[type_], buf, at)[0]
    if isinstance(type_, Array):
        step = c_size(type_.element)
        return [read(buf, at + i * step, type_.element) for i in range(type_.length)]
    assert isinstance(type_, Defined)
    offsets = OFFSETS[f"perpdex_{type_.name}"]
    return {x.name: read(buf, at + offsets[x.name], x.type) for x in _struct_fields(type_.name)}


# ------------------------------------------------------------------ parse


def test_anchorpy_parses_the_idl_with_every_instruction_account_and_error(program: Program) -> None:
    assert [ix.name for ix in program.idl.instructions] == [
        "initialize", "createMarket", "deposit", "withdraw", "settleFills", "updateFunding",
        "setMarketStatus", "initializeGovernance", "proposeParamChange", "approve", "execute",
        "cancel", "guardianSetStatus", "liquidate", "processWithdrawal", "settleLiquidation",
        "depositInsurance",
    ]  # fmt: skip
    assert [a.name for a in program.idl.accounts] == [
        "Exchange", "Market", "User", "Governance", "Proposal",
    ]  # fmt: skip
    codes = {e.code: (e.name, e.msg) for e in program.idl.errors}
    assert codes == {e.code: (e.name, e.msg) for e in SPEC.errors}
    assert min(codes) == 6000 and len(codes) == len(SPEC.errors)
    deposit = next(ix for ix in program.idl.instructions if ix.name == "deposit")
    owner = next(a for a in deposit.accounts if a.name == "owner")
    assert owner.is_signer and owner.is_mut


def test_the_generated_files_are_up_to_date() -> None:
    for path, text in gen_idl.outputs().items():
        assert path.read_text() == text, f"{path} is stale: run python -m settlement.gen_idl"
    assert gen_idl.main(["--check"]) == 0


def test_the_header_compiles_and_its_static_asserts_hold(tmp_path: Path) -> None:
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    assert compiler, "a C compiler is needed (the program maths are tested through one)"
    source = tmp_path / "layout.c"
    source.write_text('#include "perpdex_clearing_idl.h"\nint main(void) { return 0; }\n')
    subprocess.run(
        [compiler, "-std=c11", "-Wall", "-Werror", "-I", str(gen_idl.HEADER_PATH.parent),
         str(source), "-o", str(tmp_path / "layout")],
        check=True,
    )  # fmt: skip


# ------------------------------------------------------------------ instructions


@pytest.mark.parametrize("ix", SPEC.instructions, ids=lambda ix: ix.name)
def test_anchorpy_instruction_bytes_sit_where_the_header_says(program: Program, ix: Any) -> None:
    rng = random.Random(ix.name)
    for _ in range(5):
        args = {a.name: sample(a.type, rng) for a in ix.args}
        data = program.coder.instruction.encode(ix.name, args)
        c_name = f"perpdex_{ix.name}_args"
        offsets = OFFSETS[c_name]
        assert (
            struct.unpack_from("<Q", data, offsets["discriminator"])[0]
            == DEFINES[f"PERPDEX_IX_{ix.name.upper()}_DISCRIMINATOR"]
        )
        assert data[:8] == instruction_discriminator(ix.name)
        expected_len = SIZES[c_name]
        for arg in ix.args:
            if isinstance(arg.type, Vec):
                at = offsets[f"{arg.name}_len"]
                assert struct.unpack_from("<I", data, at)[0] == len(args[arg.name])
                step = c_size(arg.type.element)
                for i, item in enumerate(args[arg.name]):
                    assert read(data, at + 4 + i * step, arg.type.element) == _as_plain(item)
                expected_len += step * len(args[arg.name])
            else:
                assert read(data, offsets[arg.name], arg.type) == _as_plain(args[arg.name])
        assert len(data) == expected_len


def test_the_account_tables_of_the_header_match_the_idl_flags() -> None:
    for ix in SPEC.instructions:
        name = ix.name.upper()
        writable = sum(1 << i for i, a in enumerate(ix.accounts) if a.writable)
        signer = sum(1 << i for i, a in enumerate(ix.accounts) if a.signer)
        assert DEFINES[f"PERPDEX_IX_{name}_WRITABLE_MASK"] == writable
        assert DEFINES[f"PERPDEX_IX_{name}_SIGNER_MASK"] == signer
        for i, a in enumerate(ix.accounts):
            assert re.search(rf"#define PERPDEX_IX_{name}_ACC_{a.name.upper()} {i}\b", HEADER)


# ------------------------------------------------------------------ accounts and events


@pytest.mark.parametrize("account", SPEC.accounts, ids=lambda a: a.name)
def test_anchorpy_decodes_account_bytes_built_from_the_header(
    program: Program, account: AccountSpec
) -> None:
    rng = random.Random(account.name)
    c_name = f"perpdex_{account.name}"
    for _ in range(5):
        buf = bytearray(SIZES[c_name])
        discriminator = DEFINES[f"PERPDEX_ACCOUNT_{snake(account.name).upper()}_DISCRIMINATOR"]
        struct.pack_into("<Q", buf, OFFSETS[c_name]["discriminator"], discriminator)
        assert bytes(buf[:8]) == account_discriminator(account.name)
        values = {x.name: sample(x.type, rng) for x in account.fields}
        for x in account.fields:
            write(buf, OFFSETS[c_name][x.name], x.type, values[x.name])
        decoded = program.coder.accounts.decode(bytes(buf))
        assert _as_plain(decoded) == _as_plain(values)


def test_event_discriminators_in_the_header_are_anchors() -> None:
    for event in SPEC.events:
        name = f"PERPDEX_EVENT_{snake(event.name).upper()}_DISCRIMINATOR"
        assert DEFINES[name] == int.from_bytes(_event_discriminator(event.name), "little")


# ------------------------------------------------------------------ spec rules


def test_check_spec_refuses_a_misaligned_account_field() -> None:
    exchange = SPEC.accounts[0]
    bad = replace(exchange, fields=(Field("flag", "u8", "x"), *exchange.fields))
    with pytest.raises(SpecError, match=r"Exchange.authority|expected an offset multiple"):
        check_spec(replace(SPEC, accounts=(bad, *SPEC.accounts[1:])))


def test_check_spec_refuses_a_vec_before_the_last_argument() -> None:
    settle = next(ix for ix in SPEC.instructions if ix.name == "settle_fills")
    bad = replace(settle, args=tuple(reversed(settle.args)))
    with pytest.raises(SpecError, match="a vec must be the last argument"):
        check_spec(replace(SPEC, instructions=(bad,)))
