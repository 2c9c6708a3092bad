/*
 * pd_math.c: docs/PROTOCOL.md to the unit, in integer C with 64-bit operations only.
 *
 * Conventions: signed values are handled as (negative, magnitude) pairs so no signed `/` or
 * `%` is ever emitted; products of two 64-bit values are pd_mul_u64_wide (u128), products of a
 * 64-bit and a 128-bit value are three 64-bit limbs, and every division goes through
 * pd_div_2by1 (128 / 64 with the high word below the divisor). Outputs are written only after
 * every check passed.
 */
#include "pd_math.h"

#define PD_RATIO_PRECISION 1000000ull
#define PD_BASE_PRECISION 1000000000ull
#define PD_U64_MAX 0xffffffffffffffffull
#define PD_I64_MAX_U ((uint64_t)INT64_MAX)
#define PD_I64_MIN_MAG ((uint64_t)INT64_MAX + 1ull)

/* ------------------------------------------------------------------ small helpers */
/* Helpers that take or return 128-bit values are forced inline: BPF calls cannot return them. */
/* v fits i64 when it is a (negative, magnitude) pair with the magnitude in range. */
static bool sign_mag_fits_i64(bool negative, pd_u128 magnitude) {
  if (pd_u128_hi(magnitude) != 0) return false;
  return pd_u128_lo(magnitude) <= (negative ? PD_I64_MIN_MAG : PD_I64_MAX_U);
}

static int64_t sign_mag_to_i64(bool negative, uint64_t magnitude) {
  return negative ? (int64_t)(0 - magnitude) : (int64_t)magnitude;
}

static bool i128_fits_i64(pd_i128 v) { return v >= (pd_i128)INT64_MIN && v <= (pd_i128)INT64_MAX; }

/* a + b for i128 with an overflow flag (a 128-bit add is plain BPF; the check is by signs). */
static bool add_i128(pd_i128 a, pd_i128 b, pd_i128 *out) {
  pd_i128 r = (pd_i128)((pd_u128)a + (pd_u128)b);
  if ((a >= 0) == (b >= 0) && (r >= 0) != (a >= 0)) return false;
  *out = r;
  return true;
}

/* n / d for a u128 n and a non-zero u64 d; remainder in *rem. */
PD_INLINE pd_u128 div_u128(pd_u128 n, uint64_t d, uint64_t *rem) { return pd_div_u128_u64(n, d, rem); }

/* 10^k for k <= 19 (fits u64). */
static uint64_t pow10_u64(uint64_t k) {
  uint64_t v = 1;
  for (uint64_t i = 0; i < k; i++) v *= 10;
  return v;
}

/* floor(n / 10^k) for k <= 38, as at most two divisions by u64 powers of ten
 * (floor(floor(n / a) / b) == floor(n / (a b))). */
PD_INLINE pd_u128 div_pow10(pd_u128 n, uint64_t k) {
  uint64_t rem;
  if (k <= 19) return div_u128(n, pow10_u64(k), &rem);
  return div_u128(div_u128(n, pow10_u64(19), &rem), pow10_u64(k - 19), &rem);
}

/* 10^k as u128 for k <= 38. */
PD_INLINE pd_u128 pow10_u128(uint64_t k) {
  if (k <= 19) return (pd_u128)pow10_u64(k);
  return pd_mul_u64_wide(pow10_u64(19), pow10_u64(k - 19));
}

/* ------------------------------------------------------------------ fees */
uint64_t pd_fee_quote(uint64_t notional_quote, int64_t rate_ppm, int64_t *fee_out) {
  uint64_t rem;
  pd_u128 q = div_u128(pd_mul_u64_wide(notional_quote, pd_abs_i64(rate_ppm)),
                       PD_RATIO_PRECISION, &rem);
  bool rebate = rate_ppm < 0;
  if (!rebate && rem != 0) q += 1; /* owed: up; a rebate: toward zero */
  if (!sign_mag_fits_i64(rebate, q)) return PERPDEX_ERR_FEE_OVERFLOW;
  *fee_out = sign_mag_to_i64(rebate, pd_u128_lo(q));
  return PD_SUCCESS;
}

uint64_t pd_validate_fee_schedule(int64_t maker_ppm, int64_t taker_ppm,
                                  uint64_t insurance_share_ppm) {
  const int64_t max_fee = (int64_t)PERPDEX_MAX_FEE_PPM;
  if (taker_ppm < 0 || taker_ppm > max_fee) return PERPDEX_ERR_INVALID_FEE_SCHEDULE;
  if (maker_ppm < -taker_ppm || maker_ppm > max_fee) return PERPDEX_ERR_INVALID_FEE_SCHEDULE;
  if (insurance_share_ppm > PD_RATIO_PRECISION) return PERPDEX_ERR_INVALID_FEE_SCHEDULE;
  return PD_SUCCESS;
}

