/*
 * pd_liquidation.h: the partial-liquidation plan of liquidation/rules.py (plan_liquidation,
 * non-bankrupt accounts) in pure C, golden-tested against the Python rules on the host.
 * Same conventions as pd_math.h: 0 or the IDL error of the failed check; outputs written only
 * on success; 64-bit operations only.
 */
#ifndef PD_LIQUIDATION_H
#define PD_LIQUIDATION_H

#include "pd_math.h"

/* One held position of the account, settled to its market's funding index. */
typedef struct {
  int64_t base;                 /* BASE_PRECISION, signed, != 0 */
  int64_t entry_quote;          /* signed cost basis */
  uint64_t price;               /* oracle price, PRICE_PRECISION, > 0 */
  uint64_t lot_size;            /* BASE_PRECISION units per lot, > 0 */
  uint64_t liquidation_fee_ppm;    /* Market.liquidation_fee_ppm */
  uint64_t liquidator_share_ppm;   /* Market.liquidator_share_ppm */
  uint64_t liquidation_buffer_ppm; /* Market.liquidation_buffer_ppm */
  const perpdex_MarginTier *tiers;
  uint64_t num_tiers;
  uint64_t market_index; /* breaks ties of the plan order */
} pd_liq_position;

typedef struct {
  int64_t collateral_quote;
  uint64_t insurance_fund_quote; /* before this liquidation's fees */
  uint64_t num_positions;        /* <= PERPDEX_MAX_POSITIONS */
} pd_liq_input;

/* A slice moved to the liquidator: rules.PositionTransfer. */
typedef struct {
  uint64_t position; /* index into the input positions */
  int64_t base_delta;
  int64_t quote_delta;
  uint64_t fee_quote;
  uint64_t liquidator_fee_quote;
  uint64_t insurance_fee_quote;
} pd_liq_transfer;

typedef struct {
  pd_liq_transfer transfers[PERPDEX_MAX_POSITIONS]; /* in plan order */
  uint64_t num_transfers;
  int64_t equity_before_quote;
  uint64_t maintenance_before_quote;
  uint64_t insurance_payment_quote; /* covers rounding dust of a fully closed account */
  int64_t collateral_after_quote;
} pd_liq_plan;

/* The liquidation of one account (each market's own fee, share and buffer; the target is
 * maintenance + ceil(sum over markets of notional x buffer / 1e6)): PERPDEX_ERR_NOT_LIQUIDATABLE when equity >= maintenance,
 * PERPDEX_ERR_ACCOUNT_BANKRUPT when equity < 0 (the engine's insurance / ADL path),
 * PERPDEX_ERR_INVALID_LIQUIDATION_FEE when a market's first maintenance + buffer <= its fee. */
uint64_t pd_liquidation_plan(const pd_liq_input *in, const pd_liq_position *positions,
                             pd_liq_plan *out);

#endif /* PD_LIQUIDATION_H */
