/*
 * pd_liquidation.c: liquidation/rules.py plan_liquidation (non-bankrupt accounts) to the unit.
 *
 * Markets are taken largest maintenance requirement first (ties: lower index); in each, the
 * smallest number of lots whose transfer brings equity to maintenance + buffer, searched
 * exactly as the Python rules do (Drift's estimate first, then a binary search), or the whole
 * position. A slice moves at the oracle price (a sale receives the floor, a purchase pays the
 * ceiling); the fee is ceil(notional x fee / 1e6) capped at the equity left, the liquidator's
 * share rounds down and the insurance fund takes the rest.
 */
#include "pd_liquidation.h"

#define PD_RATIO 1000000ull
#define PD_BASE 1000000000ull
/* 10^6 (ppm) x 10^9 (BASE_PRECISION): the numerator scale of Drift's estimate */
#define PD_DRIFT_SCALE 1000000000000000ull

/* Equity, maintenance and notional of a set of positions at their oracle prices. */
typedef struct {
  pd_i128 pnl;
  pd_u128 maintenance;
  pd_u128 buffer_numerator; /* sum of notional x the market's buffer ppm (< 2^84) */
} margin_sums;

static uint64_t add_position(margin_sums *s, const pd_liq_position *p, int64_t base,
                             int64_t entry_quote) {
  if (base == 0) return PD_SUCCESS;
  uint64_t notional, required;
  uint64_t err = pd_notional_quote(base, p->price, &notional);
  if (err != PD_SUCCESS) return err;
  err = pd_requirement_quote(notional, p->tiers, p->num_tiers, PD_MARGIN_MAINTENANCE, &required);
  if (err != PD_SUCCESS) return err;
  s->pnl += pd_pnl_i128(base, entry_quote, p->price);
  s->buffer_numerator += pd_mul_u64_wide(notional, p->liquidation_buffer_ppm);
  s->maintenance += required;
  return PD_SUCCESS;
}

/* maintenance + ceil(sum(notional_m x buffer_m) / 1e6): one ceiling over the sum */
PD_INLINE pd_u128 target_of(const margin_sums *s) {
  uint64_t rem;
  pd_u128 buffer = pd_div_u128_u64(s->buffer_numerator, PD_RATIO, &rem);
  if (rem != 0) buffer += 1;
  return s->maintenance + buffer;
}

PD_INLINE bool at_least(pd_i128 equity, pd_u128 target) {
  return equity >= 0 && (pd_u128)equity >= target;
}

/* Sums over every position but `skip` (the one being sized). */
static uint64_t sums_except(const pd_liq_position *positions, const pd_position_state *work,
                            uint64_t n, uint64_t skip, margin_sums *out) {
  margin_sums s = {0, 0, 0};
  for (uint64_t i = 0; i < n; i++) {
    if (i == skip) continue;
    uint64_t err = add_position(&s, &positions[i], work[i].base, work[i].entry_quote);
    if (err != PD_SUCCESS) return err;
  }
  *out = s;
  return PD_SUCCESS;
}

typedef struct {
  const pd_liq_input *in;
  const pd_liq_position *p; /* the position being sized */
  pd_position_state state;  /* its state before the slice */
  const margin_sums *others;
  int64_t collateral;
} slice_ctx;

typedef struct {
  pd_position_state state; /* after the slice */
  int64_t collateral;      /* after the realised PnL and the fee */
  pd_liq_transfer transfer;
  bool meets; /* equity >= maintenance + buffer after it */
} slice_result;

