/*
 * governance.c: risk-parameter governance of the clearing program (issue 8, docs/PROTOCOL.md
 * Governance).
 *
 * A council of num_council keys with a threshold; a council member proposes new values for
 * one market's RiskParams or for the GlobalParams (a Proposal PDA whose earliest execution is
 * the Clock's unix time + the timelock), council members approve (one bit each), anyone
 * executes once the timelock has passed and the approvals reach the threshold, exactly once;
 * the proposer or any council member cancels. Execution checks the hard bounds again (the
 * global cap may have moved) and the rate limits against the values in force at that moment,
 * so no single execution moves a market far. The guardian may only make a market stricter,
 * at once. Every check has its own IDL error; a failing instruction changes nothing.
 */
#include "perpdex_sol.h"
#include "perpdex_clearing_idl.h"
#include "pd_math.h"
#include "clearing.h"

/* ------------------------------------------------------------------ accounts */
static uint64_t load_governance(const SolAccountInfo *account, const SolPubkey *program_id,
                                perpdex_Governance **out) {
  if (!key_eq(account->owner, program_id)) return PERPDEX_ERR_GOVERNANCE_WRONG_OWNER;
  if (account->data_len != PERPDEX_ACCOUNT_GOVERNANCE_SIZE)
    return PERPDEX_ERR_GOVERNANCE_WRONG_SIZE;
  perpdex_Governance *governance = (perpdex_Governance *)account->data;
  if (governance->discriminator != PERPDEX_ACCOUNT_GOVERNANCE_DISCRIMINATOR)
    return PERPDEX_ERR_GOVERNANCE_BAD_DISCRIMINATOR;
  if (!key_eq(account->key, governance->address)) return PERPDEX_ERR_GOVERNANCE_WRONG_PDA;
  *out = governance;
  return PD_SUCCESS;
}

static uint64_t load_proposal(const SolAccountInfo *account, const SolPubkey *program_id,
                              perpdex_Proposal **out) {
  if (!key_eq(account->owner, program_id)) return PERPDEX_ERR_PROPOSAL_WRONG_OWNER;
  if (account->data_len != PERPDEX_ACCOUNT_PROPOSAL_SIZE) return PERPDEX_ERR_PROPOSAL_WRONG_SIZE;
  perpdex_Proposal *proposal = (perpdex_Proposal *)account->data;
  if (proposal->discriminator != PERPDEX_ACCOUNT_PROPOSAL_DISCRIMINATOR)
    return PERPDEX_ERR_PROPOSAL_BAD_DISCRIMINATOR;
  if (!key_eq(account->key, proposal->address)) return PERPDEX_ERR_PROPOSAL_WRONG_PDA;
  *out = proposal;
  return PD_SUCCESS;
}

static bool key_is_zero(const uint8_t *key) {
  uint8_t any = 0;
  for (int i = 0; i < 32; i++) any |= key[i];
  return any == 0;
}

static bool bytes_zero(const void *p, uint64_t len) {
  const uint8_t *b = (const uint8_t *)p;
  uint8_t any = 0;
  for (uint64_t i = 0; i < len; i++) any |= b[i];
  return any == 0;
}

/* Index of `key` in the council, or MAX_COUNCIL when it is not a member. */
static uint64_t council_index(const perpdex_Governance *governance, const SolPubkey *key) {
  for (uint64_t i = 0; i < governance->num_council; i++)
    if (key_eq(key, governance->council[i])) return i;
  return PERPDEX_MAX_COUNCIL;
}

static uint64_t popcount8(uint64_t mask) {
  uint64_t n = 0;
  for (uint64_t i = 0; i < 8; i++) n += (mask >> i) & 1u;
  return n;
}

/* ------------------------------------------------------------------ bounds and rate limits */
/* new <= old + max(old, 1): "more than doubles at once" (old >= 2^63 leaves no limit). */
static bool at_most_doubles(uint64_t old_value, uint64_t new_value) {
  uint64_t step = old_value > 1 ? old_value : 1, limit;
  if (!pd_add_u64(old_value, step, &limit)) return true;
  return new_value <= limit;
}

