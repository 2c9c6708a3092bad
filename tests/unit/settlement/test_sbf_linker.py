"""Our SBF linker on small objects compiled here with clang-19, and the committed artefacts."""

from __future__ import annotations

import hashlib
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from settlement.toolchain import build
from settlement.toolchain.sbf_linker import (
    MM_PROGRAM_START,
    R_BPF_64_32,
    LinkError,
    link,
    main,
    read_object,
)

CLANG = build.find_clang()
needs_clang = pytest.mark.skipif(
    CLANG is None, reason="clang-19 absent: only the committed .so artefacts are checked"
)
PROGRAM_DIR = build.PROGRAM_DIR
SDK_DIR = PROGRAM_DIR / "sdk"
EXPECTED_SECTIONS = [
    "",
    ".text",
    ".rodata",
    ".dynamic",
    ".dynsym",
    ".dynstr",
    ".rel.dyn",
    ".shstrtab",
]


@dataclass
class Shdr:
    name: str
    type: int
    flags: int
    addr: int
    offset: int
    size: int
    entsize: int


@dataclass
class Elf:
    raw: bytes
    e_type: int
    machine: int
    flags: int
    entry: int
    sections: list[Shdr]

    def section(self, name: str) -> Shdr:
        return next(s for s in self.sections if s.name == name)

    def body(self, name: str) -> bytes:
        s = self.section(name)
        return self.raw[s.offset : s.offset + s.size]

    def dynsym(self) -> list[tuple[str, int, int, int]]:
        """(name, info, shndx, value) of each dynamic symbol."""
        strtab = self.body(".dynstr")
        out = []
        data = self.body(".dynsym")
        for off in range(0, len(data), 24):
            name, info, _, shndx, value, _size = struct.unpack_from("<IBBHQQ", data, off)
            out.append((strtab[name : strtab.index(b"\0", name)].decode(), info, shndx, value))
        return out

    def rel_dyn(self) -> list[tuple[int, int, int]]:
        """(offset, type, symbol index) of each dynamic relocation."""
        data = self.body(".rel.dyn")
        return [
            (off, info & 0xFFFFFFFF, info >> 32)
            for off, info in (struct.unpack_from("<QQ", data, i) for i in range(0, len(data), 16))
        ]

    def insn(self, offset: int) -> tuple[int, int, int, int]:
        """(opcode, regs byte, off, imm) of the instruction at a file offset."""
        op, regs, off, imm = struct.unpack_from("<BBhi", self.raw, offset)
        return op, regs, off, imm


def parse_elf(raw: bytes) -> Elf:
    e_type, machine, _version, entry, _phoff, shoff, flags = struct.unpack_from("<HHIQQQI", raw, 16)
    shnum, shstrndx = struct.unpack_from("<HH", raw, 60)
    headers = [struct.unpack_from("<IIQQQQIIQQ", raw, shoff + 64 * i) for i in range(shnum)]
    strtab_off = headers[shstrndx][4]
    sections = []
    for name, typ, sflags, addr, off, size, _l, _i, _a, entsize in headers:
        start = strtab_off + name
        sections.append(
            Shdr(
                raw[start : raw.index(b"\0", start)].decode(), typ, sflags, addr, off, size, entsize
            )
        )
    return Elf(raw, e_type, machine, flags, entry, sections)


def compile_c(tmp_path: Path, source: str, *, name: str = "t", cpu: str = "v2") -> bytes:
    """Compile C source with the build's flags (cpu overridable) -> object bytes."""
    assert CLANG is not None
    src = tmp_path / f"{name}.c"
    src.write_text(source)
    obj = tmp_path / f"{name}.o"
    flags = [f if f != "-mcpu=v2" else f"-mcpu={cpu}" for f in build.CFLAGS if f != "-Werror"]
    subprocess.run(
        [CLANG, *flags, f"-I{SDK_DIR}", "-c", str(src), "-o", str(obj)],
        check=True,
        capture_output=True,
    )
    return obj.read_bytes()


def link_one(tmp_path: Path, source: str, **kw: object) -> Elf:
    return parse_elf(link([("t.o", compile_c(tmp_path, source))], **kw).elf)  # type: ignore[arg-type]


def assert_loader_layout(elf: Elf) -> None:
    """The layout rules solana-sbpf's v0 loader checks (sbf-toolchain notes)."""
    assert (elf.e_type, elf.machine, elf.flags) == (3, 247, 0)
    assert elf.raw[7] == 0  # OSABI none
    assert [s.name for s in elf.sections] == EXPECTED_SECTIONS
    end = 0
    for s in elf.sections[1:]:
        assert s.offset >= end, f"{s.name} overlaps the previous section"
        end = s.offset + s.size
        if s.name != ".shstrtab":
            assert s.addr == s.offset, s.name
    for name, entsize in ((".dynamic", 16), (".dynsym", 24), (".rel.dyn", 16)):
        assert elf.section(name).offset % 8 == 0
        assert elf.section(name).entsize == entsize
    text = elf.section(".text")
    assert text.addr <= elf.entry < text.addr + text.size
    names = [sym[0] for sym in elf.dynsym()]
    assert names[0] == "" and names[1] == "entrypoint"
    assert elf.dynsym()[1][3] == elf.entry