uint64_t pd_fill_fees_split(uint64_t notional_quote, int64_t maker_ppm, int64_t taker_ppm,
                            uint64_t insurance_share_ppm, pd_fill_fees *out) {
  uint64_t err = pd_validate_fee_schedule(maker_ppm, taker_ppm, insurance_share_ppm);
  if (err != PD_SUCCESS) return err;
  int64_t maker, taker, net;
  err = pd_fee_quote(notional_quote, maker_ppm, &maker);
  if (err != PD_SUCCESS) return err;
  err = pd_fee_quote(notional_quote, taker_ppm, &taker);
  if (err != PD_SUCCESS) return err;
  /* a rebate never exceeds the taker fee (schedule bounds), so net >= 0 */
  if (!pd_add_i64(maker, taker, &net) || net < 0) return PERPDEX_ERR_FEE_OVERFLOW;
  uint64_t rem;
  pd_u128 insurance =
      div_u128(pd_mul_u64_wide((uint64_t)net, insurance_share_ppm), PD_RATIO_PRECISION, &rem);
  out->maker_fee_quote = maker;
  out->taker_fee_quote = taker;
  out->insurance_quote = pd_u128_lo(insurance); /* <= net: the share is <= 100 % */
  out->venue_quote = (uint64_t)net - pd_u128_lo(insurance);
  return PD_SUCCESS;
}

/* ------------------------------------------------------------------ funding */
static uint64_t pd_funding_settle_exact(int64_t base, const pd_i128_a8 *snapshot_at,
                                        const pd_i128_a8 *index_now_at,
                                        pd_funding_settlement *out) {
  pd_i128 snapshot = *snapshot_at;
  pd_i128 index_now = *index_now_at;
  /* delta = index_now - snapshot as (sign, magnitude): the magnitude of any difference of
   * two i128 values fits u128 exactly (modular subtraction of the larger minus the smaller). */
  bool delta_negative = index_now < snapshot;
  pd_u128 delta = delta_negative ? (pd_u128)snapshot - (pd_u128)index_now
                                 : (pd_u128)index_now - (pd_u128)snapshot;
  uint64_t base_mag = pd_abs_i64(base);
  if (base_mag == 0 || delta == 0) { /* nothing owed: skip the 192-bit division */
    out->payment_quote = 0;
    out->carry_numerator = 0;
    return PD_SUCCESS;
  }
  /* |x| = |base| x |delta| in three 64-bit limbs (w2:w1:w0) */
  pd_u128 low = pd_mul_u64_wide(base_mag, pd_u128_lo(delta));
  pd_u128 high = pd_mul_u64_wide(base_mag, pd_u128_hi(delta));
  uint64_t w0 = pd_u128_lo(low);
  uint64_t w1 = pd_u128_hi(low) + pd_u128_lo(high);
  uint64_t carry = w1 < pd_u128_hi(low) ? 1 : 0;
  uint64_t w2 = pd_u128_hi(high) + carry; /* < 2^64: |x| < 2^63 x 2^128 */
  const uint64_t d = PD_FUNDING_SETTLEMENT_DENOMINATOR;
  uint64_t q2 = w2 / d;
  uint64_t r = w2 - q2 * d;
  uint64_t q1 = pd_div_2by1(r, w1, d, &r);
  uint64_t q0 = pd_div_2by1(r, w0, d, &r);
  if (q2 != 0 || q1 != 0) return PERPDEX_ERR_FUNDING_PAYMENT_OVERFLOW;
  bool pays = (base_mag != 0 && delta != 0) && ((base < 0) == delta_negative);
  if (pays) {
    /* payment = ceil(x / D); surplus = payment x D - x */
    uint64_t payment = q0 + (r != 0 ? 1 : 0);
    if (payment < q0 || payment > PD_I64_MAX_U) return PERPDEX_ERR_FUNDING_PAYMENT_OVERFLOW;
    out->payment_quote = (int64_t)payment;
    out->carry_numerator = r != 0 ? d - r : 0;
  } else {
    /* receives floor(-x / D); surplus = (-x) mod D */
    if (q0 > PD_I64_MIN_MAG) return PERPDEX_ERR_FUNDING_PAYMENT_OVERFLOW;
    out->payment_quote = sign_mag_to_i64(true, q0);
    out->carry_numerator = r;
  }
  return PD_SUCCESS;
}