/* new <= old + max(old / 4, 1): leverage rises by at most 25 % (or one step). */
static bool leverage_rise_ok(uint64_t old_value, uint64_t new_value) {
  uint64_t step = old_value / 4 > 1 ? old_value / 4 : 1;
  return new_value <= old_value + step; /* both <= 100 */
}

/* new >= old x (1 - MAX_MARGIN_FALL_PPM / 1e6); ratios are u32, the products fit u64. */
static bool margin_fall_ok(uint64_t old_ppm, uint64_t new_ppm) {
  return new_ppm * PERPDEX_RATIO_PRECISION >=
         old_ppm * (PERPDEX_RATIO_PRECISION - PERPDEX_MAX_MARGIN_FALL_PPM);
}

static uint64_t validate_global(const perpdex_GlobalParams *p) {
  if (p->timelock_seconds < PERPDEX_MIN_TIMELOCK_SECONDS ||
      p->timelock_seconds > PERPDEX_MAX_TIMELOCK_SECONDS)
    return PERPDEX_ERR_INVALID_TIMELOCK;
  if (p->max_leverage_cap < 1 || p->max_leverage_cap > PERPDEX_MAX_LEVERAGE)
    return PERPDEX_ERR_INVALID_MAX_LEVERAGE_CAP;
  if (p->escape_hatch_slots < PERPDEX_MIN_ESCAPE_HATCH_SLOTS ||
      p->escape_hatch_slots > PERPDEX_MAX_ESCAPE_HATCH_SLOTS)
    return PERPDEX_ERR_INVALID_ESCAPE_HATCH;
  return PD_SUCCESS;
}

static uint64_t rate_limit_global(const perpdex_GlobalParams *now, const perpdex_GlobalParams *p) {
  if (p->timelock_seconds * 2 < now->timelock_seconds) return PERPDEX_ERR_TIMELOCK_FALLS_TOO_FAST;
  if (!leverage_rise_ok(now->max_leverage_cap, p->max_leverage_cap))
    return PERPDEX_ERR_LEVERAGE_RISES_TOO_FAST;
  /* both directions are risky: shorter lets wallets race an operator's brief outage, longer
   * locks funds longer if it is gone; at most double or half per change (both bounded) */
  if (p->escape_hatch_slots > 2 * now->escape_hatch_slots ||
      2 * p->escape_hatch_slots < now->escape_hatch_slots)
    return PERPDEX_ERR_ESCAPE_HATCH_CHANGE_TOO_FAST;
  return PD_SUCCESS;
}

/* Hard bounds of a market's new risk parameters (max_leverage under the global cap). */
static uint64_t validate_risk(const perpdex_RiskParams *p, const perpdex_GlobalParams *global) {
  uint64_t err = pd_validate_margin_tiers(p->margin_tiers, p->num_margin_tiers);
  if (err) return err;
  for (uint64_t i = p->num_margin_tiers; i < PERPDEX_MAX_MARGIN_TIERS; i++)
    if (!bytes_zero(&p->margin_tiers[i], sizeof p->margin_tiers[i]))
      return PERPDEX_ERR_INVALID_MARGIN_TIERS; /* unused tiers must be zero */
  err = pd_validate_fee_schedule(p->maker_fee_ppm, p->taker_fee_ppm, p->insurance_share_ppm);
  if (err) return err;
  if (p->funding_cap_rate > PERPDEX_FUNDING_RATE_PRECISION) return PERPDEX_ERR_INVALID_FUNDING_CAP;
  if (p->oracle_max_confidence_ppm > PERPDEX_RATIO_PRECISION)
    return PERPDEX_ERR_INVALID_GUARD_LIMITS;
  if (p->oracle_max_age_slots < 1 || p->oracle_max_age_slots > PERPDEX_MAX_ORACLE_AGE_SLOTS ||
      p->oracle_max_age_seconds < 1 || p->oracle_max_age_seconds > PERPDEX_MAX_ORACLE_AGE_SECONDS)
    return PERPDEX_ERR_INVALID_ORACLE_AGE;
  if (p->max_position_base == 0 || p->max_position_base > p->max_open_interest_base)
    return PERPDEX_ERR_INVALID_POSITION_CAPS;
  if (p->liquidation_fee_ppm >= p->margin_tiers[0].maintenance_ppm ||
      p->liquidation_fee_ppm > PERPDEX_MAX_LIQUIDATION_FEE_PPM)
    return PERPDEX_ERR_INVALID_LIQUIDATION_FEE;
  if (p->max_leverage < 1 || p->max_leverage > global->max_leverage_cap)
    return PERPDEX_ERR_INVALID_MAX_LEVERAGE;
  /* an order at max leverage (margin 1 / max_leverage) must still meet the first tier's
   * initial margin: max_leverage x initial_ppm <= 1e6 */
  if ((uint64_t)p->max_leverage * p->margin_tiers[0].initial_ppm > PERPDEX_RATIO_PRECISION)
    return PERPDEX_ERR_LEVERAGE_ABOVE_MARGIN;
  /* as at create_market; no pace limit: the share only moves a fee between the liquidator and
   * the fund, the buffer only sizes liquidations of accounts already below maintenance */
  if (p->liquidator_share_ppm > PERPDEX_RATIO_PRECISION ||
      p->liquidation_buffer_ppm > PERPDEX_MAX_LIQUIDATION_FEE_PPM)
    return PERPDEX_ERR_INVALID_LIQUIDATION_SPLIT;
  return PD_SUCCESS;
}

