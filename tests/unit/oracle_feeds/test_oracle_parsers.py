"""Unit tests for oracle_feeds: real mainnet dumps, conversions, refusals, round trips."""

from __future__ import annotations

import base64
import dataclasses
import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pythclient.pythaccounts import PythPriceAccount, PythPriceStatus
from pythclient.solana import SolanaPublicKey
from solders.pubkey import Pubkey

from exchange.core.units import I64_MAX, PRICE_PRECISION, U64_MAX
from oracle_feeds import errors
from oracle_feeds.encoders import (
    encode_pyth_pull_price_update_v2,
    encode_pyth_push,
    encode_switchboard_on_demand,
    encode_switchboard_v2,
)
from oracle_feeds.layouts import (
    PYTH_PUSH_DEVNET_PROGRAM_ID,
    PYTH_PUSH_PROGRAM_ID,
    PYTH_PUSH_SIZE,
    PYTH_RECEIVER_PROGRAM_ID,
    SWITCHBOARD_ON_DEMAND_PROGRAM_ID,
    SWITCHBOARD_V2_PROGRAM_ID,
    PythComponent,
    PythPriceInfo,
    PythPullAccount,
    PythPushAccount,
    PythStatus,
    SwitchboardOnDemandAccount,
    SwitchboardSubmission,
    SwitchboardV2Account,
    VerificationLevel,
)
from oracle_feeds.parsers import (
    decode_pyth_pull_price_update_v2,
    decode_pyth_push,
    decode_switchboard_on_demand,
    decode_switchboard_v2,
    load_account_json,
    oracle_price_from_pythclient,
    parse_oracle_account,
    parse_pyth_pull_price_update_v2,
    parse_pyth_push,
    parse_switchboard_on_demand,
    parse_switchboard_v2,
)
from oracle_feeds.price import (
    OraclePrice,
    OracleSource,
    confidence_from_raw,
    div_round_half_away,
    price_from_raw,
)

FIXTURES = Path(__file__).parents[2] / "fixtures" / "oracle-accounts"
PULL_JSON = FIXTURES / "pyth-pull-price-update-v2.json"
ON_DEMAND_JSON = FIXTURES / "switchboard-on-demand-pull-feed.json"
V2_JSON = FIXTURES / "switchboard-v2-aggregator.json"
BONK_FEED_ID = bytes.fromhex("72b021217ca3fe68922a19aaf990109cb9d84e9ad004b4d2025ad6f529314419")


@pytest.fixture(scope="module")
def pull() -> Any:
    return load_account_json(PULL_JSON)


@pytest.fixture(scope="module")
def on_demand() -> Any:
    return load_account_json(ON_DEMAND_JSON)


@pytest.fixture(scope="module")
def v2() -> Any:
    return load_account_json(V2_JSON)


def _patch(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value) :]


def _raises(exc: type[errors.OracleError], code: str, fn: Any, *args: Any, **kw: Any) -> str:
    with pytest.raises(exc) as info:
        fn(*args, **kw)
    assert info.value.code == code
    return str(info.value)


def _push_record(**overrides: Any) -> PythPushAccount:
    base: dict[str, Any] = {
        "exponent": -8,
        "agg": PythPriceInfo(
            price=6_543_210_000_000, conf=1_234_567, status=PythStatus.TRADING, pub_slot=1000
        ),
        "timestamp": 1_717_074_117,
        "last_slot": 1001,
        "valid_slot": 999,
        "min_pub": 3,
        "max_latency": 0,
        "product": Pubkey.from_bytes(bytes([7]) * 32),
        "components": (
            PythComponent(
                publisher=Pubkey.from_bytes(bytes([9]) * 32),
                agg=PythPriceInfo(price=6_543_200_000_000, conf=10, status=PythStatus.TRADING),
                latest=PythPriceInfo(price=6_543_300_000_000, conf=11, status=PythStatus.TRADING),
            ),
        ),
    }
    base.update(overrides)
    return PythPushAccount(**base)


# ---------------------------------------------------------------- real mainnet dumps


def test_load_account_json_reads_the_dump_shape(pull: Any, on_demand: Any, v2: Any) -> None:
    assert pull.pubkey == Pubkey.from_string("DBE3N8uNjhKPRHfANdwGvCZghWXyLPdqdSbEW2XFwBiX")
    assert pull.owner == PYTH_RECEIVER_PROGRAM_ID
    assert (len(pull.data), pull.lamports, pull.executable) == (134, 1_000_000_000, False)
    assert on_demand.owner == SWITCHBOARD_ON_DEMAND_PROGRAM_ID and len(on_demand.data) == 3208
    assert v2.owner == SWITCHBOARD_V2_PROGRAM_ID and len(v2.data) == 3851
    pubkey, owner, data, lamports, executable = pull  # a plain tuple as well
    assert (pubkey, owner, data, lamports, executable) == tuple(pull)