/* rules._transfer of `close_base` (> 0, <= |base|) and the target check of _smallest_close. */
static uint64_t slice(const slice_ctx *c, uint64_t close_base, slice_result *out) {
  const pd_liq_position *p = c->p;
  if (close_base > (uint64_t)INT64_MAX) return PERPDEX_ERR_POSITION_OVERFLOW;
  bool sell = c->state.base > 0;
  int64_t base_delta = sell ? -(int64_t)close_base : (int64_t)close_base;
  uint64_t rem;
  pd_u128 value = pd_div_u128_u64(pd_mul_u64_wide(close_base, p->price), PD_BASE, &rem);
  if (!sell && rem != 0) value += 1; /* a purchase pays the ceiling, a sale receives the floor */
  if (pd_u128_hi(value) != 0 || pd_u128_lo(value) > (uint64_t)INT64_MAX)
    return PERPDEX_ERR_NOTIONAL_OVERFLOW;
  int64_t quote = sell ? (int64_t)pd_u128_lo(value) : -(int64_t)pd_u128_lo(value);
  pd_position_state state = c->state;
  int64_t realized, collateral;
  uint64_t err = pd_apply_fill(&state, base_delta, quote, &realized);
  if (err != PD_SUCCESS) return err;
  if (!pd_add_i64(c->collateral, realized, &collateral)) return PERPDEX_ERR_COLLATERAL_OVERFLOW;
  margin_sums sums = *c->others;
  err = add_position(&sums, p, state.base, state.entry_quote);
  if (err != PD_SUCCESS) return err;
  uint64_t notional;
  err = pd_notional_quote((int64_t)close_base, p->price, &notional);
  if (err != PD_SUCCESS) return err;
  pd_u128 fee_full = pd_div_u128_u64(pd_mul_u64_wide(notional, p->liquidation_fee_ppm), PD_RATIO,
                                     &rem);
  if (rem != 0) fee_full += 1; /* charged to the account: up; <= notional (fee <= 10 %) */
  pd_i128 equity = (pd_i128)collateral + sums.pnl;
  pd_u128 fee = equity > 0 ? (pd_u128)equity : 0; /* never beyond the equity left */
  if (fee_full < fee) fee = fee_full;
  uint64_t fee_quote = pd_u128_lo(fee); /* <= fee_full < 2^64 */
  if (fee_quote > (uint64_t)INT64_MAX || !pd_sub_i64(collateral, (int64_t)fee_quote, &collateral))
    return PERPDEX_ERR_COLLATERAL_OVERFLOW;
  pd_u128 share = pd_div_u128_u64(pd_mul_u64_wide(fee_quote, p->liquidator_share_ppm),
                                  PD_RATIO, &rem); /* <= fee: share <= 100 % */
  out->state = state;
  out->collateral = collateral;
  out->transfer.base_delta = base_delta;
  out->transfer.quote_delta = quote;
  out->transfer.fee_quote = fee_quote;
  out->transfer.liquidator_fee_quote = pd_u128_lo(share);
  out->transfer.insurance_fee_quote = fee_quote - pd_u128_lo(share);
  out->meets = at_least((pd_i128)collateral + sums.pnl, target_of(&sums));
  return PD_SUCCESS;
}

/* ceil(n / d) for d > 0 */
PD_INLINE pd_u128 ceil_div(pd_u128 n, uint64_t d) {
  uint64_t rem;
  pd_u128 q = pd_div_u128_u64(n, d, &rem);
  return rem != 0 ? q + 1 : q;
}

static uint64_t meets_at(const slice_ctx *c, uint64_t lots, uint64_t max_lots, uint64_t size,
                         slice_result *out) {
  /* min(lots x lot, size): below max_lots, lots x lot < size */
  return slice(c, lots >= max_lots ? size : lots * c->p->lot_size, out);
}

/* rules._smallest_close: the smallest close (whole lots, or the whole position) meeting the
 * target, searched along the Python path; the whole position if none does. */
static uint64_t smallest_close(const slice_ctx *c, pd_u128 shortfall, uint64_t *close_out) {
  const pd_liq_position *p = c->p;
  uint64_t size = pd_abs_i64(c->state.base), lot = p->lot_size;
  uint64_t max_lots = size / lot + (size % lot != 0 ? 1 : 0);
  /* Drift's estimate ceil(shortfall x 1e15 / (price x rate)) in lots, as nested ceilings
   * (ceil(ceil(a / b) / c) == ceil(a / (b c))); shortfall < 2^64 keeps the product in u128 */
  if (pd_u128_hi(shortfall) != 0) return PERPDEX_ERR_REQUIREMENT_OVERFLOW;
  uint64_t rate = (uint64_t)p->tiers[0].maintenance_ppm + p->liquidation_buffer_ppm -
                  p->liquidation_fee_ppm; /* > 0: checked before */
  pd_u128 estimate = pd_mul_u64_wide(pd_u128_lo(shortfall), PD_DRIFT_SCALE);
  estimate = ceil_div(ceil_div(ceil_div(estimate, p->price), rate), lot);
  uint64_t guess = estimate == 0 ? 1 : (estimate < (pd_u128)max_lots ? pd_u128_lo(estimate) : max_lots);
  slice_result trial;
  uint64_t lo, hi;
  uint64_t err = meets_at(c, guess, max_lots, size, &trial);
  if (err != PD_SUCCESS) return err;
  if (trial.meets) {
    lo = 1;
    hi = guess;
  } else {
    bool whole_meets = false;
    if (guess < max_lots) {
      err = meets_at(c, max_lots, max_lots, size, &trial);
      if (err != PD_SUCCESS) return err;
      whole_meets = trial.meets;
    }
    if (!whole_meets) {
      *close_out = size;
      return PD_SUCCESS;
    }
    lo = guess + 1;
    hi = max_lots;
  }
  while (lo < hi) {
    uint64_t mid = lo + (hi - lo) / 2;
    err = meets_at(c, mid, max_lots, size, &trial);
    if (err != PD_SUCCESS) return err;
    if (trial.meets)
      hi = mid;
    else
      lo = mid + 1;
  }
  *close_out = lo >= max_lots ? size : lo * lot;
  return PD_SUCCESS;
}

