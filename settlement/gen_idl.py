"""Generate the Anchor IDL and the C header of the clearing program from ``settlement.spec``.

    python -m settlement.gen_idl            # write both files
    python -m settlement.gen_idl --check    # exit 1 if either file is out of date

The IDL is Anchor's legacy (pre-0.30) format, the one anchorpy 0.21 parses: camelCase names,
``"publicKey"``, ``isMut`` / ``isSigner``. The header declares the same layouts as packed C
structs with a static assertion on every offset and size, the discriminators as little-endian
``u64`` constants (compare with one load), the error codes, and per instruction the account
order with writable / signer masks.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from oracle_feeds import layouts as L
from settlement.spec import (
    ACCOUNT_DISCRIMINATOR_SIZE,
    MAX_FILLS_PER_BATCH,
    SELF_ALIGNED_TYPES,
    SPEC,
    VAULT_AUTHORITY_SEED,
    Array,
    Defined,
    Field,
    ProgramSpec,
    TypeRef,
    Vec,
    account_discriminator,
    account_size,
    camel,
    check_spec,
    event_discriminator,
    instruction_discriminator,
    offsets,
    size_of,
    snake,
)

ROOT = Path(__file__).resolve().parent.parent
IDL_PATH = ROOT / "idl" / "perpdex_clearing.json"
HEADER_PATH = ROOT / "settlement" / "program" / "include" / "perpdex_clearing_idl.h"

# ---------------------------------------------------------------- IDL (JSON)


def idl_type(type_: TypeRef) -> Any:
    """The IDL spelling of a type reference."""
    if isinstance(type_, str):
        return type_
    if isinstance(type_, Array):
        return {"array": [idl_type(type_.element), type_.length]}
    if isinstance(type_, Vec):
        return {"vec": idl_type(type_.element)}
    return {"defined": type_.name}


def _idl_fields(fields: tuple[Field, ...]) -> list[dict[str, Any]]:
    return [{"name": camel(x.name), "docs": [x.doc], "type": idl_type(x.type)} for x in fields]


def build_idl(spec: ProgramSpec) -> dict[str, Any]:
    """The legacy Anchor IDL as a JSON-ready dict."""
    check_spec(spec)
    return {
        "version": spec.version,
        "name": spec.name,
        "docs": ["perpdex clearing program (generated from settlement/spec.py)"],
        "constants": [
            {"name": c.name, "type": "u64" if c.value >= 0 else "i64", "value": str(c.value)}
            for c in spec.constants
        ],
        "instructions": [
            {
                "name": camel(ix.name),
                "docs": [ix.doc]
                + ([f"remaining accounts: {ix.remaining}"] if ix.remaining else []),
                "accounts": [
                    {
                        "name": camel(a.name),
                        "isMut": a.writable,
                        "isSigner": a.signer,
                        "docs": [a.doc],
                    }
                    for a in ix.accounts
                ],
                "args": [{"name": camel(a.name), "type": idl_type(a.type)} for a in ix.args],
            }
            for ix in spec.instructions
        ],
        "accounts": [
            {
                "name": a.name,
                "docs": [a.doc, f"PDA seeds: {a.seeds}"],
                "type": {"kind": "struct", "fields": _idl_fields(a.fields)},
            }
            for a in spec.accounts
        ],
        "types": [
            {
                "name": t.name,
                "docs": [t.doc],
                "type": {"kind": "struct", "fields": _idl_fields(t.fields)},
            }
            for t in spec.types
        ],
        "events": [
            {
                "name": e.name,
                "fields": [
                    {"name": camel(x.name), "type": idl_type(x.type), "index": False}
                    for x in e.fields
                ],
            }
            for e in spec.events
        ],
        "errors": [{"code": e.code, "name": e.name, "msg": e.msg} for e in spec.errors],
    }


def render_idl(spec: ProgramSpec) -> str:
    return json.dumps(build_idl(spec), indent=2) + "\n"


# ---------------------------------------------------------------- C header

_C_PRIMITIVES = {
    "u8": "uint8_t",
    "i8": "int8_t",
    "bool": "uint8_t",
    "u16": "uint16_t",
    "i16": "int16_t",
    "u32": "uint32_t",
    "i32": "int32_t",
    "u64": "uint64_t",
    "i64": "int64_t",
    "u128": "perpdex_u128",
    "i128": "perpdex_i128",
}


def upper(name: str) -> str:
    """``MarketStatusChanged`` / ``settle_fills`` -> ``MARKET_STATUS_CHANGED`` / ``SETTLE_FILLS``."""
    return snake(name).upper() if name[:1].isupper() else name.upper()


def _c_decl(type_: TypeRef, name: str) -> str:
    if isinstance(type_, str):
        if type_ == "publicKey":
            return f"uint8_t {name}[32]"
        return f"{_C_PRIMITIVES[type_]} {name}"
    if isinstance(type_, Array):
        return _c_decl(type_.element, f"{name}[{type_.length}]")
    if isinstance(type_, Defined):
        return f"perpdex_{type_.name} {name}"
    raise ValueError(f"a vec has no C declaration, got {type_!r}")


def _u64_le(data: bytes) -> str:
    return f"0x{int.from_bytes(data, 'little'):016x}ULL"


def _struct_lines(
    spec: ProgramSpec,
    c_name: str,
    fields: tuple[Field, ...],
    *,
    discriminator: bool,
    doc: str,
    trailing_vec: Field | None = None,
    aligned: bool = False,
) -> list[str]:
    start = ACCOUNT_DISCRIMINATOR_SIZE if discriminator else 0
    # aligned(8): accounts start 8-aligned in the runtime's input and every field sits at a
    # multiple of its own alignment (check_spec), so clang may use whole-word loads instead of
    # the byte-by-byte ones a packed (alignment 1) struct forces.
    attributes = "packed, aligned(8)" if aligned else "packed"
    lines = [f"/* {doc} */", f"typedef struct __attribute__(({attributes})) {c_name} {{"]
    if discriminator:
        lines.append("    uint64_t discriminator; /* offset 0 */")
    placed = offsets(spec, fields, start)
    for fld, at in placed:
        lines.append(f"    {_c_decl(fld.type, fld.name)}; /* offset {at}: {fld.doc} */")
    size = start + sum(size_of(spec, x.type) for x, _ in placed)
    if trailing_vec is not None:
        assert isinstance(trailing_vec.type, Vec)
        element = trailing_vec.type.element
        lines.append(f"    uint32_t {trailing_vec.name}_len; /* offset {size}: element count */")
        lines.append(f"    {_c_decl(element, trailing_vec.name + '[]')}; /* {trailing_vec.doc} */")
        size += 4
    lines.append(f"}} {c_name};")
    if discriminator:
        lines.append(f'_Static_assert(__builtin_offsetof({c_name}, discriminator) == 0, "layout");')
    for fld, at in placed:
        lines.append(f'_Static_assert(__builtin_offsetof({c_name}, {fld.name}) == {at}, "layout");')
    if trailing_vec is not None:
        lines.append(
            f"_Static_assert(__builtin_offsetof({c_name}, {trailing_vec.name}_len) == {size - 4}, "
            '"layout");'
        )
    lines.append(f'_Static_assert(sizeof({c_name}) == {size}, "size");')
    lines.append("")
    return lines


def render_header(spec: ProgramSpec) -> str:
    """The C header text."""
    check_spec(spec)
    out = [
        "/* Generated by `python -m settlement.gen_idl` from settlement/spec.py: do not edit. */",
        "#ifndef PERPDEX_CLEARING_IDL_H",
        "#define PERPDEX_CLEARING_IDL_H",
        "",
        "/* The program gets its fixed-width types from the SDK (perpdex_sol.h); host builds",
        " * (tests through ctypes, layout checks) from the C library. */",
        "#ifndef PERPDEX_SOL_H",
        "#include <stdint.h>",
        "#endif",
        "",
        "/* 128-bit fields sit at 8-aligned offsets (the spec's layout rule), not 16: the types say",
        " * so, and a pointer to such a field is a valid pointer to them. */",
        "typedef __int128 perpdex_i128 __attribute__((aligned(8)));",
        "typedef unsigned __int128 perpdex_u128 __attribute__((aligned(8)));",
        "/* Instruction args are Borsh (packed) and may embed an aligned(8) account type at any",
        " * offset; the static assertions below pin every offset, so gcc's note is noise. */",
        "#if defined(__GNUC__) && !defined(__clang__)",
        '#pragma GCC diagnostic ignored "-Wpacked-not-aligned"',
        "#endif",
        "",
        "/* ------------------------------------------------------------ constants */",
    ]
    for c in spec.constants:
        suffix = "ULL" if c.value >= 0 else "LL"
        out.append(f"#define PERPDEX_{c.name} {c.value}{suffix} /* {c.doc} */")
    out.append(f"#define PERPDEX_ERROR_BASE {spec.errors[0].code}u")
    out.append("")
    out.append("/* PDA seed prefixes (the first seed of each program address) */")
    for a in spec.accounts:
        out.append(f'#define PERPDEX_SEED_{upper(a.name)} "{a.seed_prefix}" /* {a.seeds} */')
        out.append(f"#define PERPDEX_SEED_{upper(a.name)}_LEN {len(a.seed_prefix)}")
    out.append(f'#define PERPDEX_SEED_VAULT_AUTHORITY "{VAULT_AUTHORITY_SEED}"')
    out.append(f"#define PERPDEX_SEED_VAULT_AUTHORITY_LEN {len(VAULT_AUTHORITY_SEED)}")
    out += ["", "/* ------------------------------------------------------------ error codes */"]
    for e in spec.errors:
        out.append(f"#define PERPDEX_ERR_{upper(e.name)} {e.code}u /* {e.msg} */")
    out += ["", "/* ------------------------------------------------------------ types */"]
    for t in spec.types:
        out += _struct_lines(
            spec,
            f"perpdex_{t.name}",
            t.fields,
            discriminator=False,
            doc=t.doc,
            aligned=t.name in SELF_ALIGNED_TYPES,
        )
    out += ["/* ------------------------------------------------------------ accounts */"]
    for a in spec.accounts:
        name = upper(a.name)
        out.append(
            f"#define PERPDEX_ACCOUNT_{name}_DISCRIMINATOR "
            f'{_u64_le(account_discriminator(a.name))} /* sha256("account:{a.name}")[:8] */'
        )
        out.append(f"#define PERPDEX_ACCOUNT_{name}_SIZE {account_size(spec, a)}")
        out += _struct_lines(
            spec,
            f"perpdex_{a.name}",
            a.fields,
            discriminator=True,
            doc=f"{a.doc} PDA: {a.seeds}",
            aligned=True,
        )
        out.insert(
            len(out) - 1,
            f'_Static_assert(sizeof(perpdex_{a.name}) == PERPDEX_ACCOUNT_{name}_SIZE, "size");',
        )
    out += ["/* ------------------------------------------------------------ instructions */"]
    for ix in spec.instructions:
        name = upper(ix.name)
        out.append(
            f"#define PERPDEX_IX_{name}_DISCRIMINATOR "
            f'{_u64_le(instruction_discriminator(ix.name))} /* sha256("global:{ix.name}")[:8] */'
        )
        out.append(f"#define PERPDEX_IX_{name}_NUM_ACCOUNTS {len(ix.accounts)}")
        writable = sum(1 << i for i, a in enumerate(ix.accounts) if a.writable)
        signer = sum(1 << i for i, a in enumerate(ix.accounts) if a.signer)
        out.append(f"#define PERPDEX_IX_{name}_WRITABLE_MASK 0x{writable:x}u")
        out.append(f"#define PERPDEX_IX_{name}_SIGNER_MASK 0x{signer:x}u")
        for i, meta in enumerate(ix.accounts):
            flags = ("writable " if meta.writable else "") + ("signer" if meta.signer else "")
            out.append(
                f"#define PERPDEX_IX_{name}_ACC_{meta.name.upper()} {i} /* {flags.strip()} */"
            )
        fixed = tuple(x for x in ix.args if not isinstance(x.type, Vec))
        vec = next((x for x in ix.args if isinstance(x.type, Vec)), None)
        out += _struct_lines(
            spec,
            f"perpdex_{ix.name}_args",
            fixed,
            discriminator=True,
            doc=f"instruction data of {ix.name}: {ix.doc}"
            + (f" Remaining accounts: {ix.remaining}." if ix.remaining else ""),
            trailing_vec=vec,
        )
    out += ["/* ------------------------------------------------------------ events */"]
    for ev in spec.events:
        name = upper(ev.name)
        out.append(
            f"#define PERPDEX_EVENT_{name}_DISCRIMINATOR "
            f'{_u64_le(event_discriminator(ev.name))} /* sha256("event:{ev.name}")[:8] */'
        )
        out += _struct_lines(
            spec, f"perpdex_{ev.name}Event", ev.fields, discriminator=True, doc=ev.doc
        )
    out += _oracle_lines()
    out += [
        f'_Static_assert(PERPDEX_MAX_FILLS_PER_BATCH == {MAX_FILLS_PER_BATCH}, "spec");',
        "",
        "#endif /* PERPDEX_CLEARING_IDL_H */",
        "",
    ]
    return "\n".join(out)


def _key_initializer(key: bytes) -> str:
    return "{{" + ", ".join(f"0x{b:02x}" for b in key) + "}}"


def _oracle_lines() -> list[str]:
    """Owner programs, sizes, discriminators and offsets of the oracle accounts the program
    reads, from ``oracle_feeds/layouts.py`` (the Python parsers' source of truth)."""
    return [
        "/* ------------------------------------------------------------ oracle layouts */",
        "/* From oracle_feeds/layouts.py. Offsets from the start of the account data. */",
        f"#define PERPDEX_PYTH_RECEIVER_PROGRAM_ID {_key_initializer(bytes(L.PYTH_RECEIVER_PROGRAM_ID))}"
        f" /* {L.PYTH_RECEIVER_PROGRAM_ID} */",
        f"#define PERPDEX_PYTH_PULL_SIZE {L.PYTH_PULL_SIZE}",
        f"#define PERPDEX_PYTH_PULL_DISCRIMINATOR {_u64_le(L.PYTH_PULL_DISCRIMINATOR)}",
        f"#define PERPDEX_PYTH_PULL_OFF_VERIFICATION {L.PYTH_PULL_OFF_VERIFICATION}",
        f"#define PERPDEX_PYTH_PULL_VERIFICATION_FULL {int(L.VerificationLevel.FULL)}",
        "/* Full verification: the price message starts right after the tag. */",
        f"#define PERPDEX_PYTH_PULL_OFF_FEED_ID {L.PYTH_PULL_OFF_VERIFICATION + 1}",
        f"#define PERPDEX_PYTH_PULL_OFF_PRICE {L.PYTH_PULL_OFF_VERIFICATION + 33}",
        f"#define PERPDEX_PYTH_PULL_OFF_CONF {L.PYTH_PULL_OFF_VERIFICATION + 41}",
        f"#define PERPDEX_PYTH_PULL_OFF_EXPONENT {L.PYTH_PULL_OFF_VERIFICATION + 49}",
        f"#define PERPDEX_PYTH_PULL_OFF_PUBLISH_TIME {L.PYTH_PULL_OFF_VERIFICATION + 53}",
        f"#define PERPDEX_PYTH_PULL_OFF_POSTED_SLOT {L.PYTH_PULL_OFF_VERIFICATION + 85}",
        f"#define PERPDEX_SWITCHBOARD_ON_DEMAND_PROGRAM_ID "
        f"{_key_initializer(bytes(L.SWITCHBOARD_ON_DEMAND_PROGRAM_ID))}"
        f" /* {L.SWITCHBOARD_ON_DEMAND_PROGRAM_ID} */",
        f"#define PERPDEX_SB_ON_DEMAND_SIZE {L.SB_ON_DEMAND_SIZE}",
        f"#define PERPDEX_SB_ON_DEMAND_DISCRIMINATOR {_u64_le(L.SB_ON_DEMAND_DISCRIMINATOR)}",
        f"#define PERPDEX_SB_ON_DEMAND_DECIMALS {L.SB_ON_DEMAND_DECIMALS}",
        f"#define PERPDEX_SB_OFF_RESULT_VALUE {L.SB_OFF_RESULT}",
        f"#define PERPDEX_SB_OFF_RESULT_STD_DEV {L.SB_OFF_RESULT + 16}",
        f"#define PERPDEX_SB_OFF_MIN_SAMPLE_SIZE {L.SB_OFF_MIN_SAMPLE_SIZE}",
        f"#define PERPDEX_SB_OFF_NUM_SAMPLES {L.SB_OFF_NUM_SAMPLES}",
        f"#define PERPDEX_SB_OFF_RESULT_SLOT {L.SB_OFF_RESULT_SLOT}",
        "",
    ]


# ---------------------------------------------------------------- CLI


def outputs(spec: ProgramSpec = SPEC) -> dict[Path, str]:
    """Every generated file with its expected content."""
    return {IDL_PATH: render_idl(spec), HEADER_PATH: render_header(spec)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m settlement.gen_idl", description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if a file is out of date")
    args = parser.parse_args(argv)
    stale = []
    for path, text in outputs().items():
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(path)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        names = ", ".join(str(p.relative_to(ROOT)) for p in stale)
        print(f"out of date: {names} (run python -m settlement.gen_idl)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
