/*
 * pd_math.h: the clearing program's money maths (docs/PROTOCOL.md), pure C, no syscalls.
 *
 * Every function returns 0 or the IDL error code of the check that failed, and writes its
 * outputs only on success (nothing half-applied). Inputs are the on-chain field types; the
 * 128-bit and 192-bit intermediates use only 64-bit multiplies and divides (pd_mul_u64_wide,
 * pd_div_2by1 from the SDK), so the same source builds for SBPF v0 and for the host, where
 * tests run it against golden vectors generated from the Python engine (tests/fixtures/golden).
 * i128 values are passed by pointer (pd_i128_a8: 8-aligned, as account fields are).
 */
#ifndef PD_MATH_H
#define PD_MATH_H

#include "perpdex_sol.h"
#include "perpdex_clearing_idl.h"

/* Margin kinds of pd_requirement_quote. */
#define PD_MARGIN_INITIAL 0u
#define PD_MARGIN_MAINTENANCE 1u

/* D = BASE_PRECISION x FUNDING_RATE_PRECISION: funding numerators are over it. */
#define PD_FUNDING_SETTLEMENT_DENOMINATOR 1000000000000000000ull

typedef struct {
  int64_t maker_fee_quote; /* > 0 the maker pays, < 0 a rebate */
  int64_t taker_fee_quote; /* >= 0 */
  uint64_t insurance_quote;
  uint64_t venue_quote;
} pd_fill_fees;

typedef struct {
  int64_t payment_quote;    /* > 0 the account pays, < 0 it receives */
  uint64_t carry_numerator; /* < D: paid beyond the exact amounts (the position keeps it) */
} pd_funding_settlement;

typedef struct {
  int64_t base;               /* BASE_PRECISION, signed */
  int64_t entry_quote;        /* signed cost basis */
  int64_t realized_pnl_quote; /* cumulative statistic */
} pd_position_state;

typedef struct {
  int64_t base;
  int64_t entry_quote;
  uint64_t price; /* PRICE_PRECISION, the price the position is valued at */
  const perpdex_MarginTier *tiers;
  uint64_t num_tiers;
} pd_margin_position;

typedef struct {
  int64_t equity_quote;
  uint64_t initial_quote;
  uint64_t maintenance_quote;
  uint64_t free_collateral_quote; /* max(0, equity - initial) */
} pd_margin_result;

/* 128-bit values in memory; inline because BPF calls cannot return them. pd_i128_a8 is an
 * i128 at an 8-aligned address: every i128 field of the program's accounts (aligned(8)
 * structs in 8-aligned account data) and every local. Loads through it are two word loads;
 * pd_load_i128 is the byte-wise one for anything else (an oracle's layout). */
typedef perpdex_i128 pd_i128_a8;
PD_INLINE pd_i128 pd_load_i128(const void *p) {
  pd_i128 v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}
PD_INLINE void pd_store_i128(void *p, pd_i128 v) { __builtin_memcpy(p, &v, sizeof v); }

/* floor(base x mark / BASE_PRECISION) + entry_quote, exactly, as an i128 (the unrealised PnL
 * of docs/PROTOCOL.md before the i64 range check). */
PD_INLINE pd_i128 pd_pnl_i128(int64_t base, int64_t entry_quote, uint64_t mark_price) {
  uint64_t rem;
  pd_u128 q = pd_div_u128_u64(pd_mul_u64_wide(pd_abs_i64(base), mark_price), 1000000000ull, &rem);
  pd_i128 term = (pd_i128)q; /* q < 2^128 / 1e9: fits i128 */
  if (base < 0) term = -(term + (rem != 0 ? 1 : 0)); /* floor of a negative value */
  return term + (pd_i128)entry_quote;
}

/* Fees: owed rounds up, a rebate rounds toward zero. */
uint64_t pd_fee_quote(uint64_t notional_quote, int64_t rate_ppm, int64_t *fee_out);
uint64_t pd_fill_fees_split(uint64_t notional_quote, int64_t maker_ppm, int64_t taker_ppm,
                            uint64_t insurance_share_ppm, pd_fill_fees *out);
uint64_t pd_validate_fee_schedule(int64_t maker_ppm, int64_t taker_ppm,
                                  uint64_t insurance_share_ppm);

/* Funding: settle base from snapshot to index_now; advance an index by rate x price. */
uint64_t pd_funding_settle(int64_t base, const pd_i128_a8 *snapshot, const pd_i128_a8 *index_now,
                           uint64_t carry_numerator, pd_funding_settlement *out);
void pd_sweep_surplus(uint64_t surplus_numerator, uint64_t *swept_quote_out,
                      uint64_t *rest_numerator_out);
uint64_t pd_funding_advance(pd_i128_a8 *cumulative, int64_t rate, uint64_t index_price);

/* Margin. */
uint64_t pd_notional_quote(int64_t base, uint64_t price, uint64_t *out);
uint64_t pd_unrealized_pnl_quote(int64_t base, int64_t entry_quote, uint64_t mark_price,
                                 int64_t *out);
uint64_t pd_requirement_quote(uint64_t notional_quote, const perpdex_MarginTier *tiers,
                              uint64_t num_tiers, uint64_t kind, uint64_t *out);
uint64_t pd_validate_margin_tiers(const perpdex_MarginTier *tiers, uint64_t num_tiers);
uint64_t pd_margin_summary(int64_t collateral_quote, const pd_margin_position *positions,
                           uint64_t num_positions, pd_margin_result *out);

/* Positions: a fill of base_delta for the signed quote flow quote_delta. */
uint64_t pd_apply_fill(pd_position_state *position, int64_t base_delta, int64_t quote_delta,
                       int64_t *realized_quote_out);

/* Oracle values (mantissa x 10^exponent) to PRICE_PRECISION: price rounds half away from
 * zero and must be 1..i64 max; confidence rounds up and must fit u64. */
uint64_t pd_price_from_raw(const pd_i128_a8 *mantissa, int64_t exponent, uint64_t *price_out);
uint64_t pd_confidence_from_raw(const pd_i128_a8 *mantissa, int64_t exponent,
                                uint64_t *confidence_out);

#endif /* PD_MATH_H */