/* payment = ceil((base x (now - snapshot) - carry) / D), carry' = payment x D - (x - carry):
 * with p = ceil(x / D) and s = p x D - x (both below), t = s + carry < 2D gives
 * payment = p - (t >= D) and carry' = t mod D (docs/PROTOCOL.md, Funding). */
uint64_t pd_funding_settle(int64_t base, const pd_i128_a8 *snapshot_at, const pd_i128_a8 *index_now_at,
                           uint64_t carry_numerator, pd_funding_settlement *out) {
  const uint64_t d = PD_FUNDING_SETTLEMENT_DENOMINATOR;
  if (carry_numerator >= d) return PERPDEX_ERR_FUNDING_CARRY_OUT_OF_RANGE;
  uint64_t err = pd_funding_settle_exact(base, snapshot_at, index_now_at, out);
  if (err) return err;
  uint64_t t = out->carry_numerator + carry_numerator; /* s + carry < 2e18 < 2^64 */
  if (t >= d) {
    if (out->payment_quote == INT64_MIN) return PERPDEX_ERR_FUNDING_PAYMENT_OVERFLOW;
    out->payment_quote -= 1;
    t -= d;
  }
  out->carry_numerator = t;
  return PD_SUCCESS;
}

void pd_sweep_surplus(uint64_t surplus_numerator, uint64_t *swept_quote_out,
                      uint64_t *rest_numerator_out) {
  uint64_t swept = surplus_numerator / PD_FUNDING_SETTLEMENT_DENOMINATOR;
  *swept_quote_out = swept;
  *rest_numerator_out = surplus_numerator - swept * PD_FUNDING_SETTLEMENT_DENOMINATOR;
}

uint64_t pd_funding_advance(pd_i128_a8 *cumulative, int64_t rate, uint64_t index_price) {
  if (index_price == 0) return PERPDEX_ERR_INDEX_PRICE_ZERO;
  pd_u128 magnitude = pd_mul_u64_wide(pd_abs_i64(rate), index_price); /* < 2^127 */
  pd_i128 delta = rate < 0 ? -(pd_i128)magnitude : (pd_i128)magnitude;
  pd_i128 next;
  if (!add_i128(*cumulative, delta, &next)) return PERPDEX_ERR_FUNDING_INDEX_OVERFLOW;
  *cumulative = next;
  return PD_SUCCESS;
}

/* ------------------------------------------------------------------ margin */
uint64_t pd_notional_quote(int64_t base, uint64_t price, uint64_t *out) {
  uint64_t rem;
  pd_u128 q = div_u128(pd_mul_u64_wide(pd_abs_i64(base), price), PD_BASE_PRECISION, &rem);
  if (rem != 0) q += 1; /* sizes a requirement: up */
  if (pd_u128_hi(q) != 0) return PERPDEX_ERR_NOTIONAL_OVERFLOW;
  *out = pd_u128_lo(q);
  return PD_SUCCESS;
}

uint64_t pd_unrealized_pnl_quote(int64_t base, int64_t entry_quote, uint64_t mark_price,
                                 int64_t *out) {
  pd_i128 pnl = pd_pnl_i128(base, entry_quote, mark_price);
  if (!i128_fits_i64(pnl)) return PERPDEX_ERR_PNL_OVERFLOW;
  *out = (int64_t)pnl;
  return PD_SUCCESS;
}

uint64_t pd_requirement_quote(uint64_t notional_quote, const perpdex_MarginTier *tiers,
                              uint64_t num_tiers, uint64_t kind, uint64_t *out) {
  if (kind > PD_MARGIN_MAINTENANCE || num_tiers > PERPDEX_MAX_MARGIN_TIERS)
    return PERPDEX_ERR_INVALID_MARGIN_TIERS;
  pd_u128 charged = 0; /* quote x RATIO_PRECISION; < 4 x 2^64 x 2^32 */
  uint64_t lower = 0;
  for (uint64_t i = 0; i < num_tiers; i++) {
    if (notional_quote <= lower) break;
    uint64_t upper = tiers[i].up_to_notional_quote;
    if (upper < lower) return PERPDEX_ERR_INVALID_MARGIN_TIERS;
    uint64_t ratio = kind == PD_MARGIN_INITIAL ? tiers[i].initial_ppm : tiers[i].maintenance_ppm;
    uint64_t slice = (notional_quote < upper ? notional_quote : upper) - lower;
    charged += pd_mul_u64_wide(slice, ratio);
    lower = upper;
  }
  uint64_t rem;
  pd_u128 q = div_u128(charged, PD_RATIO_PRECISION, &rem);
  if (rem != 0) q += 1; /* a liability: up */
  if (pd_u128_hi(q) != 0) return PERPDEX_ERR_REQUIREMENT_OVERFLOW;
  *out = pd_u128_lo(q);
  return PD_SUCCESS;
}

