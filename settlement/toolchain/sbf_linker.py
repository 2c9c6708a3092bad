"""Link clang-19 BPF relocatable objects into an SBPF v0 shared object the Solana loader accepts.

Stdlib only. The output layout follows what solana-sbpf's lenient (v0) ELF loader reads:

    ELF header, program headers, .text, .rodata, .dynamic, .dynsym, .dynstr, .rel.dyn,
    .shstrtab, section header table

with every allocated section at `sh_addr == sh_offset` (the VM maps it at 0x1_0000_0000 + offset).

- Internal calls are resolved here: the loader treats every `call` whose immediate is not -1 as
  pc-relative. clang's relocation target is `symbol + (imm + 1) * 8` for both named and
  section-symbol forms.
- Syscall calls keep imm -1 and get an `R_BPF_64_32` dynamic relocation naming the syscall; the
  loader writes the murmur3 hash of the name.
- Data addresses (`lddw` immediates, pointers in .rodata) are resolved at link time to their
  final virtual address, so no `R_BPF_64_RELATIVE` entry is needed.
- `callx`: clang puts the register in the dst field, SBPF v0 reads the immediate: copied over.

It rejects, naming the object, section, function and instruction: 32-bit ALU and jumps, atomics,
sign-extending loads and other non-v0 opcodes, unknown external symbols, writable sections,
over-long dynamic symbol names, missing or duplicate `entrypoint`.

CLI: `python -m settlement.toolchain.sbf_linker OUT.so IN.o...`
"""

from __future__ import annotations

import argparse
import struct
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

MM_PROGRAM_START = 0x1_0000_0000
INSN_SIZE = 8
DYNSYM_NAME_MAX = 63  # the loader reads at most 64 bytes including the terminating NUL
SECTION_NAME_MAX = 15

# ELF constants
EM_BPF = 247
ET_REL, ET_DYN = 1, 3
SHT_PROGBITS, SHT_SYMTAB, SHT_STRTAB, SHT_NOBITS, SHT_REL, SHT_DYNAMIC, SHT_DYNSYM = (
    1, 2, 3, 8, 9, 6, 11,
)  # fmt: skip
SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR = 0x1, 0x2, 0x4
SHN_UNDEF, SHN_ABS, SHN_COMMON = 0, 0xFFF1, 0xFFF2
STB_LOCAL, STB_GLOBAL, STB_WEAK = 0, 1, 2
STT_NOTYPE, STT_OBJECT, STT_FUNC, STT_SECTION = 0, 1, 2, 3
PT_LOAD, PT_DYNAMIC = 1, 2
PF_X, PF_W, PF_R = 1, 2, 4
DT_NULL, DT_STRTAB, DT_SYMTAB, DT_STRSZ, DT_SYMENT, DT_REL, DT_RELSZ, DT_RELENT = (
    0, 5, 6, 10, 11, 17, 18, 19,
)  # fmt: skip

# BPF relocation types (LLVM)
R_BPF_64_64 = 1  # lddw immediate
R_BPF_64_ABS64 = 2  # 64-bit data pointer
R_BPF_64_ABS32 = 3
R_BPF_64_NODYLD32 = 4
R_BPF_64_32 = 10  # call immediate

# Syscalls the runtime registers (Agave 2.x) that our programs may call.
KNOWN_SYSCALLS = frozenset(
    {
        "abort",
        "sol_panic_",
        "sol_log_",
        "sol_log_64_",
        "sol_log_pubkey",
        "sol_log_compute_units_",
        "sol_log_data",
        "sol_memcpy_",
        "sol_memmove_",
        "sol_memset_",
        "sol_memcmp_",
        "sol_sha256",
        "sol_keccak256",
        "sol_blake3",
        "sol_secp256k1_recover",
        "sol_create_program_address",
        "sol_try_find_program_address",
        "sol_invoke_signed_c",
        "sol_invoke_signed_rust",
        "sol_get_clock_sysvar",
        "sol_get_rent_sysvar",
        "sol_get_epoch_schedule_sysvar",
        "sol_get_fees_sysvar",
        "sol_get_stack_height",
        "sol_set_return_data",
        "sol_get_return_data",
        "sol_get_processed_sibling_instruction",
        "sol_remaining_compute_units",
    }
)
# Library calls clang emits for large or variable-size copies, bound to the syscalls with the
# same argument order (LLVM's memcpy/memset intrinsics never use the return value).
LIBCALL_ALIASES = {"memcpy": "sol_memcpy_", "memmove": "sol_memmove_", "memset": "sol_memset_"}