# ----------------------------------------------------------------- committed artefacts (no clang)
def test_committed_programs_have_matching_sha256_files() -> None:
    # Arrange
    sos = sorted(PROGRAM_DIR.glob("*.so"))
    # Act / Assert
    assert sos, "no committed .so under settlement/program"
    for so in sos:
        line = (so.parent / (so.name + ".sha256")).read_text()
        assert line == f"{hashlib.sha256(so.read_bytes()).hexdigest()}  {so.name}\n"


def test_committed_demo_has_the_loader_layout() -> None:
    # Arrange
    elf = parse_elf((PROGRAM_DIR / "toolchain_demo.so").read_bytes())
    # Act
    syscalls = {name for name, *_ in elf.dynsym()[2:]}
    # Assert
    assert_loader_layout(elf)
    assert {"sol_log_", "sol_invoke_signed_c", "sol_try_find_program_address"} <= syscalls
    for offset, rtype, sym in elf.rel_dyn():
        assert rtype == R_BPF_64_32
        assert elf.insn(offset)[0] == 0x85 and elf.insn(offset)[3] == -1
        assert 2 <= sym < len(elf.dynsym())


# ----------------------------------------------------------------- reproducibility
def tracked_programs() -> list[build.ProgramSpec]:
    """Programs whose .so is committed (every .so present outside a git checkout): those must
    rebuild byte for byte. A clearing program still in progress has no committed .so yet."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "*.so"], cwd=PROGRAM_DIR, capture_output=True, text=True, check=True
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        out = [p.name for p in PROGRAM_DIR.glob("*.so")]
    tracked = {Path(p).stem for p in out}
    return [spec for spec in build.program_specs() if spec.name in tracked]


@needs_clang
@pytest.mark.parametrize("spec", tracked_programs(), ids=lambda s: s.name)
def test_rebuild_reproduces_the_committed_bytes(spec: build.ProgramSpec, tmp_path: Path) -> None:
    # Arrange
    assert CLANG is not None
    committed = (PROGRAM_DIR / f"{spec.name}.so").read_bytes()
    # Act
    first = build.build_program(CLANG, spec, tmp_path)
    second = build.build_program(CLANG, spec, tmp_path)
    # Assert
    assert first == second
    assert hashlib.sha256(first).hexdigest() == hashlib.sha256(committed).hexdigest(), (
        f"{spec.name}.so is stale: run `make program` and commit it"
    )


# ----------------------------------------------------------------- linking
@needs_clang
def test_syscalls_become_dynamic_relocations_and_data_addresses_are_resolved(
    tmp_path: Path,
) -> None:
    # Arrange
    source = """
    #include "perpdex_sol.h"
    static const char MESSAGE[] = "hello from the linker test";
    uint64_t entrypoint(const uint8_t *input) {
      sol_log_(MESSAGE, sizeof(MESSAGE) - 1);
      sol_log_64_(input[0], 0, 0, 0, 0);
      return 0;
    }
    """
    # Act
    elf = link_one(tmp_path, source)
    # Assert
    assert_loader_layout(elf)
    names = [sym[0] for sym in elf.dynsym()]
    assert names[2:] == ["sol_log_", "sol_log_64_"]
    relocs = elf.rel_dyn()
    assert sorted(names[sym] for _, _, sym in relocs) == ["sol_log_", "sol_log_64_"]
    rodata = elf.section(".rodata")
    message_at = rodata.offset + elf.body(".rodata").index(b"hello from the linker test")
    text = elf.section(".text")
    lddw_targets = [
        elf.insn(i)[3] & 0xFFFFFFFF | (elf.insn(i + 8)[3] & 0xFFFFFFFF) << 32
        for i in range(text.offset, text.offset + text.size, 8)
        if elf.insn(i)[0] == 0x18
    ]
    assert MM_PROGRAM_START + message_at in lddw_targets


@needs_clang
def test_internal_calls_are_resolved_across_objects_and_section_symbols(tmp_path: Path) -> None:
    # Arrange: a global function in another object, and static functions in a second text
    # section (clang's section-symbol form: target = section + (imm + 1) * 8)
    main_src = """
    #include "perpdex_sol.h"
    uint64_t triple_plus_one(uint64_t x);
    __attribute__((noinline, section(".text.helpers"))) static uint64_t five(uint64_t x) {
      return x * 5 + 2;
    }
    __attribute__((noinline, section(".text.helpers"))) static uint64_t seven(uint64_t x) {
      return x * 7 + 3;
    }
    uint64_t entrypoint(const uint8_t *input) {
      return triple_plus_one(input[0]) + five(input[1]) + seven(input[2]);
    }
    """
    other_src = """
    #include "perpdex_sol.h"
    __attribute__((noinline)) uint64_t triple_plus_one(uint64_t x) { return x * 3 + 1; }
    """
    objects = [
        ("main.o", compile_c(tmp_path, main_src, name="main")),
        ("other.o", compile_c(tmp_path, other_src, name="other")),
    ]
    # Act
    elf = parse_elf(link(objects).elf)
    # Assert: every call lands on the first instruction of a function that multiplies
    text = elf.section(".text")
    calls = [i for i in range(text.offset, text.offset + text.size, 8) if elf.insn(i)[0] == 0x85]
    assert len(calls) == 3
    multipliers = set()
    for at in calls:
        imm = elf.insn(at)[3]
        target = at + (imm + 1) * 8
        assert text.offset <= target < text.offset + text.size
        body = [elf.insn(target + 8 * k) for k in range(4)]
        multipliers |= {imm for op, _, _, imm in body if op == 0x27}  # mul64 imm
    assert multipliers == {3, 5, 7}
    assert elf.rel_dyn() == []


@needs_clang
def test_function_pointer_tables_and_callx_register_are_fixed_up(tmp_path: Path) -> None:
    # Arrange
    source = """
    #include "perpdex_sol.h"
    typedef uint64_t (*op_fn)(uint64_t);
    static uint64_t add1(uint64_t x) { return x + 1; }
    static uint64_t add2(uint64_t x) { return x + 2; }
    static op_fn const OPS[] = {add1, add2};
    uint64_t entrypoint(const uint8_t *input) { return OPS[input[0] & 1](input[1]); }
    """
    # Act
    elf = link_one(tmp_path, source)
    # Assert
    text = elf.section(".text")
    callx = [
        elf.insn(i)
        for i in range(text.offset, text.offset + text.size, 8)
        if elf.insn(i)[0] == 0x8D
    ]
    assert callx and all(imm == regs & 0x0F for _, regs, _, imm in callx)
    table = elf.body(".rodata")
    pointers = [struct.unpack_from("<Q", table, i)[0] for i in range(0, 16, 8)]
    for pointer in pointers:
        offset = pointer - MM_PROGRAM_START
        assert text.offset <= offset < text.offset + text.size
        assert elf.insn(offset)[0] in (0xBF, 0x07)  # mov/add: a function body


@needs_clang
def test_memcpy_calls_are_bound_to_the_memcpy_syscall(tmp_path: Path) -> None:
    # Arrange: a variable-length copy through a declared memcpy (-fno-builtin keeps the call)
    source = """
    #include "perpdex_sol.h"
    void *memcpy(void *dst, const void *src, uint64_t n);
    uint64_t entrypoint(const uint8_t *input) {
      uint8_t *a = (uint8_t *)pd_alloc(64);
      memcpy(a, input + 8, input[0]);
      return a[7];
    }
    """
    # Act
    elf = link_one(tmp_path, source)
    # Assert
    assert [sym[0] for sym in elf.dynsym()[2:]] == ["sol_memcpy_"]


@needs_clang
def test_cli_writes_the_shared_object(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Arrange
    obj = tmp_path / "t.o"
    obj.write_bytes(compile_c(tmp_path, "unsigned long long entrypoint(void *i) { return 0; }"))
    out = tmp_path / "t.so"
    # Act
    code = main([str(out), str(obj)])
    # Assert
    assert code == 0
    assert_loader_layout(parse_elf(out.read_bytes()))
    assert "t.so" in capsys.readouterr().out


# ----------------------------------------------------------------- rejections
def rejection(tmp_path: Path, source: str, *, cpu: str = "v2", **kw: object) -> LinkError:
    obj = compile_c(tmp_path, source, cpu=cpu)
    with pytest.raises(LinkError) as info:
        link([("bad.o", obj)], **kw)  # type: ignore[arg-type]
    return info.value


@needs_clang
def test_rejects_32_bit_alu(tmp_path: Path) -> None:
    # Arrange
    source = """
    unsigned long long entrypoint(const unsigned char *in) {
      unsigned a = *(const unsigned *)in, b = *(const unsigned *)(in + 4);
      return (unsigned long long)(a + b);
    }"""
    # Act
    err = rejection(tmp_path, source, cpu="v3")
    # Assert
    assert err.code == "alu32"
    assert "bad.o: .text+0x" in str(err) and "`entrypoint`" in str(err) and "add32" in str(err)


@needs_clang
def test_rejects_32_bit_jumps(tmp_path: Path) -> None:
    # Arrange: -mcpu=v3 compares the two u32 values with jlt32 (opcode 0xae)
    source = """
    unsigned long long entrypoint(const unsigned char *in) {
      unsigned a = *(const unsigned *)in, b = *(const unsigned *)(in + 4);
      if (a < b) return 7;
      return 9;
    }"""
    # Act
    err = rejection(tmp_path, source, cpu="v3")
    # Assert
    assert err.code == "jmp32"
    assert "jlt32 (opcode 0xae)" in str(err) and "`entrypoint`" in str(err)


@needs_clang
def test_rejects_a_jmp32_instruction_by_name(tmp_path: Path) -> None:
    # Arrange: a valid object with one instruction patched to jne32 (opcode 0x56)
    obj = bytearray(compile_c(tmp_path, "unsigned long long entrypoint(void *i) { return 0; }"))
    text = next(s for s in read_object(bytes(obj), "t.o").sections if s.name == ".text")
    obj[text.offset] = 0x56
    # Act
    with pytest.raises(LinkError) as info:
        link([("patched.o", bytes(obj))])
    # Assert
    assert info.value.code == "jmp32"
    assert "patched.o: .text+0x0 (in function `entrypoint`)" in str(info.value)
    assert "0x56" in str(info.value)


@needs_clang
def test_rejects_atomics(tmp_path: Path) -> None:
    # Arrange
    source = """
    unsigned long long entrypoint(unsigned char *in) {
      __sync_fetch_and_add((unsigned long long *)in, 1);
      return 0;
    }"""
    # Act
    err = rejection(tmp_path, source)
    # Assert
    assert err.code == "atomic" and "`entrypoint`" in str(err)


@needs_clang
def test_rejects_unknown_external_symbols_naming_them(tmp_path: Path) -> None:
    # Arrange
    source = """
    unsigned long long not_a_syscall(unsigned long long);
    unsigned long long entrypoint(unsigned char *in) { return not_a_syscall(in[0]); }
    """
    # Act
    err = rejection(tmp_path, source)
    # Assert
    assert err.code == "unknown_symbol"
    assert "`not_a_syscall`" in str(err) and "`entrypoint`" in str(err)


@needs_clang
@pytest.mark.parametrize(
    ("declaration", "symbol"),
    [("int counter = 1;", "counter"), ("static int zeroed;", "zeroed")],
    ids=["data", "bss"],
)
def test_rejects_writable_globals(tmp_path: Path, declaration: str, symbol: str) -> None:
    # Arrange
    name = "counter" if symbol == "counter" else "zeroed"
    source = f"""
    {declaration}
    unsigned long long entrypoint(unsigned char *in) {{ {name} += in[0]; return {name}; }}
    """
    # Act
    err = rejection(tmp_path, source)
    # Assert
    assert err.code == "writable_section"
    assert symbol in str(err)


@needs_clang
def test_rejects_dynamic_symbol_names_the_loader_cannot_read(tmp_path: Path) -> None:
    # Arrange: an extra syscall whose name is longer than the loader's 64-byte limit
    long_name = "sol_" + "x" * 70
    source = f"""
    void {long_name}(void);
    unsigned long long entrypoint(void *in) {{ {long_name}(); return 0; }}
    """
    # Act
    err = rejection(tmp_path, source, extra_syscalls=[long_name])
    # Assert
    assert err.code == "name_too_long" and long_name in str(err)


@needs_clang
def test_rejects_missing_and_duplicate_entrypoints(tmp_path: Path) -> None:
    # Arrange
    lib = compile_c(tmp_path, "unsigned long long helper(void) { return 1; }", name="lib")
    entry = compile_c(tmp_path, "unsigned long long entrypoint(void *i) { return 0; }", name="e")
    # Act
    with pytest.raises(LinkError) as missing:
        link([("lib.o", lib)])
    with pytest.raises(LinkError) as duplicate:
        link([("a.o", entry), ("b.o", entry)])
    # Assert
    assert missing.value.code == "no_entrypoint"
    assert duplicate.value.code == "duplicate_symbol" and "a.o" in str(duplicate.value)


def test_rejects_inputs_that_are_not_bpf_objects() -> None:
    # Act
    with pytest.raises(LinkError) as not_elf:
        link([("junk.o", b"not an elf file at all" * 4)])
    with pytest.raises(LinkError) as none:
        link([])
    # Assert
    assert not_elf.value.code == "bad_object" and "junk.o" in str(not_elf.value)
    assert none.value.code == "no_input"
