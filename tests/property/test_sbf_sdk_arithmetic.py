"""The SDK's hand-written 128-bit and signed-division helpers (perpdex_sol.h) against Python ints.

The header also builds on the host, so the same C runs here natively through ctypes over many
generated inputs; tests/integration/settlement/test_program_deploy.py runs it on-chain.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

SDK_DIR = Path(__file__).resolve().parents[2] / "settlement/program/sdk"
U64 = 2**64
I64_MIN, I64_MAX = -(2**63), 2**63 - 1
HOST_CC = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang-19")

SHIM = r"""
#include "perpdex_sol.h"
/* exported wrappers: the helpers themselves are always-inline */
void mul_wide(uint64_t a, uint64_t b, uint64_t out[2]) {
  pd_u128 p = pd_mul_u64_wide(a, b);
  out[0] = pd_u128_lo(p); out[1] = pd_u128_hi(p);
}
void div_u128(uint64_t hi, uint64_t lo, uint64_t d, uint64_t out[3]) {
  uint64_t rem;
  pd_u128 q = pd_div_u128_u64(pd_u128_make(hi, lo), d, &rem);
  out[0] = pd_u128_lo(q); out[1] = pd_u128_hi(q); out[2] = rem;
}
int mul_div_u64(uint64_t a, uint64_t b, uint64_t d, int up, uint64_t *out) {
  return pd_mul_div_u64(a, b, d, up ? PD_ROUND_UP : PD_ROUND_DOWN, out);
}
int mul_div_i64(int64_t a, uint64_t b, uint64_t d, int up, int64_t *out) {
  return pd_mul_div_i64(a, b, d, up ? PD_ROUND_UP : PD_ROUND_DOWN, out);
}
void div_i64(int64_t a, uint64_t d, int64_t out[4]) {
  out[0] = pd_div_i64_trunc(a, d); out[1] = pd_div_i64_floor(a, d);
  out[2] = pd_div_i64_ceil(a, d); out[3] = (int64_t)pd_mod_i64_floor(a, d);
}
uint64_t clz64(uint64_t v) { return pd_clz64(v); }
"""

pytestmark = pytest.mark.skipif(HOST_CC is None, reason="no host C compiler")

u64s = st.one_of(
    st.integers(0, U64 - 1),
    st.sampled_from([0, 1, 2, 2**32 - 1, 2**32, 2**32 + 1, 2**63 - 1, 2**63, U64 - 1]),
    st.integers(0, 2**33),
)
divisors = st.one_of(
    st.integers(1, U64 - 1),
    st.integers(1, 2**32 + 5),
    st.sampled_from([1, 2, 3, 2**32 - 1, 2**32, 2**32 + 1, 2**63, U64 - 1]),
)
i64s = st.one_of(
    st.integers(I64_MIN, I64_MAX), st.sampled_from([I64_MIN, I64_MIN + 1, -1, 0, 1, I64_MAX])
)


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ctypes.CDLL]:
    assert HOST_CC is not None
    tmp = tmp_path_factory.mktemp("sdk")
    (tmp / "shim.c").write_text(SHIM)
    subprocess.run(
        [HOST_CC, "-O2", "-shared", "-fPIC", f"-I{SDK_DIR}", "-o", str(tmp / "shim.so"),
         str(tmp / "shim.c")],
        check=True,
        capture_output=True,
    )  # fmt: skip
    shim = ctypes.CDLL(str(tmp / "shim.so"))
    u64, i64 = ctypes.c_uint64, ctypes.c_int64
    shim.mul_wide.argtypes = [u64, u64, ctypes.POINTER(u64)]
    shim.div_u128.argtypes = [u64, u64, u64, ctypes.POINTER(u64)]
    shim.mul_div_u64.argtypes = [u64, u64, u64, ctypes.c_int, ctypes.POINTER(u64)]
    shim.mul_div_i64.argtypes = [i64, u64, u64, ctypes.c_int, ctypes.POINTER(i64)]
    shim.div_i64.argtypes = [i64, u64, ctypes.POINTER(i64)]
    shim.clz64.argtypes = [u64]
    shim.clz64.restype = u64
    yield shim


def call_out(fn: Any, n: int, ctype: Any, *args: int) -> list[int]:
    out = (ctype * n)()
    fn(*args, out)
    return [int(v) for v in out]


@settings(max_examples=400, derandomize=True, deadline=None)
@given(a=u64s, b=u64s)
def test_mul_u64_wide_is_exact(lib: ctypes.CDLL, a: int, b: int) -> None:
    # Act
    lo, hi = call_out(lib.mul_wide, 2, ctypes.c_uint64, a, b)
    # Assert
    assert hi * U64 + lo == a * b


@settings(max_examples=600, derandomize=True, deadline=None)
@given(hi=u64s, lo=u64s, d=divisors)
def test_div_u128_u64_is_exact(lib: ctypes.CDLL, hi: int, lo: int, d: int) -> None:
    # Act
    q_lo, q_hi, rem = call_out(lib.div_u128, 3, ctypes.c_uint64, hi, lo, d)
    # Assert
    assert (q_hi * U64 + q_lo, rem) == divmod(hi * U64 + lo, d)


@settings(max_examples=400, derandomize=True, deadline=None)
@given(a=u64s, b=u64s, d=divisors, up=st.booleans())
def test_mul_div_u64_rounds_and_refuses_overflow(
    lib: ctypes.CDLL, a: int, b: int, d: int, up: bool
) -> None:
    # Arrange
    q, r = divmod(a * b, d)
    expected = q + (1 if up and r else 0)
    out = ctypes.c_uint64(12345)
    # Act
    ok = lib.mul_div_u64(a, b, d, int(up), ctypes.byref(out))
    # Assert
    if expected < U64:
        assert ok and out.value == expected
    else:
        assert not ok and out.value == 12345  # untouched


@settings(max_examples=400, derandomize=True, deadline=None)
@given(a=i64s, b=u64s, d=divisors, up=st.booleans())
def test_mul_div_i64_rounds_toward_the_named_infinity(
    lib: ctypes.CDLL, a: int, b: int, d: int, up: bool
) -> None:
    # Arrange
    expected = -((-a * b) // d) if up else (a * b) // d
    out = ctypes.c_int64(777)
    # Act
    ok = lib.mul_div_i64(a, b, d, int(up), ctypes.byref(out))
    # Assert
    if I64_MIN <= expected <= I64_MAX:
        assert ok and out.value == expected
    else:
        assert not ok and out.value == 777


@settings(max_examples=400, derandomize=True, deadline=None)
@given(a=i64s, d=divisors)
def test_signed_division_helpers(lib: ctypes.CDLL, a: int, d: int) -> None:
    # Act
    trunc, floor, ceil, mod = call_out(lib.div_i64, 4, ctypes.c_int64, a, d)
    # Assert
    assert floor == a // d
    assert ceil == -((-a) // d)
    assert trunc == (abs(a) // d) * (1 if a >= 0 else -1)
    assert mod % U64 == (a % d) % U64


def test_clz64_on_every_bit(lib: ctypes.CDLL) -> None:
    # Act / Assert
    for bit in range(64):
        assert lib.clz64(1 << bit) == 63 - bit
        assert lib.clz64((1 << bit) | 1) == 63 - bit