def test_pyth_pull_mainnet_bonk_matches_readme(pull: Any) -> None:
    record = decode_pyth_pull_price_update_v2(pull.data, pull.owner)
    assert record.verification_level is VerificationLevel.FULL
    assert (record.price, record.conf, record.exponent) == (345_526, 517, -10)
    assert (record.publish_time, record.ema_price, record.posted_slot) == (
        1_717_074_117,
        335_763,
        268_841_733,
    )
    assert record.feed_id == BONK_FEED_ID

    price = parse_pyth_pull_price_update_v2(pull.data, pull.owner, expected_feed_id=BONK_FEED_ID)
    # 345526e-10 USD = 34.5526 micro-USD per BONK: nearest -> 35; conf 0.0517 -> ceil 1.
    assert price == OraclePrice(
        price=35,
        confidence=1,
        slot=268_841_733,
        publish_time_s=1_717_074_117,
        source=OracleSource.PYTH_PULL,
        raw_mantissa=345_526,
        raw_exponent=-10,
        raw_confidence=517,
        raw_confidence_exponent=-10,
        status_ok=True,
        feed_id=BONK_FEED_ID,
    )
    # Exact rescale for a 1M-BONK market from the raw fields: 34.5526 USD -> 34_552_600.
    assert price.raw_mantissa * 10**6 * PRICE_PRECISION // 10**-price.raw_exponent == 34_552_600


def test_pyth_pull_encoder_reproduces_the_mainnet_bytes(pull: Any) -> None:
    record = decode_pyth_pull_price_update_v2(pull.data, pull.owner)
    assert encode_pyth_pull_price_update_v2(record) == pull.data


def test_switchboard_on_demand_mainnet_dsol_matches_readme(on_demand: Any) -> None:
    record = decode_switchboard_on_demand(on_demand.data, on_demand.owner)
    assert record.value == 226_512_645_666_151_398_640  # 226.5126456661514 * 1e18
    assert record.std_dev == 62_649_480_779_931_408  # 0.0626494807799314 * 1e18
    assert (record.slot, record.max_staleness, record.name) == (339_847_490, 150, b"dSOL")
    assert (record.num_samples, record.min_sample_size, len(record.submissions)) == (3, 3, 14)

    price = parse_switchboard_on_demand(on_demand.data, on_demand.owner)
    # value * 1e6 / 1e18 = 226512645.666151398640 -> nearest 226512646 (floor would be ...645)
    assert Fraction(record.value * PRICE_PRECISION, 10**18) == Fraction(
        226_512_645_666_151_398_640, 10**12
    )
    assert price.price == 226_512_646
    assert price.confidence == 62_650  # 62649.480779931408 rounded up
    assert (price.slot, price.publish_time_s) == (339_847_490, 1_731_530_827)
    assert (price.raw_mantissa, price.raw_exponent) == (record.value, -18)
    assert price.source is OracleSource.SWITCHBOARD_ON_DEMAND and price.status_ok
    assert price.feed_id is None


def test_switchboard_v2_mainnet_matches_readme(v2: Any) -> None:
    record = decode_switchboard_v2(v2.data, v2.owner)
    assert (record.result_mantissa, record.result_scale) == (1_338_737_824_817_671, 16)
    assert (record.num_success, record.round_open_slot) == (4, 252_778_507)
    assert (record.min_oracle_results, record.name) == (3, b"RLB/USD")
    price = parse_switchboard_v2(v2.data, v2.owner)
    assert price.price == 133_874  # 0.1338737824817671 * 1e6 = 133873.78... -> 133874
    assert (price.confidence, price.slot, price.publish_time_s) == (0, 252_778_507, 1_709_860_939)
    assert price.source is OracleSource.SWITCHBOARD_V2 and price.status_ok


def test_encoders_reproduce_decoded_switchboard_records(on_demand: Any, v2: Any) -> None:
    sod = decode_switchboard_on_demand(on_demand.data, on_demand.owner)
    assert decode_switchboard_on_demand(encode_switchboard_on_demand(sod), on_demand.owner) == sod
    sv2 = decode_switchboard_v2(v2.data, v2.owner)
    assert decode_switchboard_v2(encode_switchboard_v2(sv2), v2.owner) == sv2