uint64_t pd_validate_margin_tiers(const perpdex_MarginTier *tiers, uint64_t num_tiers) {
  if (num_tiers == 0 || num_tiers > PERPDEX_MAX_MARGIN_TIERS)
    return PERPDEX_ERR_INVALID_MARGIN_TIERS;
  uint64_t previous_upper = 0, previous_initial = 0, previous_maintenance = 0;
  for (uint64_t i = 0; i < num_tiers; i++) {
    uint64_t upper = tiers[i].up_to_notional_quote;
    uint64_t initial = tiers[i].initial_ppm, maintenance = tiers[i].maintenance_ppm;
    if (upper <= previous_upper) return PERPDEX_ERR_INVALID_MARGIN_TIERS;
    if (!(0 < maintenance && maintenance < initial && initial <= PD_RATIO_PRECISION))
      return PERPDEX_ERR_INVALID_MARGIN_TIERS;
    if (initial < previous_initial || maintenance < previous_maintenance)
      return PERPDEX_ERR_INVALID_MARGIN_TIERS;
    previous_upper = upper;
    previous_initial = initial;
    previous_maintenance = maintenance;
  }
  if (previous_upper != PD_U64_MAX) return PERPDEX_ERR_INVALID_MARGIN_TIERS;
  return PD_SUCCESS;
}

uint64_t pd_margin_summary(int64_t collateral_quote, const pd_margin_position *positions,
                           uint64_t num_positions, pd_margin_result *out) {
  pd_i128 equity = (pd_i128)collateral_quote; /* <= 9 terms of |v| < 2^121: no overflow */
  pd_u128 initial = 0, maintenance = 0;       /* <= 8 terms < 2^64 */
  for (uint64_t i = 0; i < num_positions; i++) {
    const pd_margin_position *p = &positions[i];
    if (p->base == 0) continue; /* no position, no orders on-chain: nothing at risk */
    equity += pd_pnl_i128(p->base, p->entry_quote, p->price);
    uint64_t notional, required;
    uint64_t err = pd_notional_quote(p->base, p->price, &notional);
    if (err != PD_SUCCESS) return err;
    err = pd_requirement_quote(notional, p->tiers, p->num_tiers, PD_MARGIN_INITIAL, &required);
    if (err != PD_SUCCESS) return err;
    initial += required;
    err = pd_requirement_quote(notional, p->tiers, p->num_tiers, PD_MARGIN_MAINTENANCE,
                               &required);
    if (err != PD_SUCCESS) return err;
    maintenance += required;
  }
  if (!i128_fits_i64(equity)) return PERPDEX_ERR_PNL_OVERFLOW;
  if (pd_u128_hi(initial) != 0 || pd_u128_hi(maintenance) != 0)
    return PERPDEX_ERR_REQUIREMENT_OVERFLOW;
  out->equity_quote = (int64_t)equity;
  out->initial_quote = pd_u128_lo(initial);
  out->maintenance_quote = pd_u128_lo(maintenance);
  pd_i128 free = equity - (pd_i128)initial;
  out->free_collateral_quote = free > 0 ? (uint64_t)free : 0;
  return PD_SUCCESS;
}

/* ------------------------------------------------------------------ positions */
/* trunc(a x b / d) toward zero for b, d > 0 and b <= d: |result| <= |a|, so it fits i64. */
static int64_t trunc_share(int64_t a, uint64_t b, uint64_t d) {
  uint64_t rem;
  pd_u128 q = div_u128(pd_mul_u64_wide(pd_abs_i64(a), b), d, &rem);
  return sign_mag_to_i64(a < 0, pd_u128_lo(q));
}