ALU64_OPS = {
    0x00: "add", 0x10: "sub", 0x20: "mul", 0x30: "div", 0x40: "or", 0x50: "and", 0x60: "lsh",
    0x70: "rsh", 0x80: "neg", 0x90: "mod", 0xA0: "xor", 0xB0: "mov", 0xC0: "arsh",
}  # fmt: skip
JMP_OPS = {
    0x00: "ja", 0x10: "jeq", 0x20: "jgt", 0x30: "jge", 0x40: "jset", 0x50: "jne", 0x60: "jsgt",
    0x70: "jsge", 0x80: "call", 0x90: "exit", 0xA0: "jlt", 0xB0: "jle", 0xC0: "jslt", 0xD0: "jsle",
}  # fmt: skip
LD_DW_IMM = 0x18
CALL_IMM = 0x85
CALL_REG = 0x8D
EXIT = 0x95
LE, BE = 0xD4, 0xDC
LDX_OK = {0x61: "ldxw", 0x69: "ldxh", 0x71: "ldxb", 0x79: "ldxdw"}
ST_OK = {0x62: "stw", 0x6A: "sth", 0x72: "stb", 0x7A: "stdw"}
STX_OK = {0x63: "stxw", 0x6B: "stxh", 0x73: "stxb", 0x7B: "stxdw"}