def test_dispatch_matches_the_direct_parsers(pull: Any, on_demand: Any, v2: Any) -> None:
    push = encode_pyth_push(_push_record())
    cases = [
        (OracleSource.PYTH_PULL, pull, parse_pyth_pull_price_update_v2),
        (OracleSource.SWITCHBOARD_ON_DEMAND, on_demand, parse_switchboard_on_demand),
        (OracleSource.SWITCHBOARD_V2, v2, parse_switchboard_v2),
    ]
    for source, dump, fn in cases:
        assert parse_oracle_account(source, dump.data, dump.owner) == fn(dump.data, dump.owner)
    assert parse_oracle_account(OracleSource.PYTH_PUSH, push, PYTH_PUSH_PROGRAM_ID) == (
        parse_pyth_push(push, PYTH_PUSH_PROGRAM_ID)
    )
    # Data of one format presented as another is refused by the owner check.
    _raises(
        errors.WrongOwnerError,
        "ORACLE_WRONG_OWNER",
        parse_oracle_account,
        OracleSource.SWITCHBOARD_V2,
        pull.data,
        pull.owner,
    )
    _raises(
        errors.UnsupportedVersionError,
        "ORACLE_UNSUPPORTED_VERSION",
        parse_oracle_account,
        99,
        pull.data,
        pull.owner,
    )


# ---------------------------------------------------------------- golden conversions


@pytest.mark.parametrize(
    ("mantissa", "exponent", "expected"),
    [
        (345_526, -10, 35),  # 34.5526
        (5, -7, 1),  # 0.5 exactly: tie away from zero
        (4_999_999, -13, 0),  # 0.4999999 -> refused below
        (15, -7, 2),  # 1.5 -> 2
        (25, -7, 3),  # 2.5 -> 3 (not banker's 2)
        (2_499_999_999, -15, 2),  # 2.499999999 -> 2
        (1, -6, 1),  # exactly one micro-unit
        (1, 0, 1_000_000),
        (3, 2, 300_000_000),  # positive exponent: exact multiply
        (I64_MAX, -6, I64_MAX),  # the largest representable price
        (226_512_645_666_151_398_640, -18, 226_512_646),
        (226_512_645_500_000_000_000, -18, 226_512_646),  # .5 tie -> up
        (226_512_645_499_999_999_999, -18, 226_512_645),
    ],
)
def test_price_conversion_golden(mantissa: int, exponent: int, expected: int) -> None:
    if expected == 0:
        msg = _raises(
            errors.ValueOutOfRangeError,
            "ORACLE_VALUE_OUT_OF_RANGE",
            price_from_raw,
            mantissa,
            exponent,
        )
        assert "rounds to 0" in msg
    else:
        assert price_from_raw(mantissa, exponent) == expected


@pytest.mark.parametrize(
    ("mantissa", "exponent", "expected"),
    [
        (517, -10, 1),  # 0.0517 -> up to 1
        (0, -10, 0),
        (1_000_000, -12, 1),  # exactly 1: no rounding
        (1_000_001, -12, 2),  # a hair above 1 -> 2
        (62_649_480_779_931_408, -18, 62_650),
        (7, 3, 7_000_000_000),
        (U64_MAX, -6, U64_MAX),
    ],
)
def test_confidence_conversion_rounds_up(mantissa: int, exponent: int, expected: int) -> None:
    assert confidence_from_raw(mantissa, exponent) == expected


def test_conversion_refuses_values_that_do_not_fit() -> None:
    cases: list[tuple[Any, tuple[Any, ...], type[errors.OracleError], str]] = [
        (price_from_raw, (I64_MAX + 1, -6), errors.ValueOutOfRangeError, "i64"),
        (price_from_raw, (I64_MAX, 0), errors.ValueOutOfRangeError, "i64"),
        (price_from_raw, (0, -8), errors.NonPositivePriceError, "expected > 0"),
        (price_from_raw, (-1, -8), errors.NonPositivePriceError, "expected > 0"),
        (price_from_raw, (1, 39), errors.ValueOutOfRangeError, "exponent"),
        (price_from_raw, (1, -39), errors.ValueOutOfRangeError, "exponent"),
        (confidence_from_raw, (U64_MAX + 1, -6), errors.ValueOutOfRangeError, "u64"),
        (confidence_from_raw, (-1, -6), errors.ValueOutOfRangeError, ">= 0"),
    ]
    for fn, args, exc, text in cases:
        with pytest.raises(exc) as info:
            fn(*args)
        assert text in str(info.value)


def test_div_round_half_away_is_symmetric() -> None:
    assert [div_round_half_away(n, 2) for n in (-5, -3, -1, 1, 3, 5)] == [-3, -2, -1, 1, 2, 3]
    assert div_round_half_away(-4, 3) == -1 and div_round_half_away(-5, 3) == -2
    with pytest.raises(ValueError):
        div_round_half_away(1, 0)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 10**30), st.integers(-30, 8))
def test_price_conversion_is_nearest_ties_away(mantissa: int, exponent: int) -> None:
    exact = Fraction(mantissa) * Fraction(10) ** exponent * PRICE_PRECISION
    floor = exact.numerator // exact.denominator
    reference = floor + (1 if exact - floor >= Fraction(1, 2) else 0)
    if 1 <= reference <= I64_MAX:
        assert price_from_raw(mantissa, exponent) == reference
    else:
        with pytest.raises(errors.ValueOutOfRangeError):
            price_from_raw(mantissa, exponent)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 10**30), st.integers(-30, 8))