/* Rate limits against the market's values in force (only the riskier direction is limited). */
static uint64_t rate_limit_risk(const perpdex_Market *m, const perpdex_RiskParams *p) {
  if (p->num_margin_tiers != m->num_margin_tiers) return PERPDEX_ERR_MARGIN_TIER_COUNT_CHANGED;
  for (uint64_t i = 0; i < p->num_margin_tiers; i++) {
    const perpdex_MarginTier *now = &m->margin_tiers[i], *next = &p->margin_tiers[i];
    if (!margin_fall_ok(now->initial_ppm, next->initial_ppm) ||
        !margin_fall_ok(now->maintenance_ppm, next->maintenance_ppm))
      return PERPDEX_ERR_MARGIN_FALLS_TOO_FAST;
    if (!at_most_doubles(now->up_to_notional_quote, next->up_to_notional_quote))
      return PERPDEX_ERR_TIER_BOUND_RISES_TOO_FAST;
  }
  if (!leverage_rise_ok(m->max_leverage, p->max_leverage))
    return PERPDEX_ERR_LEVERAGE_RISES_TOO_FAST;
  if (!at_most_doubles(m->oracle_max_age_slots, p->oracle_max_age_slots) ||
      !at_most_doubles(m->oracle_max_age_seconds, p->oracle_max_age_seconds) ||
      !at_most_doubles(m->oracle_max_confidence_ppm, p->oracle_max_confidence_ppm))
    return PERPDEX_ERR_ORACLE_LIMITS_LOOSEN_TOO_FAST;
  if (!at_most_doubles(m->max_position_base, p->max_position_base) ||
      !at_most_doubles(m->max_open_interest_base, p->max_open_interest_base) ||
      !at_most_doubles(m->funding_cap_rate, p->funding_cap_rate))
    return PERPDEX_ERR_CAPS_RISE_TOO_FAST;
  return PD_SUCCESS;
}

static void apply_risk(perpdex_Market *m, const perpdex_RiskParams *p) {
  m->funding_cap_rate = p->funding_cap_rate;
  m->oracle_max_age_slots = p->oracle_max_age_slots;
  m->oracle_max_age_seconds = p->oracle_max_age_seconds;
  m->max_position_base = p->max_position_base;
  m->max_open_interest_base = p->max_open_interest_base;
  m->maker_fee_ppm = p->maker_fee_ppm;
  m->taker_fee_ppm = p->taker_fee_ppm;
  m->insurance_share_ppm = p->insurance_share_ppm;
  m->oracle_max_confidence_ppm = p->oracle_max_confidence_ppm;
  m->liquidation_fee_ppm = p->liquidation_fee_ppm;
  m->max_leverage = p->max_leverage;
  m->liquidator_share_ppm = p->liquidator_share_ppm;
  m->liquidation_buffer_ppm = p->liquidation_buffer_ppm;
  __builtin_memcpy(m->margin_tiers, p->margin_tiers, sizeof m->margin_tiers);
}

