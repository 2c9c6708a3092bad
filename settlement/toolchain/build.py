"""`make program`: compile the on-chain C sources with clang-19 and link them with our SBF linker.

Programs (paths relative to settlement/program/):
  perpdex_clearing.so   every src/*.c (the clearing program; skipped while src/ has no sources)
  toolchain_demo.so     demo/toolchain_demo.c (the toolchain's end-to-end demo)

Each `.so` is written with a `.so.sha256` beside it (sha256sum format). Builds are reproducible:
clang runs from settlement/program/ on relative paths, without debug info, and the linker writes
no timestamps or paths, so the same sources and clang give the same bytes.
`--check` rebuilds into a scratch directory and fails if any committed `.so` differs.

Stdlib only: runs with any python3.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from settlement.toolchain.sbf_linker import LinkError, link

PROGRAM_DIR = Path(__file__).resolve().parent.parent / "program"
DEFAULT_CLANG = "clang-19"
# -mcpu=v2: 64-bit ALU and jumps only (v3/+alu32 give 32-bit ops SBPF v0 runs differently);
# no builtins (no libc); 4 KiB stack frames as the VM gives.
CFLAGS = (
    "-target", "bpf", "-mcpu=v2", "-O2", "-std=c11", "-ffreestanding", "-fno-builtin",
    "-fno-stack-protector", "-fno-ident", "-fno-crash-diagnostics", "-mllvm",
    "-bpf-stack-size=4096",
    "-Wall", "-Wextra", "-Werror", "-Wno-unused-function",
)  # fmt: skip
INCLUDE_DIRS = ("sdk", "include")


class BuildError(Exception):
    """A compile, link or reproducibility failure, with the tool's own message."""


@dataclass(frozen=True)
class ProgramSpec:
    name: str  # output file stem
    sources: tuple[str, ...]  # relative to PROGRAM_DIR


def program_specs(program_dir: Path = PROGRAM_DIR) -> list[ProgramSpec]:
    """The programs to build, from the sources present (sorted: stable link order)."""
    specs = []
    clearing = tuple(
        sorted(p.relative_to(program_dir).as_posix() for p in (program_dir / "src").glob("*.c"))
    )
    if clearing:
        specs.append(ProgramSpec("perpdex_clearing", clearing))
    specs.append(ProgramSpec("toolchain_demo", ("demo/toolchain_demo.c",)))
    return specs


def find_clang(explicit: str | None = None) -> str | None:
    """The clang-19 executable (`$CLANG` or `clang-19` on PATH), or None."""
    name = explicit or os.environ.get("CLANG") or DEFAULT_CLANG
    return shutil.which(name)


def clang_version(clang: str) -> str:
    out = subprocess.run([clang, "--version"], capture_output=True, text=True, check=True)
    return out.stdout.splitlines()[0].strip()


def compile_source(
    clang: str, source: str, out_obj: Path, program_dir: Path = PROGRAM_DIR
) -> bytes:
    """One C file -> BPF relocatable object bytes."""
    includes = [f"-I{d}" for d in INCLUDE_DIRS if (program_dir / d).is_dir()]
    cmd = [clang, *CFLAGS, *includes, "-c", source, "-o", str(out_obj)]
    proc = subprocess.run(cmd, cwd=program_dir, capture_output=True, text=True)
    if proc.returncode != 0:
        # keep clang's diagnostics, drop a backend crash's stack dump
        lines = []
        for line in proc.stderr.splitlines():
            if line.startswith(("PLEASE submit", "Stack dump:")):
                break
            lines.append(line)
        raise BuildError(f"{' '.join(cmd)}\n" + "\n".join(lines).strip())
    return out_obj.read_bytes()


def build_program(
    clang: str, spec: ProgramSpec, scratch: Path, program_dir: Path = PROGRAM_DIR
) -> bytes:
    """Compile and link one program; returns the .so bytes."""
    objects = []
    for source in spec.sources:
        obj = scratch / (source.replace("/", "__") + ".o")
        objects.append((source, compile_source(clang, source, obj, program_dir)))
    try:
        return link(objects).elf
    except LinkError as exc:
        raise BuildError(f"linking {spec.name}.so: {exc}") from exc


def sha256_line(elf: bytes, name: str) -> str:
    return f"{hashlib.sha256(elf).hexdigest()}  {name}\n"


def main(argv: list[str] | None = None) -> int:
    """Build (or with --check, verify) every program under settlement/program/."""
    parser = argparse.ArgumentParser(prog="python -m settlement.toolchain.build")
    parser.add_argument("--check", action="store_true", help="rebuild and compare, write nothing")
    parser.add_argument(
        "--clang", default=None, help="clang executable (default $CLANG or clang-19)"
    )
    args = parser.parse_args(argv)
    clang = find_clang(args.clang)
    if clang is None:
        print(
            "build: clang-19 not found: using the committed .so files "
            "(install it with `apt-get install -y clang-19` to rebuild)"
        )
        return 0
    failures = []
    with tempfile.TemporaryDirectory(prefix="perpdex-sbf-") as tmp:
        for spec in program_specs():
            so_path = PROGRAM_DIR / f"{spec.name}.so"
            try:
                elf = build_program(clang, spec, Path(tmp))
            except BuildError as exc:
                failures.append(f"{so_path.name}: {exc}")
                continue
            digest = hashlib.sha256(elf).hexdigest()
            if args.check:
                committed = so_path.read_bytes() if so_path.exists() else None
                if committed != elf:
                    failures.append(
                        f"{so_path.name}: rebuilt bytes (sha256 {digest}) differ from the committed "
                        "file; run `make program` and commit the .so and .so.sha256"
                    )
                else:
                    print(f"build: {so_path.name} reproduced ({len(elf)} bytes, sha256 {digest})")
                continue
            so_path.write_bytes(elf)
            (PROGRAM_DIR / f"{spec.name}.so.sha256").write_text(sha256_line(elf, so_path.name))
            print(
                f"build: {so_path.name}: {len(elf)} bytes, sha256 {digest} ({clang_version(clang)})"
            )
    for failure in failures:
        print(f"build: error: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