def test_confidence_conversion_is_ceiling(mantissa: int, exponent: int) -> None:
    exact = Fraction(mantissa) * Fraction(10) ** exponent * PRICE_PRECISION
    reference = -((-exact.numerator) // exact.denominator)
    if reference <= U64_MAX:
        got = confidence_from_raw(mantissa, exponent)
        assert got == reference and got >= exact
    else:
        with pytest.raises(errors.ValueOutOfRangeError):
            confidence_from_raw(mantissa, exponent)


def test_oracle_price_is_frozen_slotted_and_validated(pull: Any) -> None:
    price = parse_pyth_pull_price_update_v2(pull.data, pull.owner)
    with pytest.raises(dataclasses.FrozenInstanceError):
        price.price = 1  # type: ignore[misc]
    assert not hasattr(price, "__dict__")
    bad_fields: list[tuple[str, Any]] = [
        ("price", 0),
        ("price", I64_MAX + 1),
        ("confidence", -1),
        ("slot", -1),
        ("slot", U64_MAX + 1),
        ("raw_exponent", 100),
        ("feed_id", b"short"),
        ("status_ok", 1),
        ("source", 2),
    ]
    for field, bad in bad_fields:
        changes: dict[str, Any] = {field: bad}
        with pytest.raises(errors.OracleValueError):
            dataclasses.replace(price, **changes)
    positional: Any = OraclePrice
    with pytest.raises(TypeError):
        positional(35, 1)  # kw_only


# ---------------------------------------------------------------- refusals


def test_every_error_has_a_unique_stable_code() -> None:
    codes = [cls.code for cls in errors.ALL_ERRORS]
    assert len(codes) == len(set(codes))
    assert all(code.startswith("ORACLE_") and code.isupper() for code in codes)
    assert all(issubclass(cls, errors.OracleError) for cls in errors.ALL_ERRORS)


def test_pyth_pull_refusals(pull: Any) -> None:
    data, owner = pull.data, pull.owner
    fn = parse_pyth_pull_price_update_v2
    msg = _raises(errors.WrongOwnerError, "ORACLE_WRONG_OWNER", fn, data, SWITCHBOARD_V2_PROGRAM_ID)
    assert str(PYTH_RECEIVER_PROGRAM_ID) in msg and str(SWITCHBOARD_V2_PROGRAM_ID) in msg
    _raises(errors.WrongOwnerError, "ORACLE_WRONG_OWNER", fn, data, str(owner))
    msg = _raises(errors.WrongSizeError, "ORACLE_WRONG_SIZE", fn, data[:-1], owner)
    assert "expected 134 bytes" in msg and "got 133" in msg
    _raises(errors.WrongSizeError, "ORACLE_WRONG_SIZE", fn, data + b"\0", owner)
    _raises(errors.WrongSizeError, "ORACLE_WRONG_SIZE", fn, b"", owner)
    _raises(
        errors.BadDiscriminatorError, "ORACLE_BAD_DISCRIMINATOR", fn, _patch(data, 0, b"\0"), owner
    )
    msg = _raises(errors.BadEnumTagError, "ORACLE_BAD_TAG", fn, _patch(data, 40, b"\x02"), owner)
    assert "got 2" in msg
    _raises(errors.MalformedAccountError, "ORACLE_MALFORMED", fn, "not bytes", owner)
    msg = _raises(
        errors.FeedIdMismatchError,
        "ORACLE_FEED_MISMATCH",
        fn,
        data,
        owner,
        expected_feed_id=bytes(32),
    )
    assert BONK_FEED_ID.hex() in msg
    record = decode_pyth_pull_price_update_v2(data, owner)
    for bad_price in (0, -345_526):
        bad = encode_pyth_pull_price_update_v2(dataclasses.replace(record, price=bad_price))
        _raises(errors.NonPositivePriceError, "ORACLE_NON_POSITIVE_PRICE", fn, bad, owner)
    tiny = encode_pyth_pull_price_update_v2(dataclasses.replace(record, price=4, exponent=-7))
    _raises(errors.ValueOutOfRangeError, "ORACLE_VALUE_OUT_OF_RANGE", fn, tiny, owner)
    huge_expo = encode_pyth_pull_price_update_v2(dataclasses.replace(record, exponent=-(2**31)))
    _raises(errors.ValueOutOfRangeError, "ORACLE_VALUE_OUT_OF_RANGE", fn, huge_expo, owner)


def test_pyth_pull_partial_verification_shifts_offsets(pull: Any) -> None:
    full = decode_pyth_pull_price_update_v2(pull.data, pull.owner)
    partial = dataclasses.replace(
        full, verification_level=VerificationLevel.PARTIAL, num_signatures=5
    )
    data = encode_pyth_pull_price_update_v2(partial)
    assert len(data) == 134 and data[40:42] == b"\x00\x05"
    assert data[42:74] == BONK_FEED_ID  # feed id moved from 41 to 42
    assert data[126:134] == (268_841_733).to_bytes(8, "little")  # posted_slot at 125 + 1
    assert decode_pyth_pull_price_update_v2(data, pull.owner) == partial
    price = parse_pyth_pull_price_update_v2(data, pull.owner)
    assert not price.status_ok
    assert price == dataclasses.replace(
        parse_pyth_pull_price_update_v2(pull.data, pull.owner), status_ok=False
    )


def test_switchboard_on_demand_refusals(on_demand: Any) -> None:
    data, owner = on_demand.data, on_demand.owner
    fn = parse_switchboard_on_demand
    _raises(errors.WrongOwnerError, "ORACLE_WRONG_OWNER", fn, data, SWITCHBOARD_V2_PROGRAM_ID)
    _raises(errors.WrongSizeError, "ORACLE_WRONG_SIZE", fn, data[:3200], owner)
    _raises(errors.WrongSizeError, "ORACLE_WRONG_SIZE", fn, data + bytes(8), owner)
    _raises(
        errors.BadDiscriminatorError, "ORACLE_BAD_DISCRIMINATOR", fn, _patch(data, 7, b"\0"), owner
    )
    record = decode_switchboard_on_demand(data, owner)

    def enc(**kw: Any) -> bytes:
        return encode_switchboard_on_demand(dataclasses.replace(record, **kw))

    _raises(errors.NonPositivePriceError, "ORACLE_NON_POSITIVE_PRICE", fn, enc(value=0), owner)
    _raises(
        errors.NonPositivePriceError, "ORACLE_NON_POSITIVE_PRICE", fn, enc(value=-(10**18)), owner
    )
    _raises(errors.NoResultError, "ORACLE_NO_RESULT", fn, enc(slot=0), owner)
    _raises(errors.ValueOutOfRangeError, "ORACLE_VALUE_OUT_OF_RANGE", fn, enc(std_dev=-1), owner)
    # 2**110 / 1e18 * 1e6 does not fit an i64 price
    _raises(errors.ValueOutOfRangeError, "ORACLE_VALUE_OUT_OF_RANGE", fn, enc(value=2**110), owner)
    assert not fn(enc(num_samples=2), owner).status_ok  # below min_sample_size 3


def test_switchboard_v2_refusals(v2: Any) -> None:
    data, owner = v2.data, v2.owner
    fn = parse_switchboard_v2
    _raises(
        errors.WrongOwnerError, "ORACLE_WRONG_OWNER", fn, data, SWITCHBOARD_ON_DEMAND_PROGRAM_ID
    )
    _raises(errors.WrongSizeError, "ORACLE_WRONG_SIZE", fn, data[:-1], owner)
    _raises(
        errors.BadDiscriminatorError, "ORACLE_BAD_DISCRIMINATOR", fn, _patch(data, 0, b"x"), owner
    )
    record = decode_switchboard_v2(data, owner)

    def enc(**kw: Any) -> bytes:
        return encode_switchboard_v2(dataclasses.replace(record, **kw))

    _raises(
        errors.NonPositivePriceError, "ORACLE_NON_POSITIVE_PRICE", fn, enc(result_mantissa=0), owner
    )
    _raises(
        errors.NonPositivePriceError,
        "ORACLE_NON_POSITIVE_PRICE",
        fn,
        enc(result_mantissa=-5),
        owner,
    )
    _raises(errors.NoResultError, "ORACLE_NO_RESULT", fn, enc(round_open_slot=0), owner)
    _raises(
        errors.ValueOutOfRangeError,
        "ORACLE_VALUE_OUT_OF_RANGE",
        fn,
        enc(result_scale=4_000_000_000),
        owner,
    )
    assert not fn(enc(num_success=2), owner).status_ok  # below min_oracle_results 3
    assert fn(enc(std_mantissa=15, std_scale=5), owner).confidence == 150  # 0.00015 -> 150


def test_pyth_push_refusals() -> None:
    data = encode_pyth_push(_push_record())
    owner = PYTH_PUSH_PROGRAM_ID
    fn = parse_pyth_push
    _raises(errors.WrongOwnerError, "ORACLE_WRONG_OWNER", fn, data, PYTH_PUSH_DEVNET_PROGRAM_ID)
    assert fn(data, PYTH_PUSH_DEVNET_PROGRAM_ID, program_id=PYTH_PUSH_DEVNET_PROGRAM_ID).price > 0
    _raises(errors.WrongSizeError, "ORACLE_WRONG_SIZE", fn, data[:-1], owner)
    _raises(errors.WrongSizeError, "ORACLE_WRONG_SIZE", fn, data[:100], owner)
    msg = _raises(errors.BadMagicError, "ORACLE_BAD_MAGIC", fn, _patch(data, 0, b"\0"), owner)
    assert "0xa1b2c3d4" in msg
    assert issubclass(errors.BadMagicError, errors.BadDiscriminatorError)
    _raises(
        errors.UnsupportedVersionError,
        "ORACLE_UNSUPPORTED_VERSION",
        fn,
        _patch(data, 4, (1).to_bytes(4, "little")),
        owner,
    )
    _raises(
        errors.WrongAccountTypeError,
        "ORACLE_WRONG_ACCOUNT_TYPE",
        fn,
        _patch(data, 8, (2).to_bytes(4, "little")),  # product account
        owner,
    )
    _raises(
        errors.WrongAccountTypeError,
        "ORACLE_WRONG_ACCOUNT_TYPE",
        fn,
        encode_pyth_push(_push_record(price_type=0)),
        owner,
    )
    _raises(
        errors.WrongSizeError,
        "ORACLE_WRONG_SIZE",
        fn,
        _patch(data, 12, (241).to_bytes(4, "little")),  # header size not 240 + 96n
        owner,
    )
    _raises(
        errors.BadEnumTagError,
        "ORACLE_BAD_TAG",
        fn,
        _patch(data, 224, (9).to_bytes(4, "little")),  # aggregate status
        owner,
    )
    for bad_price in (0, -1):
        bad = encode_pyth_push(_push_record(agg=PythPriceInfo(price=bad_price, conf=1)))
        _raises(errors.NonPositivePriceError, "ORACLE_NON_POSITIVE_PRICE", fn, bad, owner)
    halted = _push_record(agg=PythPriceInfo(price=5 * 10**8, conf=1, status=PythStatus.HALTED))
    assert not fn(encode_pyth_push(halted), owner).status_ok


def test_pythclient_silent_failure_is_caught() -> None:
    data = encode_pyth_push(_push_record())
    # A component with an unknown status: pythclient's enum raises, and the RPC path
    # (update_with_rpc_response) logs and swallows it, leaving the account unset.
    bad = _patch(data, 240 + 32 + 16, (9).to_bytes(4, "little"))
    account = PythPriceAccount(SolanaPublicKey.NULL_KEY, None)
    account.update_with_rpc_response(1, {"data": [base64.b64encode(bad).decode(), "base64"]})
    assert account.aggregate_price_info is None  # the silent failure
    _raises(errors.MalformedAccountError, "ORACLE_MALFORMED", oracle_price_from_pythclient, account)
    _raises(errors.BadEnumTagError, "ORACLE_BAD_TAG", parse_pyth_push, bad, PYTH_PUSH_PROGRAM_ID)


def test_pyth_push_encoder_is_read_identically_by_pythclient() -> None:
    record = _push_record(max_latency=0, prev_slot=990, prev_price=6_500_000_000_000)
    data = encode_pyth_push(record)
    assert len(data) == PYTH_PUSH_SIZE
    account = PythPriceAccount(SolanaPublicKey.NULL_KEY, None)
    account.update_with_rpc_response(
        1000, {"data": [base64.b64encode(data).decode(), "base64"], "lamports": 1}
    )
    info = account.aggregate_price_info
    assert info is not None
    assert (info.raw_price, info.raw_confidence_interval, info.pub_slot) == (
        6_543_210_000_000,
        1_234_567,
        1000,
    )
    assert info.price_status is PythPriceStatus.TRADING
    assert (account.exponent, account.timestamp, account.min_publishers) == (-8, 1_717_074_117, 3)
    assert (account.last_slot, account.valid_slot, account.prev_slot) == (1001, 999, 990)
    assert account.max_latency == 25  # 0 means the default 25 slots
    assert str(account.product_account_key) == str(record.product)
    assert [str(c.publisher_key) for c in account.price_components] == [
        str(Pubkey.from_bytes(bytes([9]) * 32))
    ]
    assert account.price_components[0].latest_price_info.raw_price == 6_543_300_000_000
    price = oracle_price_from_pythclient(account)
    assert price == parse_pyth_push(data, PYTH_PUSH_PROGRAM_ID)
    assert (price.price, price.confidence) == (65_432_100_000, 12_346)  # 65432.1, 0.01234567


def test_encoders_refuse_out_of_range_fields(pull: Any) -> None:
    record = decode_pyth_pull_price_update_v2(pull.data, pull.owner)
    for kw in ({"price": 2**63}, {"conf": -1}, {"exponent": 2**31}, {"feed_id": b"x"}):
        with pytest.raises(errors.ValueOutOfRangeError):
            encode_pyth_pull_price_update_v2(dataclasses.replace(record, **kw))
    with pytest.raises(errors.ValueOutOfRangeError):
        encode_pyth_pull_price_update_v2(dataclasses.replace(record, num_signatures=3))
    with pytest.raises(errors.ValueOutOfRangeError):
        encode_pyth_push(_push_record(components=(PythComponent(publisher=Pubkey.default()),) * 33))
    with pytest.raises(errors.ValueOutOfRangeError):
        encode_switchboard_v2(
            SwitchboardV2Account(
                result_mantissa=2**127, result_scale=0, round_open_slot=1, round_open_timestamp=0
            )
        )
    with pytest.raises(errors.ValueOutOfRangeError):
        encode_switchboard_on_demand(
            SwitchboardOnDemandAccount(value=1, std_dev=0, slot=1, name=b"x" * 33)
        )


# ---------------------------------------------------------------- account dumps


def _dump(tmp_path: Path, doc: Any) -> Path:
    path = tmp_path / "acct.json"
    path.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return path


def test_load_account_json_refusals(tmp_path: Path) -> None:
    good = json.loads(PULL_JSON.read_text())
    assert load_account_json(_dump(tmp_path, good)) == load_account_json(PULL_JSON)

    def variant(**account: Any) -> dict[str, Any]:
        return {**good, "account": {**good["account"], **account}}

    bad_docs: list[Any] = [
        "{not json",
        [],
        {"pubkey": good["pubkey"]},
        {**good, "pubkey": "not-a-key"},
        variant(owner=5),
        variant(data=[good["account"]["data"][0], "base58"]),
        variant(data=["!!!", "base64"]),
        variant(space=133),
        variant(lamports=-1),
        variant(executable="no"),
    ]
    for doc in bad_docs:
        _raises(
            errors.AccountDumpError,
            "ORACLE_BAD_ACCOUNT_DUMP",
            load_account_json,
            _dump(tmp_path, doc),
        )
    _raises(
        errors.AccountDumpError,
        "ORACLE_BAD_ACCOUNT_DUMP",
        load_account_json,
        tmp_path / "missing.json",
    )


# ---------------------------------------------------------------- round-trip properties

I64 = st.integers(-(2**63), 2**63 - 1)
U64 = st.integers(0, 2**64 - 1)
U32 = st.integers(0, 2**32 - 1)
U8 = st.integers(0, 255)
I128 = st.integers(-(2**127), 2**127 - 1)
KEYS = st.binary(min_size=32, max_size=32).map(Pubkey.from_bytes)
NONZERO_KEYS = st.binary(min_size=32, max_size=32).filter(any).map(Pubkey.from_bytes)
NAMES = st.binary(max_size=32).map(lambda b: b.rstrip(b"\0"))
EXPONENTS = st.integers(-18, 4)


def _check_parse(
    parse: Any, data: bytes, owner: Pubkey, raw: tuple[int, int], raw_conf: tuple[int, int]
) -> Any:
    """Parse; if the raw values are usable, return the OraclePrice, else check the refusal."""
    try:
        expected = (price_from_raw(*raw), confidence_from_raw(*raw_conf))
    except errors.OracleValueError as exc:
        with pytest.raises(type(exc)):
            parse(data, owner)
        return None
    price = parse(data, owner)
    assert (price.price, price.confidence) == expected
    assert (price.raw_mantissa, price.raw_exponent) == raw
    assert (price.raw_confidence, price.raw_confidence_exponent) == raw_conf
    return price


pull_records = st.builds(
    PythPullAccount,
    feed_id=st.binary(min_size=32, max_size=32),
    price=st.one_of(st.integers(1, 10**12), I64),
    conf=U64,
    exponent=EXPONENTS,
    publish_time=I64,
    posted_slot=U64,
    prev_publish_time=I64,
    ema_price=I64,
    ema_conf=U64,
    verification_level=st.sampled_from(VerificationLevel),
    num_signatures=U8,
    write_authority=KEYS,
).map(
    lambda r: (
        dataclasses.replace(r, num_signatures=0)
        if r.verification_level is VerificationLevel.FULL
        else r
    )
)


@settings(max_examples=150, deadline=None)
@given(pull_records)
def test_pyth_pull_round_trip(record: PythPullAccount) -> None:
    data = encode_pyth_pull_price_update_v2(record)
    owner = PYTH_RECEIVER_PROGRAM_ID
    assert len(data) == 134
    assert decode_pyth_pull_price_update_v2(data, owner) == record
    price = _check_parse(
        parse_pyth_pull_price_update_v2,
        data,
        owner,
        (record.price, record.exponent),
        (record.conf, record.exponent),
    )
    if price is not None:
        assert (price.slot, price.publish_time_s) == (record.posted_slot, record.publish_time)
        assert price.status_ok == (record.verification_level is VerificationLevel.FULL)
        assert price.feed_id == record.feed_id


submissions = st.builds(
    SwitchboardSubmission, oracle=NONZERO_KEYS, slot=U64, landed_at=U64, value=I128
)
on_demand_records = st.builds(
    SwitchboardOnDemandAccount,
    value=st.one_of(st.integers(-(10**30), 10**33), I128),
    std_dev=st.integers(0, 10**30),
    slot=st.integers(1, 2**64 - 1),
    mean=I128,
    value_range=I128,
    min_value=I128,
    max_value=I128,
    num_samples=U8,
    submission_idx=U8,
    min_slot=U64,
    max_slot=U64,
    last_update_timestamp=I64,
    lut_slot=U64,
    initialized_at=I64,
    permissions=U64,
    max_variance=U64,
    min_responses=U32,
    min_sample_size=U8,
    historical_result_idx=U8,
    max_staleness=U32,
    name=NAMES,
    authority=KEYS,
    queue=KEYS,
    feed_hash=st.binary(min_size=32, max_size=32),
    submissions=st.lists(submissions, max_size=4).map(tuple),
)


@settings(max_examples=100, deadline=None)
@given(on_demand_records)
def test_switchboard_on_demand_round_trip(record: SwitchboardOnDemandAccount) -> None:
    data = encode_switchboard_on_demand(record)
    owner = SWITCHBOARD_ON_DEMAND_PROGRAM_ID
    assert len(data) == 3208
    assert decode_switchboard_on_demand(data, owner) == record
    price = _check_parse(
        parse_switchboard_on_demand, data, owner, (record.value, -18), (record.std_dev, -18)
    )
    if price is not None:
        assert (price.slot, price.publish_time_s) == (record.slot, record.last_update_timestamp)
        assert price.status_ok == (record.num_samples >= record.min_sample_size)


v2_records = st.builds(
    SwitchboardV2Account,
    result_mantissa=st.integers(-(10**20), 10**30),
    result_scale=st.integers(0, 28),
    round_open_slot=st.integers(1, 2**64 - 1),
    round_open_timestamp=I64,
    num_success=U32,
    num_error=U32,
    is_closed=st.booleans(),
    std_mantissa=st.integers(0, 10**20),
    std_scale=st.integers(0, 28),
    min_oracle_results=U32,
    name=NAMES,
)


@settings(max_examples=100, deadline=None)
@given(v2_records)
def test_switchboard_v2_round_trip(record: SwitchboardV2Account) -> None:
    data = encode_switchboard_v2(record)
    owner = SWITCHBOARD_V2_PROGRAM_ID
    assert len(data) == 3851
    assert decode_switchboard_v2(data, owner) == record
    price = _check_parse(
        parse_switchboard_v2,
        data,
        owner,
        (record.result_mantissa, -record.result_scale),
        (record.std_mantissa, -record.std_scale),
    )
    if price is not None:
        assert price.slot == record.round_open_slot
        assert price.status_ok == (record.num_success >= record.min_oracle_results)


infos = st.builds(
    PythPriceInfo,
    price=st.one_of(st.integers(1, 10**12), I64),
    conf=U64,
    status=st.sampled_from(PythStatus),
    corp_act=U32,
    pub_slot=U64,
)
push_records = st.builds(
    PythPushAccount,
    exponent=EXPONENTS,
    agg=infos,
    timestamp=I64,
    num_qt=U32,
    last_slot=U64,
    valid_slot=U64,
    ema_price=st.tuples(I64, I64, I64),
    ema_conf=st.tuples(I64, I64, I64),
    min_pub=U8,
    message_sent=U8,
    max_latency=U8,
    product=KEYS,
    next_price=KEYS,
    prev_slot=U64,
    prev_price=I64,
    prev_conf=U64,
    prev_timestamp=I64,
    components=st.lists(
        st.builds(PythComponent, publisher=NONZERO_KEYS, agg=infos, latest=infos), max_size=3
    ).map(tuple),
)


@settings(max_examples=100, deadline=None)
@given(push_records)
def test_pyth_push_round_trip_through_pythclient(record: PythPushAccount) -> None:
    data = encode_pyth_push(record)
    owner = PYTH_PUSH_PROGRAM_ID
    assert len(data) == PYTH_PUSH_SIZE
    assert decode_pyth_push(data, owner) == record
    price = _check_parse(
        parse_pyth_push,
        data,
        owner,
        (record.agg.price, record.exponent),
        (record.agg.conf, record.exponent),
    )
    if price is not None:
        assert (price.slot, price.publish_time_s) == (record.agg.pub_slot, record.timestamp)
        assert price.status_ok == (record.agg.status is PythStatus.TRADING)