uint64_t pd_liquidation_plan(const pd_liq_input *in, const pd_liq_position *positions,
                             pd_liq_plan *out) {
  uint64_t n = in->num_positions;
  if (n > PERPDEX_MAX_POSITIONS) return PERPDEX_ERR_POSITION_SLOTS_FULL;
  pd_position_state work[PERPDEX_MAX_POSITIONS];
  uint64_t maintenance_of[PERPDEX_MAX_POSITIONS];
  margin_sums all = {0, 0, 0};
  for (uint64_t i = 0; i < n; i++) {
    const pd_liq_position *p = &positions[i];
    if (p->price == 0 || p->lot_size == 0 || p->num_tiers == 0)
      return PERPDEX_ERR_INVALID_MARGIN_TIERS;
    work[i] = (pd_position_state){p->base, p->entry_quote, 0};
    margin_sums one = {0, 0, 0};
    uint64_t err = add_position(&one, p, p->base, p->entry_quote);
    if (err != PD_SUCCESS) return err;
    maintenance_of[i] = pd_u128_lo(one.maintenance);
    all.pnl += one.pnl;
    all.buffer_numerator += one.buffer_numerator;
    all.maintenance += one.maintenance;
  }
  /* rules.check_eligibility: liquidatable when equity < maintenance */
  pd_i128 equity_before = (pd_i128)in->collateral_quote + all.pnl;
  if (at_least(equity_before, all.maintenance)) return PERPDEX_ERR_NOT_LIQUIDATABLE;
  if (equity_before < 0) return PERPDEX_ERR_ACCOUNT_BANKRUPT;
  if (equity_before > (pd_i128)INT64_MAX || pd_u128_hi(all.maintenance) != 0)
    return PERPDEX_ERR_REQUIREMENT_OVERFLOW;
  /* rules.LiquidationConfig.check_schedule: closing must help */
  for (uint64_t i = 0; i < n; i++)
    if ((uint64_t)positions[i].tiers[0].maintenance_ppm + positions[i].liquidation_buffer_ppm <=
        positions[i].liquidation_fee_ppm)
      return PERPDEX_ERR_INVALID_LIQUIDATION_FEE;
  /* order: maintenance requirement, largest first; ties: lower market index */
  uint64_t order[PERPDEX_MAX_POSITIONS];
  for (uint64_t i = 0; i < n; i++) {
    uint64_t j = i;
    while (j > 0) {
      uint64_t prev = order[j - 1];
      bool after = maintenance_of[prev] > maintenance_of[i] ||
                   (maintenance_of[prev] == maintenance_of[i] &&
                    positions[prev].market_index < positions[i].market_index);
      if (after) break;
      order[j] = prev;
      j--;
    }
    order[j] = i;
  }
  pd_liq_transfer transfers[PERPDEX_MAX_POSITIONS];
  uint64_t num_transfers = 0;
  int64_t collateral = in->collateral_quote;
  for (uint64_t k = 0; k < n; k++) {
    uint64_t at = order[k];
    margin_sums others;
    uint64_t err = sums_except(positions, work, n, at, &others);
    if (err != PD_SUCCESS) return err;
    margin_sums sums = others;
    err = add_position(&sums, &positions[at], work[at].base, work[at].entry_quote);
    if (err != PD_SUCCESS) return err;
    pd_i128 equity = (pd_i128)collateral + sums.pnl;
    pd_u128 target = target_of(&sums);
    if (at_least(equity, target)) break;
    slice_ctx c = {in, &positions[at], work[at], &others, collateral};
    uint64_t close;
    err = smallest_close(&c, (pd_u128)((pd_i128)target - equity), &close);
    if (err != PD_SUCCESS) return err;
    slice_result done;
    err = slice(&c, close, &done);
    if (err != PD_SUCCESS) return err;
    work[at] = done.state;
    collateral = done.collateral;
    transfers[num_transfers] = done.transfer;
    transfers[num_transfers].position = at;
    num_transfers++;
  }
  uint64_t insurance_payment = 0;
  bool any_open = false;
  for (uint64_t i = 0; i < n; i++) any_open = any_open || work[i].base != 0;
  if (!any_open && collateral < 0) {
    /* rounding of partial slices can leave a unit or two short: the fund covers it */
    uint64_t short_by = 0 - (uint64_t)collateral;
    insurance_payment = short_by < in->insurance_fund_quote ? short_by : in->insurance_fund_quote;
    collateral += (int64_t)insurance_payment;
  }
  for (uint64_t t = 0; t < num_transfers; t++) out->transfers[t] = transfers[t];
  out->num_transfers = num_transfers;
  out->equity_before_quote = (int64_t)equity_before;
  out->maintenance_before_quote = pd_u128_lo(all.maintenance);
  out->insurance_payment_quote = insurance_payment;
  out->collateral_after_quote = collateral;
  return PD_SUCCESS;
}