/* ------------------------------------------------------------------ initialize_governance */
uint64_t ix_initialize_governance(const SolParameters *params) {
  if (params->data_len != sizeof(perpdex_initialize_governance_args))
    return PERPDEX_ERR_INSTRUCTION_DATA_LENGTH;
  const perpdex_initialize_governance_args *args =
      (const perpdex_initialize_governance_args *)params->data;
  uint64_t err = check_accounts(params, PERPDEX_IX_INITIALIZE_GOVERNANCE_NUM_ACCOUNTS,
                                PERPDEX_IX_INITIALIZE_GOVERNANCE_WRITABLE_MASK,
                                PERPDEX_IX_INITIALIZE_GOVERNANCE_SIGNER_MASK,
                                PERPDEX_ERR_AUTHORITY_NOT_SIGNER);
  if (err) return err;
  SolAccountInfo *ka = params->ka;
  SolAccountInfo *governance_account = &ka[PERPDEX_IX_INITIALIZE_GOVERNANCE_ACC_GOVERNANCE];
  SolAccountInfo *authority = &ka[PERPDEX_IX_INITIALIZE_GOVERNANCE_ACC_AUTHORITY];
  SolAccountInfo *exchange_account = &ka[PERPDEX_IX_INITIALIZE_GOVERNANCE_ACC_EXCHANGE];
  perpdex_Exchange *exchange;
  err = load_exchange(exchange_account, params->program_id, &exchange);
  if (err) return err;
  if (!key_eq(authority->key, exchange->authority)) return PERPDEX_ERR_AUTHORITY_MISMATCH;
  if (!is_system_program(&ka[PERPDEX_IX_INITIALIZE_GOVERNANCE_ACC_SYSTEM_PROGRAM]))
    return PERPDEX_ERR_SYSTEM_PROGRAM_MISMATCH;
  if (key_eq(governance_account->owner, params->program_id))
    return PERPDEX_ERR_GOVERNANCE_ALREADY_INITIALIZED;
  uint8_t bump = args->bump;
  const SolSignerSeed seeds[2] = {
      {(const uint8_t *)PERPDEX_SEED_GOVERNANCE, PERPDEX_SEED_GOVERNANCE_LEN}, {&bump, 1}};
  if (!pd_is_program_address(governance_account, seeds, 2, params->program_id))
    return PERPDEX_ERR_GOVERNANCE_WRONG_PDA;
  /* council: 1..MAX distinct non-zero keys, the unused slots zero */
  uint64_t num_council = args->num_council;
  if (num_council < 1 || num_council > PERPDEX_MAX_COUNCIL) return PERPDEX_ERR_INVALID_COUNCIL;
  for (uint64_t i = 0; i < PERPDEX_MAX_COUNCIL; i++) {
    bool zero = key_is_zero(args->council[i]);
    if (zero != (i >= num_council)) return PERPDEX_ERR_INVALID_COUNCIL;
    for (uint64_t j = 0; j < i && i < num_council; j++)
      if (pd_memcmp(args->council[i], args->council[j], 32) == 0)
        return PERPDEX_ERR_INVALID_COUNCIL;
  }
  if (args->threshold < 1 || args->threshold > num_council) return PERPDEX_ERR_INVALID_THRESHOLD;
  if (key_is_zero(args->guardian)) return PERPDEX_ERR_INVALID_GUARDIAN;
  perpdex_GlobalParams global;
  __builtin_memcpy(&global, (const uint8_t *)args + __builtin_offsetof(
                                perpdex_initialize_governance_args, params), sizeof global);
  err = validate_global(&global);
  if (err) return err;
  /* one value in force: the Exchange's (withdraw reads it there); execute moves both */
  if (global.escape_hatch_slots != exchange->escape_hatch_slots)
    return PERPDEX_ERR_ESCAPE_HATCH_MISMATCH;
  const SolSignerSeeds signer = {seeds, 2};
  PdCreateAccount create = {authority,
                            governance_account,
                            &ka[PERPDEX_IX_INITIALIZE_GOVERNANCE_ACC_SYSTEM_PROGRAM],
                            pd_rent_exempt_minimum(PERPDEX_ACCOUNT_GOVERNANCE_SIZE),
                            PERPDEX_ACCOUNT_GOVERNANCE_SIZE,
                            params->program_id};
  err = pd_system_create_account(&create, &signer, 1);
  if (err) return err;
  perpdex_Governance *g = (perpdex_Governance *)governance_account->data;
  g->discriminator = PERPDEX_ACCOUNT_GOVERNANCE_DISCRIMINATOR;
  pd_pubkey_copy((SolPubkey *)g->exchange, exchange_account->key);
  __builtin_memcpy(g->guardian, args->guardian, 32);
  __builtin_memcpy(g->council, args->council, sizeof g->council);
  pd_pubkey_copy((SolPubkey *)g->address, governance_account->key);
  g->next_proposal_id = 0;
  g->params = global;
  g->num_council = (uint8_t)num_council;
  g->threshold = args->threshold;
  g->bump = bump;
  return PD_SUCCESS;
}