class LinkError(Exception):
    """A refusal to link, with a stable `code` and a message naming what is wrong."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"[{code}] {message}")
        self.code = code


# --------------------------------------------------------------------------- input objects
@dataclass
class Section:
    index: int
    name: str
    type: int
    flags: int
    offset: int
    size: int
    link: int
    info: int
    align: int
    entsize: int
    data: bytes


@dataclass
class Symbol:
    name: str
    value: int
    size: int
    bind: int
    type: int
    shndx: int


@dataclass
class ObjectFile:
    path: str
    sections: list[Section]
    symbols: list[Symbol]
    # relocations per target section index: (offset, type, symbol index)
    relocations: dict[int, list[tuple[int, int, int]]] = field(default_factory=dict)

    def function_at(self, shndx: int, offset: int) -> str:
        """Name of the function covering `offset` in section `shndx` (for error messages)."""
        best: Symbol | None = None
        for sym in self.symbols:
            covers = sym.shndx == shndx and sym.type == STT_FUNC
            covers = covers and sym.value <= offset < sym.value + max(sym.size, 1)
            if covers and (best is None or sym.value > best.value):
                best = sym
        return best.name if best is not None else "?"

    def where(self, shndx: int, offset: int) -> str:
        sec = self.sections[shndx]
        return (
            f"{self.path}: {sec.name}+{offset:#x} (in function `{self.function_at(shndx, offset)}`)"
        )


def _cstr(table: bytes, offset: int) -> str:
    end = table.index(b"\0", offset)
    return table[offset:end].decode("utf-8", "replace")


def read_object(data: bytes, path: str) -> ObjectFile:
    """Parse an ELF64 little-endian BPF relocatable object."""
    if len(data) < 64 or data[:4] != b"\x7fELF":
        raise LinkError("bad_object", f"{path}: expected an ELF file, got {data[:4]!r}")
    if data[4] != 2 or data[5] != 1:
        raise LinkError("bad_object", f"{path}: expected ELF64 little-endian")
    (e_type, e_machine) = struct.unpack_from("<HH", data, 16)
    if e_machine != EM_BPF:
        raise LinkError("bad_object", f"{path}: expected machine EM_BPF (247), got {e_machine}")
    if e_type != ET_REL:
        raise LinkError(
            "bad_object", f"{path}: expected a relocatable object (ET_REL), got {e_type}"
        )
    e_shoff = struct.unpack_from("<Q", data, 40)[0]
    e_shentsize, e_shnum, e_shstrndx = struct.unpack_from("<HHH", data, 58)
    if e_shentsize != 64:
        raise LinkError("bad_object", f"{path}: expected section header size 64, got {e_shentsize}")
    raw = []
    for i in range(e_shnum):
        fields = struct.unpack_from("<IIQQQQIIQQ", data, e_shoff + i * 64)
        raw.append(fields)
    shstr_off, shstr_size = raw[e_shstrndx][4], raw[e_shstrndx][5]
    shstrtab = data[shstr_off : shstr_off + shstr_size]
    sections = []
    for i, (name, typ, flags, _addr, off, size, link, info, align, entsize) in enumerate(raw):
        body = b"" if typ == SHT_NOBITS else data[off : off + size]
        sections.append(
            Section(
                i, _cstr(shstrtab, name), typ, flags, off, size, link, info, align, entsize, body
            )
        )
    symbols: list[Symbol] = []
    symtabs = [s for s in sections if s.type == SHT_SYMTAB]
    if len(symtabs) != 1:
        raise LinkError("bad_object", f"{path}: expected one symbol table, got {len(symtabs)}")
    symtab = symtabs[0]
    strtab = sections[symtab.link].data
    for off in range(0, len(symtab.data), 24):
        st_name, st_info, _other, st_shndx, st_value, st_size = struct.unpack_from(
            "<IBBHQQ", symtab.data, off
        )
        name = _cstr(strtab, st_name)
        if st_info & 0xF == STT_SECTION and st_shndx < len(sections):
            name = sections[st_shndx].name
        symbols.append(Symbol(name, st_value, st_size, st_info >> 4, st_info & 0xF, st_shndx))
    obj = ObjectFile(path, sections, symbols)
    for sec in sections:
        if sec.type == SHT_REL:
            if sec.link != symtab.index:
                raise LinkError("bad_object", f"{path}: {sec.name} does not use the symbol table")
            entries = []
            for off in range(0, len(sec.data), 16):
                r_offset, r_info = struct.unpack_from("<QQ", sec.data, off)
                entries.append((r_offset, r_info & 0xFFFFFFFF, r_info >> 32))
            obj.relocations[sec.info] = entries
    return obj


# --------------------------------------------------------------------------- classification
def _section_kind(sec: Section) -> str:
    """'text', 'rodata', 'writable' or 'ignore' (non-allocated metadata: BTF, addrsig...)."""
    if not sec.flags & SHF_ALLOC or sec.type in (SHT_SYMTAB, SHT_STRTAB, SHT_REL):
        return "ignore"
    if sec.type == SHT_NOBITS or sec.flags & SHF_WRITE:
        return "writable"
    if sec.flags & SHF_EXECINSTR:
        return "text"
    if sec.name.startswith((".data", ".bss", ".sdata", ".sbss")) and not sec.name.startswith(
        ".data.rel.ro"
    ):
        return "writable"
    return "rodata"


def _check_instructions(obj: ObjectFile, sec: Section) -> None:
    """Reject every opcode SBPF v0 cannot run (or runs with different semantics)."""
    code = sec.data
    if len(code) % INSN_SIZE:
        raise LinkError(
            "bad_object", f"{obj.path}: {sec.name} size {len(code)} is not a multiple of 8"
        )
    i = 0
    while i < len(code):
        op = code[i]
        cls = op & 0x07
        off = struct.unpack_from("<h", code, i + 2)[0]
        imm = struct.unpack_from("<i", code, i + 4)[0]
        problem: tuple[str, str] | None = None
        if op == LD_DW_IMM:
            if i + 16 > len(code):
                problem = ("bad_object", "truncated lddw")
            else:
                i += 16
                continue
        elif cls == 0x00:
            problem = ("unsupported_opcode", f"legacy packet load (opcode {op:#04x})")
        elif cls == 0x01:
            if op not in LDX_OK:
                problem = (
                    "unsupported_opcode",
                    f"sign-extending or unknown load (opcode {op:#04x}, BPF v4)",
                )
        elif cls == 0x02:
            if op not in ST_OK:
                problem = ("unsupported_opcode", f"unknown store (opcode {op:#04x})")
        elif cls == 0x03:
            if op & 0xE0 in (0xC0,):
                problem = ("atomic", f"atomic operation (opcode {op:#04x}, imm {imm:#x})")
            elif op not in STX_OK:
                problem = ("unsupported_opcode", f"unknown store (opcode {op:#04x})")
        elif cls == 0x04:
            if op in (LE, BE):
                if imm not in (16, 32, 64):
                    problem = ("unsupported_opcode", f"byte swap width {imm}")
            else:
                name = ALU64_OPS.get(op & 0xF0, "?")
                problem = (
                    "alu32",
                    f"32-bit ALU instruction {name}32 (opcode {op:#04x}): SBPF v0 sign-extends "
                    "32-bit results where LLVM assumes zero-extension; compile with -mcpu=v1/v2 "
                    "and without +alu32",
                )
        elif cls == 0x05:
            jmp_name = JMP_OPS.get(op & 0xF0)
            if jmp_name is None or (
                op & 0x08 and jmp_name in ("ja", "call", "exit") and op != CALL_REG
            ):
                problem = ("unsupported_opcode", f"unknown jump (opcode {op:#04x})")
            elif jmp_name == "exit" and op != EXIT:
                problem = ("unsupported_opcode", f"unknown exit form (opcode {op:#04x})")
        elif cls == 0x06:
            name = JMP_OPS.get(op & 0xF0, "?")
            problem = (
                "jmp32",
                f"32-bit jump {name}32 (opcode {op:#04x}) is not an SBPF v0 instruction; "
                "compile with -mcpu=v1/v2",
            )
        elif cls == 0x07:
            alu_name = ALU64_OPS.get(op & 0xF0)
            if alu_name is None:
                problem = ("unsupported_opcode", f"unknown 64-bit ALU op (opcode {op:#04x})")
            elif alu_name in ("div", "mod") and off != 0:
                problem = ("unsupported_opcode", f"signed s{alu_name} (BPF v4, opcode {op:#04x})")
            elif alu_name == "mov" and off != 0:
                problem = ("unsupported_opcode", f"sign-extending movsx (BPF v4, opcode {op:#04x})")
            elif alu_name == "neg" and op & 0x08:
                problem = ("unsupported_opcode", f"unknown neg form (opcode {op:#04x})")
        if problem is not None:
            raise LinkError(problem[0], f"{obj.where(sec.index, i)}: {problem[1]}")
        i += INSN_SIZE


# --------------------------------------------------------------------------- linking
@dataclass(frozen=True)
class LinkResult:
    elf: bytes
    syscalls: tuple[str, ...]
    text_size: int
    rodata_size: int


def _align(n: int, a: int) -> int:
    return (n + a - 1) // a * a if a > 1 else n


def link(objects: Sequence[tuple[str, bytes]], *, extra_syscalls: Iterable[str] = ()) -> LinkResult:
    """Link (name, object bytes) pairs into one SBPF v0 shared object."""
    syscalls_allowed = KNOWN_SYSCALLS | frozenset(extra_syscalls)
    objs = [read_object(data, name) for name, data in objects]
    if not objs:
        raise LinkError("no_input", "expected at least one object file, got none")

    # Lay out .text and .rodata (offsets relative to each output section for now).
    text_parts: list[tuple[ObjectFile, Section, int]] = []
    rodata_parts: list[tuple[ObjectFile, Section, int]] = []
    text_size = rodata_size = 0
    rodata_align = 1
    placed: dict[tuple[int, int], tuple[str, int]] = {}  # (obj, shndx) -> (kind, offset)
    for oi, obj in enumerate(objs):
        for sec in obj.sections:
            kind = _section_kind(sec)
            if kind == "writable":
                names = sorted(
                    s.name for s in obj.symbols if s.shndx == sec.index and s.type != STT_SECTION
                )
                raise LinkError(
                    "writable_section",
                    f"{obj.path}: writable section {sec.name} (symbols: {', '.join(names) or '-'})"
                    " is rejected by the loader; make globals `const` (pointer tables "
                    "`T *const`) and use the heap or account data for state",
                )
            if kind == "text" and sec.size:
                _check_instructions(obj, sec)
                text_size = _align(text_size, max(sec.align, INSN_SIZE))
                text_parts.append((obj, sec, text_size))
                placed[(oi, sec.index)] = ("text", text_size)
                text_size += sec.size
            elif kind == "rodata" and sec.size:
                rodata_size = _align(rodata_size, max(sec.align, 1))
                rodata_align = max(rodata_align, sec.align)
                rodata_parts.append((obj, sec, rodata_size))
                placed[(oi, sec.index)] = ("rodata", rodata_size)
                rodata_size += sec.size
        for sym in obj.symbols:
            if sym.shndx == SHN_COMMON:
                raise LinkError(
                    "writable_section",
                    f"{obj.path}: common (writable) symbol `{sym.name}` is rejected by the loader",
                )

    # File layout: header, program headers, then the sections.
    num_phdrs = 4 if rodata_size else 3
    text_off = _align(64 + 56 * num_phdrs, 8)
    rodata_off = _align(text_off + text_size, max(rodata_align, 8))

    def address(kind: str, offset: int) -> int:
        return (text_off if kind == "text" else rodata_off) + offset

    # Global symbol table.
    globals_: dict[str, tuple[int, Symbol]] = {}
    for oi, obj in enumerate(objs):
        for sym in obj.symbols:
            if sym.bind in (STB_GLOBAL, STB_WEAK) and sym.shndx != SHN_UNDEF:
                prev = globals_.get(sym.name)
                if prev is not None and prev[1].bind == STB_GLOBAL and sym.bind == STB_GLOBAL:
                    raise LinkError(
                        "duplicate_symbol",
                        f"`{sym.name}` is defined in both {objs[prev[0]].path} and {obj.path}",
                    )
                if prev is None or (prev[1].bind == STB_WEAK and sym.bind == STB_GLOBAL):
                    globals_[sym.name] = (oi, sym)

    def resolve(oi: int, sym_index: int, where: str) -> tuple[str, int | str]:
        """('addr', output offset) or ('syscall', name)."""
        obj = objs[oi]
        sym = obj.symbols[sym_index]
        if sym.shndx == SHN_UNDEF:
            if sym.name in globals_:
                oi, sym = globals_[sym.name]
                obj = objs[oi]
            elif sym.name in LIBCALL_ALIASES:
                return ("syscall", LIBCALL_ALIASES[sym.name])
            elif sym.name in syscalls_allowed:
                return ("syscall", sym.name)
            else:
                hint = ""
                if sym.name.startswith("__"):
                    hint = (
                        " (a compiler runtime helper: 128-bit multiply/divide or signed division;"
                        " use the pd_* helpers of perpdex_sol.h)"
                    )
                raise LinkError(
                    "unknown_symbol", f"{where}: unknown external symbol `{sym.name}`{hint}"
                )
        if sym.shndx in (SHN_ABS, SHN_COMMON) or sym.shndx >= len(obj.sections):
            raise LinkError("bad_symbol", f"{where}: symbol `{sym.name}` has no section")
        placement = placed.get((oi, sym.shndx))
        if placement is None:
            sec_name = obj.sections[sym.shndx].name
            raise LinkError(
                "bad_symbol", f"{where}: `{sym.name}` lives in section {sec_name}, not linked"
            )
        kind, base = placement
        value = 0 if sym.type == STT_SECTION else sym.value
        return ("addr", address(kind, base + value))

    text = bytearray(text_size)
    for _obj, sec, off in text_parts:
        text[off : off + sec.size] = sec.data
    rodata = bytearray(rodata_size)
    for _obj, sec, off in rodata_parts:
        rodata[off : off + sec.size] = sec.data

    dyn_relocs: list[tuple[int, str]] = []  # (file offset of the call, syscall name)
    for oi, obj in enumerate(objs):
        for target_index, relocs in obj.relocations.items():
            placement = placed.get((oi, target_index))
            if placement is None:
                continue  # relocations of debug info, BTF, addrsig
            kind, base = placement
            buf, buf_off = (text, base) if kind == "text" else (rodata, base)
            for r_offset, r_type, r_sym in relocs:
                where = obj.where(target_index, r_offset)
                pos = buf_off + r_offset
                if kind == "text" and r_type == R_BPF_64_32:
                    if buf[pos] != CALL_IMM:
                        raise LinkError(
                            "bad_relocation", f"{where}: R_BPF_64_32 on opcode {buf[pos]:#04x}"
                        )
                    what, value = resolve(oi, r_sym, where)
                    if what == "syscall":
                        struct.pack_into("<i", buf, pos + 4, -1)
                        dyn_relocs.append((text_off + pos, str(value)))
                        continue
                    assert isinstance(value, int)
                    imm = struct.unpack_from("<i", buf, pos + 4)[0]
                    target = value + (imm + 1) * INSN_SIZE
                    if not text_off <= target < text_off + text_size or (target - text_off) % 8:
                        raise LinkError("bad_relocation", f"{where}: call target outside .text")
                    rel = (target - (text_off + pos)) // INSN_SIZE - 1
                    if rel == -1:
                        raise LinkError("bad_relocation", f"{where}: call to itself at imm -1")
                    struct.pack_into("<i", buf, pos + 4, rel)
                elif kind == "text" and r_type == R_BPF_64_64:
                    if buf[pos] != LD_DW_IMM:
                        raise LinkError(
                            "bad_relocation", f"{where}: R_BPF_64_64 on opcode {buf[pos]:#04x}"
                        )
                    what, value = resolve(oi, r_sym, where)
                    if what == "syscall":
                        raise LinkError(
                            "bad_relocation", f"{where}: address of syscall `{value}` taken"
                        )
                    assert isinstance(value, int)
                    addend = struct.unpack_from("<I", buf, pos + 4)[0]
                    vaddr = MM_PROGRAM_START + value + addend
                    struct.pack_into("<I", buf, pos + 4, vaddr & 0xFFFFFFFF)
                    struct.pack_into("<I", buf, pos + 12, vaddr >> 32)
                elif kind == "rodata" and r_type == R_BPF_64_ABS64:
                    what, value = resolve(oi, r_sym, where)
                    if what == "syscall":
                        raise LinkError(
                            "bad_relocation", f"{where}: address of syscall `{value}` taken"
                        )
                    assert isinstance(value, int)
                    addend = struct.unpack_from("<Q", buf, pos)[0]
                    struct.pack_into("<Q", buf, pos, MM_PROGRAM_START + value + addend)
                else:
                    raise LinkError(
                        "bad_relocation",
                        f"{where}: relocation type {r_type} in {kind} is not supported",
                    )

    # callx: SBPF v0 reads the target register from the immediate field.
    for i in range(0, text_size, INSN_SIZE):
        if text[i] == CALL_REG:
            struct.pack_into("<i", text, i + 4, text[i + 1] & 0x0F)
        elif text[i] == LD_DW_IMM:
            pass

    entry = globals_.get("entrypoint")
    if entry is None:
        raise LinkError("no_entrypoint", "no global function `entrypoint` in the inputs")
    entry_oi, entry_sym = entry
    if entry_sym.type != STT_FUNC or entry_sym.bind != STB_GLOBAL:
        raise LinkError("no_entrypoint", "`entrypoint` must be a global function")
    _, entry_addr = resolve(entry_oi, objs[entry_oi].symbols.index(entry_sym), "entrypoint")
    assert isinstance(entry_addr, int)

    syscalls = tuple(sorted({name for _, name in dyn_relocs}))
    for name in ("entrypoint", *syscalls):
        if len(name.encode()) > DYNSYM_NAME_MAX:
            raise LinkError(
                "name_too_long",
                f"dynamic symbol `{name}` is {len(name.encode())} bytes; the loader reads at most "
                f"{DYNSYM_NAME_MAX}",
            )

    elf = _write_elf(
        text=bytes(text),
        rodata=bytes(rodata),
        text_off=text_off,
        rodata_off=rodata_off,
        entry_addr=entry_addr,
        entry_size=entry_sym.size,
        syscalls=syscalls,
        dyn_relocs=sorted(dyn_relocs),
        num_phdrs=num_phdrs,
    )
    return LinkResult(elf=elf, syscalls=syscalls, text_size=text_size, rodata_size=rodata_size)


def _write_elf(
    *,
    text: bytes,
    rodata: bytes,
    text_off: int,
    rodata_off: int,
    entry_addr: int,
    entry_size: int,
    syscalls: tuple[str, ...],
    dyn_relocs: list[tuple[int, str]],
    num_phdrs: int,
) -> bytes:
    dynstr = bytearray(b"\0")
    name_off: dict[str, int] = {}
    for name in ("entrypoint", *syscalls):
        name_off[name] = len(dynstr)
        dynstr += name.encode() + b"\0"
    sym_index = {name: 2 + i for i, name in enumerate(syscalls)}
    dynsym = bytearray(24)
    dynsym += struct.pack("<IBBHQQ", name_off["entrypoint"], (STB_GLOBAL << 4) | STT_FUNC, 0, 1,
                          entry_addr, entry_size)  # fmt: skip
    for name in syscalls:
        dynsym += struct.pack("<IBBHQQ", name_off[name], (STB_GLOBAL << 4) | STT_NOTYPE, 0, 0, 0, 0)
    rel_dyn = b"".join(
        struct.pack("<QQ", off, (sym_index[name] << 32) | R_BPF_64_32) for off, name in dyn_relocs
    )

    rodata_end = rodata_off + len(rodata) if rodata else text_off + len(text)
    dynamic_off = _align(rodata_end, 8)
    num_dyn = 5 + (3 if rel_dyn else 0)
    dynamic_size = 16 * num_dyn
    dynsym_off = dynamic_off + dynamic_size
    dynstr_off = dynsym_off + len(dynsym)
    rel_off = _align(dynstr_off + len(dynstr), 8)
    dyn_tags = [(DT_SYMTAB, dynsym_off), (DT_STRTAB, dynstr_off), (DT_STRSZ, len(dynstr)),
                (DT_SYMENT, 24)]  # fmt: skip
    if rel_dyn:
        dyn_tags += [(DT_REL, rel_off), (DT_RELSZ, len(rel_dyn)), (DT_RELENT, 16)]
    dyn_tags.append((DT_NULL, 0))
    dynamic = b"".join(struct.pack("<QQ", t, v) for t, v in dyn_tags)
    assert len(dynamic) == dynamic_size

    shstrtab = bytearray(b"\0")
    sh_names: dict[str, int] = {}
    for name in (".text", ".rodata", ".dynamic", ".dynsym", ".dynstr", ".rel.dyn", ".shstrtab"):
        assert len(name) <= SECTION_NAME_MAX
        sh_names[name] = len(shstrtab)
        shstrtab += name.encode() + b"\0"
    shstrtab_off = rel_off + len(rel_dyn)
    shoff = _align(shstrtab_off + len(shstrtab), 8)

    out = bytearray(shoff + 64 * 8)
    out[text_off : text_off + len(text)] = text
    out[rodata_off : rodata_off + len(rodata)] = rodata
    out[dynamic_off : dynamic_off + dynamic_size] = dynamic
    out[dynsym_off : dynsym_off + len(dynsym)] = dynsym
    out[dynstr_off : dynstr_off + len(dynstr)] = dynstr
    out[rel_off : rel_off + len(rel_dyn)] = rel_dyn
    out[shstrtab_off : shstrtab_off + len(shstrtab)] = shstrtab

    # ELF header
    out[0:16] = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    struct.pack_into("<HHIQQQIHHHHHH", out, 16, ET_DYN, EM_BPF, 1, entry_addr, 64, shoff, 0, 64,
                     56, num_phdrs, 64, 8, 7)  # fmt: skip

    # Program headers (vaddr == offset)
    dyn_end = rel_off + len(rel_dyn)
    phdrs = [(PT_LOAD, PF_R | PF_X, text_off, len(text))]
    if rodata:
        phdrs.append((PT_LOAD, PF_R, rodata_off, len(rodata)))
    phdrs.append((PT_LOAD, PF_R | PF_W, dynamic_off, dyn_end - dynamic_off))
    phdrs.append((PT_DYNAMIC, PF_R | PF_W, dynamic_off, dynamic_size))
    assert len(phdrs) == num_phdrs
    for i, (ptype, pflags, poff, psize) in enumerate(phdrs):
        align = 4096 if ptype == PT_LOAD else 8
        struct.pack_into("<IIQQQQQQ", out, 64 + 56 * i, ptype, pflags, poff, poff, poff, psize,
                         psize, align)  # fmt: skip

    # Section headers: name, type, flags, addr, offset, size, link, info, align, entsize
    shdrs = [
        (0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
        (sh_names[".text"], SHT_PROGBITS, SHF_ALLOC | SHF_EXECINSTR, text_off, text_off,
         len(text), 0, 0, 8, 0),
        (sh_names[".rodata"], SHT_PROGBITS, SHF_ALLOC, rodata_off if rodata else rodata_end,
         rodata_off if rodata else rodata_end, len(rodata), 0, 0, 8, 0),
        (sh_names[".dynamic"], SHT_DYNAMIC, SHF_ALLOC | SHF_WRITE, dynamic_off, dynamic_off,
         dynamic_size, 5, 0, 8, 16),
        (sh_names[".dynsym"], SHT_DYNSYM, SHF_ALLOC, dynsym_off, dynsym_off, len(dynsym), 5, 1,
         8, 24),
        (sh_names[".dynstr"], SHT_STRTAB, SHF_ALLOC, dynstr_off, dynstr_off, len(dynstr), 0, 0,
         1, 0),
        (sh_names[".rel.dyn"], SHT_REL, SHF_ALLOC, rel_off, rel_off, len(rel_dyn), 4, 0, 8, 16),
        (sh_names[".shstrtab"], SHT_STRTAB, 0, 0, shstrtab_off, len(shstrtab), 0, 0, 1, 0),
    ]  # fmt: skip
    for i, sh in enumerate(shdrs):
        struct.pack_into("<IIQQQQIIQQ", out, shoff + 64 * i, *sh)
    return bytes(out)


# --------------------------------------------------------------------------- CLI
def main(argv: Sequence[str] | None = None) -> int:
    """`python -m settlement.toolchain.sbf_linker OUT.so IN.o...`"""
    parser = argparse.ArgumentParser(
        prog="python -m settlement.toolchain.sbf_linker",
        description="Link clang-19 BPF objects into an SBPF v0 shared object.",
    )
    parser.add_argument("output", type=Path)
    parser.add_argument("inputs", type=Path, nargs="+")
    parser.add_argument(
        "--syscall", action="append", default=[], help="accept an extra syscall name"
    )
    args = parser.parse_args(argv)
    try:
        objects = [(p.name, p.read_bytes()) for p in args.inputs]
        result = link(objects, extra_syscalls=args.syscall)
    except OSError as exc:
        print(f"sbf_linker: error: {exc}", file=sys.stderr)
        return 1
    except LinkError as exc:
        print(f"sbf_linker: error: {exc}", file=sys.stderr)
        return 1
    args.output.write_bytes(result.elf)
    print(
        f"{args.output}: {len(result.elf)} bytes, .text {result.text_size}, "
        f".rodata {result.rodata_size}, syscalls {', '.join(result.syscalls) or '-'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