uint64_t pd_apply_fill(pd_position_state *position, int64_t base_delta, int64_t quote_delta,
                       int64_t *realized_quote_out) {
  if (base_delta == 0) return PERPDEX_ERR_FILL_ZERO_SIZE;
  int64_t base = position->base, entry = position->entry_quote;
  int64_t new_base, new_entry;
  if (base == 0 || (base > 0) == (base_delta > 0)) { /* opening or increasing */
    if (!pd_add_i64(base, base_delta, &new_base)) return PERPDEX_ERR_POSITION_OVERFLOW;
    if (!pd_add_i64(entry, quote_delta, &new_entry)) return PERPDEX_ERR_POSITION_OVERFLOW;
    position->base = new_base;
    position->entry_quote = new_entry;
    *realized_quote_out = 0;
    return PD_SUCCESS;
  }
  uint64_t base_mag = pd_abs_i64(base), delta_mag = pd_abs_i64(base_delta);
  uint64_t closed = delta_mag < base_mag ? delta_mag : base_mag;
  int64_t released = trunc_share(entry, closed, base_mag);  /* basis now closed */
  int64_t closing = trunc_share(quote_delta, closed, delta_mag);
  int64_t realized, realized_pnl;
  if (!pd_add_i64(released, closing, &realized)) return PERPDEX_ERR_POSITION_OVERFLOW;
  /* entry - released keeps entry's sign and shrinks; quote_delta - closing likewise */
  if (!pd_add_i64(entry - released, quote_delta - closing, &new_entry))
    return PERPDEX_ERR_POSITION_OVERFLOW;
  if (!pd_add_i64(position->realized_pnl_quote, realized, &realized_pnl))
    return PERPDEX_ERR_POSITION_OVERFLOW;
  position->base = base + base_delta; /* opposite signs: cannot overflow */
  position->entry_quote = new_entry;
  position->realized_pnl_quote = realized_pnl;
  *realized_quote_out = realized;
  return PD_SUCCESS;
}

/* ------------------------------------------------------------------ oracle values */
#define PD_MIN_EXPONENT (-38)
#define PD_MAX_EXPONENT 38
#define PD_PRICE_EXPONENT 6 /* PRICE_PRECISION = 10^6 */

uint64_t pd_price_from_raw(const pd_i128_a8 *mantissa_at, int64_t exponent, uint64_t *price_out) {
  pd_i128 mantissa = *mantissa_at;
  if (mantissa <= 0) return PERPDEX_ERR_ORACLE_NON_POSITIVE_PRICE;
  if (exponent < PD_MIN_EXPONENT || exponent > PD_MAX_EXPONENT)
    return PERPDEX_ERR_ORACLE_EXPONENT_OUT_OF_RANGE;
  pd_u128 m = (pd_u128)mantissa;
  int64_t e = exponent + PD_PRICE_EXPONENT;
  pd_u128 price;
  if (e >= 0) {
    if (e > 18 || pd_u128_hi(m) != 0) return PERPDEX_ERR_ORACLE_PRICE_OUT_OF_RANGE;
    price = pd_mul_u64_wide(pd_u128_lo(m), pow10_u64((uint64_t)e));
  } else {
    uint64_t k = (uint64_t)(0 - e); /* 1..32 */
    /* nearest, ties away from zero (m > 0): floor((m + 10^k / 2) / 10^k) */
    pd_u128 half = pow10_u128(k) >> 1; /* 10^k is even; (x << 2) + x would become a mul */
    price = div_pow10(m + half, k);
  }
  if (price == 0 || price > (pd_u128)PD_I64_MAX_U) return PERPDEX_ERR_ORACLE_PRICE_OUT_OF_RANGE;
  *price_out = pd_u128_lo(price);
  return PD_SUCCESS;
}

uint64_t pd_confidence_from_raw(const pd_i128_a8 *mantissa_at, int64_t exponent,
                                uint64_t *confidence_out) {
  pd_i128 mantissa = *mantissa_at;
  if (mantissa < 0) return PERPDEX_ERR_ORACLE_CONFIDENCE_OUT_OF_RANGE;
  if (exponent < PD_MIN_EXPONENT || exponent > PD_MAX_EXPONENT)
    return PERPDEX_ERR_ORACLE_EXPONENT_OUT_OF_RANGE;
  pd_u128 c = (pd_u128)mantissa;
  int64_t e = exponent + PD_PRICE_EXPONENT;
  pd_u128 confidence;
  if (c == 0) {
    confidence = 0;
  } else if (e >= 0) {
    if (e > 19 || pd_u128_hi(c) != 0) return PERPDEX_ERR_ORACLE_CONFIDENCE_OUT_OF_RANGE;
    confidence = pd_mul_u64_wide(pd_u128_lo(c), pow10_u64((uint64_t)e));
  } else {
    uint64_t k = (uint64_t)(0 - e);
    confidence = div_pow10(c + (pow10_u128(k) - 1u), k); /* up */
  }
  if (pd_u128_hi(confidence) != 0) return PERPDEX_ERR_ORACLE_CONFIDENCE_OUT_OF_RANGE;
  *confidence_out = pd_u128_lo(confidence);
  return PD_SUCCESS;
}