/* ------------------------------------------------------------------ propose_param_change */
uint64_t ix_propose_param_change(const SolParameters *params) {
  if (params->data_len != sizeof(perpdex_propose_param_change_args))
    return PERPDEX_ERR_INSTRUCTION_DATA_LENGTH;
  const perpdex_propose_param_change_args *args =
      (const perpdex_propose_param_change_args *)params->data;
  uint64_t err = check_accounts(params, PERPDEX_IX_PROPOSE_PARAM_CHANGE_NUM_ACCOUNTS,
                                PERPDEX_IX_PROPOSE_PARAM_CHANGE_WRITABLE_MASK,
                                PERPDEX_IX_PROPOSE_PARAM_CHANGE_SIGNER_MASK,
                                PERPDEX_ERR_COUNCIL_NOT_SIGNER);
  if (err) return err;
  SolAccountInfo *ka = params->ka;
  SolAccountInfo *proposal_account = &ka[PERPDEX_IX_PROPOSE_PARAM_CHANGE_ACC_PROPOSAL];
  SolAccountInfo *proposer = &ka[PERPDEX_IX_PROPOSE_PARAM_CHANGE_ACC_PROPOSER];
  perpdex_Governance *governance;
  err = load_governance(&ka[PERPDEX_IX_PROPOSE_PARAM_CHANGE_ACC_GOVERNANCE], params->program_id,
                        &governance);
  if (err) return err;
  uint64_t member = council_index(governance, proposer->key);
  if (member >= PERPDEX_MAX_COUNCIL) return PERPDEX_ERR_NOT_COUNCIL_MEMBER;
  if (!is_system_program(&ka[PERPDEX_IX_PROPOSE_PARAM_CHANGE_ACC_SYSTEM_PROGRAM]))
    return PERPDEX_ERR_SYSTEM_PROGRAM_MISMATCH;
  uint64_t id = args->id;
  if (id != governance->next_proposal_id) return PERPDEX_ERR_PROPOSAL_ID_MISMATCH;
  if (!key_eq(proposal_account->owner, &(const SolPubkey)PD_SYSTEM_PROGRAM_ID))
    return PERPDEX_ERR_PROPOSAL_WRONG_OWNER;
  uint8_t id_le[8], bump = args->bump;
  pd_store_u64(id_le, id);
  const SolSignerSeed seeds[3] = {
      {(const uint8_t *)PERPDEX_SEED_PROPOSAL, PERPDEX_SEED_PROPOSAL_LEN}, {id_le, 8}, {&bump, 1}};
  if (!pd_is_program_address(proposal_account, seeds, 3, params->program_id))
    return PERPDEX_ERR_PROPOSAL_WRONG_PDA;
  perpdex_RiskParams risk;
  perpdex_GlobalParams global;
  __builtin_memcpy(&risk, (const uint8_t *)args + __builtin_offsetof(
                              perpdex_propose_param_change_args, risk), sizeof risk);
  __builtin_memcpy(&global, (const uint8_t *)args + __builtin_offsetof(
                                perpdex_propose_param_change_args, global_params), sizeof global);
  uint16_t market_index = args->market_index;
  if (market_index == PERPDEX_GLOBAL_TARGET) {
    if (!bytes_zero(&risk, sizeof risk)) return PERPDEX_ERR_PROPOSAL_TARGET_MISMATCH;
    err = validate_global(&global);
  } else {
    if (!bytes_zero(&global, sizeof global)) return PERPDEX_ERR_PROPOSAL_TARGET_MISMATCH;
    err = validate_risk(&risk, &governance->params);
  }
  if (err) return err;
  SolClock clock;
  err = pd_get_clock(&clock);
  if (err) return err;
  const SolSignerSeeds signer = {seeds, 3};
  PdCreateAccount create = {proposer,
                            proposal_account,
                            &ka[PERPDEX_IX_PROPOSE_PARAM_CHANGE_ACC_SYSTEM_PROGRAM],
                            pd_rent_exempt_minimum(PERPDEX_ACCOUNT_PROPOSAL_SIZE),
                            PERPDEX_ACCOUNT_PROPOSAL_SIZE,
                            params->program_id};
  err = pd_system_create_account(&create, &signer, 1);
  if (err) return err;
  perpdex_Proposal *p = (perpdex_Proposal *)proposal_account->data;
  p->discriminator = PERPDEX_ACCOUNT_PROPOSAL_DISCRIMINATOR;
  pd_pubkey_copy((SolPubkey *)p->proposer, proposer->key);
  pd_pubkey_copy((SolPubkey *)p->address, proposal_account->key);
  p->id = id;
  p->created_unix_s = clock.unix_timestamp;
  /* timelock <= 30 days: no overflow for any realistic clock */
  p->earliest_execution_unix_s = clock.unix_timestamp + (int64_t)governance->params.timelock_seconds;
  p->market_index = market_index;
  p->status = PERPDEX_PROPOSAL_PENDING;
  p->approvals_mask = (uint8_t)(1u << member);
  p->bump = bump;
  p->risk = risk;
  p->global_params = global;
  governance->next_proposal_id = id + 1;
  perpdex_ParamChangeProposedEvent event = {PERPDEX_EVENT_PARAM_CHANGE_PROPOSED_DISCRIMINATOR, id,
                                            market_index, p->earliest_execution_unix_s};
  emit(&event, sizeof event);
  return PD_SUCCESS;
}

/* ------------------------------------------------------------------ approve */
uint64_t ix_approve(const SolParameters *params) {
  if (params->data_len != sizeof(perpdex_approve_args)) return PERPDEX_ERR_INSTRUCTION_DATA_LENGTH;
  uint64_t err = check_accounts(params, PERPDEX_IX_APPROVE_NUM_ACCOUNTS,
                                PERPDEX_IX_APPROVE_WRITABLE_MASK, PERPDEX_IX_APPROVE_SIGNER_MASK,
                                PERPDEX_ERR_COUNCIL_NOT_SIGNER);
  if (err) return err;
  SolAccountInfo *ka = params->ka;
  perpdex_Governance *governance;
  err = load_governance(&ka[PERPDEX_IX_APPROVE_ACC_GOVERNANCE], params->program_id, &governance);
  if (err) return err;
  perpdex_Proposal *proposal;
  err = load_proposal(&ka[PERPDEX_IX_APPROVE_ACC_PROPOSAL], params->program_id, &proposal);
  if (err) return err;
  uint64_t member = council_index(governance, ka[PERPDEX_IX_APPROVE_ACC_MEMBER].key);
  if (member >= PERPDEX_MAX_COUNCIL) return PERPDEX_ERR_NOT_COUNCIL_MEMBER;
  if (proposal->status != PERPDEX_PROPOSAL_PENDING) return PERPDEX_ERR_PROPOSAL_NOT_PENDING;
  if ((proposal->approvals_mask >> member) & 1u) return PERPDEX_ERR_ALREADY_APPROVED;
  proposal->approvals_mask = (uint8_t)(proposal->approvals_mask | (1u << member));
  perpdex_ProposalApprovedEvent event = {PERPDEX_EVENT_PROPOSAL_APPROVED_DISCRIMINATOR,
                                         proposal->id, proposal->approvals_mask};
  emit(&event, sizeof event);
  return PD_SUCCESS;
}

/* ------------------------------------------------------------------ execute */
uint64_t ix_execute(const SolParameters *params) {
  if (params->data_len != sizeof(perpdex_execute_args)) return PERPDEX_ERR_INSTRUCTION_DATA_LENGTH;
  uint64_t err = check_accounts(params, PERPDEX_IX_EXECUTE_NUM_ACCOUNTS,
                                PERPDEX_IX_EXECUTE_WRITABLE_MASK, PERPDEX_IX_EXECUTE_SIGNER_MASK,
                                PERPDEX_ERR_COUNCIL_NOT_SIGNER);
  if (err) return err;
  SolAccountInfo *ka = params->ka;
  perpdex_Governance *governance;
  err = load_governance(&ka[PERPDEX_IX_EXECUTE_ACC_GOVERNANCE], params->program_id, &governance);
  if (err) return err;
  perpdex_Proposal *proposal;
  err = load_proposal(&ka[PERPDEX_IX_EXECUTE_ACC_PROPOSAL], params->program_id, &proposal);
  if (err) return err;
  if (proposal->status != PERPDEX_PROPOSAL_PENDING) return PERPDEX_ERR_PROPOSAL_NOT_PENDING;
  /* council bits only: the mask never holds others, but count what the council can give */
  uint64_t council_bits = (1u << governance->num_council) - 1u;
  if (popcount8(proposal->approvals_mask & council_bits) < governance->threshold)
    return PERPDEX_ERR_NOT_ENOUGH_APPROVALS;
  SolClock clock;
  err = pd_get_clock(&clock);
  if (err) return err;
  if (clock.unix_timestamp < proposal->earliest_execution_unix_s)
    return PERPDEX_ERR_TIMELOCK_NOT_ELAPSED;
  uint16_t market_index = proposal->market_index;
  if (market_index == PERPDEX_GLOBAL_TARGET) {
    err = validate_global(&proposal->global_params);
    if (err) return err;
    err = rate_limit_global(&governance->params, &proposal->global_params);
    if (err) return err;
    if (params->ka_num < PERPDEX_IX_EXECUTE_NUM_ACCOUNTS + 1)
      return PERPDEX_ERR_EXECUTE_EXCHANGE_MISSING;
    SolAccountInfo *exchange_account = &ka[PERPDEX_IX_EXECUTE_NUM_ACCOUNTS];
    perpdex_Exchange *exchange;
    err = load_exchange(exchange_account, params->program_id, &exchange);
    if (err) return err;
    if (!key_eq(exchange_account->key, governance->exchange)) return PERPDEX_ERR_EXCHANGE_WRONG_PDA;
    if (!exchange_account->is_writable) return PERPDEX_ERR_ACCOUNT_NOT_WRITABLE;
    governance->params = proposal->global_params;
    exchange->escape_hatch_slots = proposal->global_params.escape_hatch_slots;
  } else {
    if (params->ka_num < PERPDEX_IX_EXECUTE_NUM_ACCOUNTS + 1)
      return PERPDEX_ERR_PROPOSAL_MARKET_MISSING;
    SolAccountInfo *market_account = &ka[PERPDEX_IX_EXECUTE_NUM_ACCOUNTS];
    perpdex_Market *market;
    err = load_market(market_account, params->program_id, &market);
    if (err) return err;
    if (market->index != market_index) return PERPDEX_ERR_PROPOSAL_MARKET_MISMATCH;
    if (!market_account->is_writable) return PERPDEX_ERR_ACCOUNT_NOT_WRITABLE;
    err = validate_risk(&proposal->risk, &governance->params);
    if (err) return err;
    err = rate_limit_risk(market, &proposal->risk);
    if (err) return err;
    apply_risk(market, &proposal->risk);
  }
  proposal->status = PERPDEX_PROPOSAL_EXECUTED;
  perpdex_RiskParamsChangedEvent event = {PERPDEX_EVENT_RISK_PARAMS_CHANGED_DISCRIMINATOR,
                                          proposal->id, market_index, clock.slot};
  emit(&event, sizeof event);
  return PD_SUCCESS;
}

/* ------------------------------------------------------------------ cancel */
uint64_t ix_cancel(const SolParameters *params) {
  if (params->data_len != sizeof(perpdex_cancel_args)) return PERPDEX_ERR_INSTRUCTION_DATA_LENGTH;
  uint64_t err = check_accounts(params, PERPDEX_IX_CANCEL_NUM_ACCOUNTS,
                                PERPDEX_IX_CANCEL_WRITABLE_MASK, PERPDEX_IX_CANCEL_SIGNER_MASK,
                                PERPDEX_ERR_COUNCIL_NOT_SIGNER);
  if (err) return err;
  SolAccountInfo *ka = params->ka;
  perpdex_Governance *governance;
  err = load_governance(&ka[PERPDEX_IX_CANCEL_ACC_GOVERNANCE], params->program_id, &governance);
  if (err) return err;
  perpdex_Proposal *proposal;
  err = load_proposal(&ka[PERPDEX_IX_CANCEL_ACC_PROPOSAL], params->program_id, &proposal);
  if (err) return err;
  const SolPubkey *signer = ka[PERPDEX_IX_CANCEL_ACC_SIGNER].key;
  if (!key_eq(signer, proposal->proposer) &&
      council_index(governance, signer) >= PERPDEX_MAX_COUNCIL)
    return PERPDEX_ERR_CANCEL_NOT_ALLOWED;
  if (proposal->status != PERPDEX_PROPOSAL_PENDING) return PERPDEX_ERR_PROPOSAL_NOT_PENDING;
  proposal->status = PERPDEX_PROPOSAL_CANCELLED;
  perpdex_ProposalCancelledEvent event = {PERPDEX_EVENT_PROPOSAL_CANCELLED_DISCRIMINATOR,
                                          proposal->id};
  emit(&event, sizeof event);
  return PD_SUCCESS;
}

/* ------------------------------------------------------------------ guardian_set_status */
uint64_t ix_guardian_set_status(const SolParameters *params) {
  if (params->data_len != sizeof(perpdex_guardian_set_status_args))
    return PERPDEX_ERR_INSTRUCTION_DATA_LENGTH;
  const perpdex_guardian_set_status_args *args =
      (const perpdex_guardian_set_status_args *)params->data;
  uint64_t err = check_accounts(params, PERPDEX_IX_GUARDIAN_SET_STATUS_NUM_ACCOUNTS,
                                PERPDEX_IX_GUARDIAN_SET_STATUS_WRITABLE_MASK,
                                PERPDEX_IX_GUARDIAN_SET_STATUS_SIGNER_MASK,
                                PERPDEX_ERR_GUARDIAN_NOT_SIGNER);
  if (err) return err;
  SolAccountInfo *ka = params->ka;
  perpdex_Governance *governance;
  err = load_governance(&ka[PERPDEX_IX_GUARDIAN_SET_STATUS_ACC_GOVERNANCE], params->program_id,
                        &governance);
  if (err) return err;
  if (!key_eq(ka[PERPDEX_IX_GUARDIAN_SET_STATUS_ACC_GUARDIAN].key, governance->guardian))
    return PERPDEX_ERR_GUARDIAN_MISMATCH;
  perpdex_Market *market;
  err = load_market(&ka[PERPDEX_IX_GUARDIAN_SET_STATUS_ACC_MARKET], params->program_id, &market);
  if (err) return err;
  /* statuses are ordered by strictness; the guardian only moves up, and only to a
   * protective one (never post-only, never back to active) */
  uint8_t status = args->status;
  if (status < PERPDEX_MARKET_STATUS_REDUCE_ONLY || status > PERPDEX_MARKET_STATUS_HALTED ||
      status <= market->status)
    return PERPDEX_ERR_GUARDIAN_STATUS_NOT_SAFER;
  market->status = status;
  perpdex_MarketStatusChangedEvent event = {PERPDEX_EVENT_MARKET_STATUS_CHANGED_DISCRIMINATOR,
                                            market->index, status};
  emit(&event, sizeof event);
  return PD_SUCCESS;
}
