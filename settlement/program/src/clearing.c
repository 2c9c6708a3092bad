/*
 * clearing.c: the perpdex clearing program (instructions of settlement/spec.py).
 *
 * Layouts, discriminators and error codes come from the generated perpdex_clearing_idl.h;
 * the money maths from pd_math.c (golden-tested against the Python engine). Every check
 * returns its own IDL error; the runtime discards every account write of a failed
 * instruction, so a rejection leaves all accounts byte-identical.
 *
 * Account authenticity: every account the program creates is created at its PDA (checked with
 * create_program_address, the bump from the instruction) and stores its own address at
 * creation. Every later use checks owner == this program, size, discriminator and
 * key == stored address: only this program writes data into accounts it owns, and it writes a
 * discriminator and an address only there, so a copy of the data at any other address fails
 * (with the account's WrongPda error). That is a 32-byte compare instead of a ~1,500 CU PDA
 * derivation per account and instruction. Where a wallet acts on its User (deposit,
 * withdraw) the User PDA is still derived from the signer's key, binding the two.
 */
#include "perpdex_sol.h"
#include "perpdex_clearing_idl.h"
#include "pd_math.h"
#include "pd_liquidation.h"
#include "clearing.h"

typedef struct {
  const SolParameters *params;
  SolAccountInfo *ka;
} Ctx;

/* ------------------------------------------------------------------ small helpers */
/* Two public keys equal. Keys and owners in the runtime's input, key fields of this program's
 * accounts (aligned(8) structs) and the entrypoint's copy of the program id are 8-aligned:
 * then four word compares; anything else takes the byte-wise path (a separate function, so
 * the optimiser cannot merge the two loads into one byte-wise path). */
static __attribute__((noinline)) bool key_eq_unaligned(const void *a, const void *b) {
  return pd_pubkey_eq((const SolPubkey *)a, (const SolPubkey *)b);
}

bool key_eq(const void *a, const void *b) {
  if ((((uintptr_t)a | (uintptr_t)b) & 7u) != 0) return key_eq_unaligned(a, b);
  const uint64_t *x = __builtin_assume_aligned(a, 8), *y = __builtin_assume_aligned(b, 8);
  return ((x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2]) | (x[3] ^ y[3])) == 0;
}

void emit(const void *event, uint64_t len) {
  SolBytes field = {(const uint8_t *)event, len};
  sol_log_data(&field, 1);
}

/* Each named account present, writable and signing as the instruction's masks say; the
 * signer error is the instruction's own (who failed to sign). */
uint64_t check_accounts(const SolParameters *params, uint64_t num, uint64_t writable_mask,
                        uint64_t signer_mask, uint64_t not_signer_error) {
  if (params->ka_num < num) return PERPDEX_ERR_NOT_ENOUGH_ACCOUNTS;
  for (uint64_t i = 0; i < num; i++) {
    if ((signer_mask >> i) & 1u && !params->ka[i].is_signer) return not_signer_error;
    if ((writable_mask >> i) & 1u && !params->ka[i].is_writable)
      return PERPDEX_ERR_ACCOUNT_NOT_WRITABLE;
  }
  return PD_SUCCESS;
}

static bool is_system_key(const SolPubkey *key) {
  const SolPubkey system = PD_SYSTEM_PROGRAM_ID;
  return key_eq(key, &system);
}

bool is_system_program(const SolAccountInfo *account) { return is_system_key(account->key); }

static bool is_token_program(const SolAccountInfo *account) {
  const SolPubkey token = PD_SPL_TOKEN_PROGRAM_ID;
  return key_eq(account->key, &token);
}

/* ------------------------------------------------------------------ PDAs */
static bool exchange_pda_ok(const SolAccountInfo *account, uint8_t bump,
                            const SolPubkey *program_id) {
  const SolSignerSeed seeds[2] = {
      {(const uint8_t *)PERPDEX_SEED_EXCHANGE, PERPDEX_SEED_EXCHANGE_LEN}, {&bump, 1}};
  return pd_is_program_address(account, seeds, 2, program_id);
}

static bool market_pda_ok(const SolAccountInfo *account, const uint8_t index_le[2], uint8_t bump,
                          const SolPubkey *program_id) {
  const SolSignerSeed seeds[3] = {
      {(const uint8_t *)PERPDEX_SEED_MARKET, PERPDEX_SEED_MARKET_LEN}, {index_le, 2}, {&bump, 1}};
  return pd_is_program_address(account, seeds, 3, program_id);
}

static bool user_pda_ok(const SolAccountInfo *account, const SolPubkey *owner, uint8_t bump,
                        const SolPubkey *program_id) {
  const SolSignerSeed seeds[3] = {
      {(const uint8_t *)PERPDEX_SEED_USER, PERPDEX_SEED_USER_LEN}, {owner->x, 32}, {&bump, 1}};
  return pd_is_program_address(account, seeds, 3, program_id);
}

static bool vault_authority_pda_ok(const SolAccountInfo *account, uint8_t bump,
                                   const SolPubkey *program_id) {
  const SolSignerSeed seeds[2] = {
      {(const uint8_t *)PERPDEX_SEED_VAULT_AUTHORITY, PERPDEX_SEED_VAULT_AUTHORITY_LEN},
      {&bump, 1}};
  return pd_is_program_address(account, seeds, 2, program_id);
}

/* ------------------------------------------------------------------ account loading */
uint64_t load_exchange(const SolAccountInfo *account, const SolPubkey *program_id,
                       perpdex_Exchange **out) {
  if (!key_eq(account->owner, program_id)) return PERPDEX_ERR_EXCHANGE_WRONG_OWNER;
  if (account->data_len != PERPDEX_ACCOUNT_EXCHANGE_SIZE) return PERPDEX_ERR_EXCHANGE_WRONG_SIZE;
  perpdex_Exchange *exchange = (perpdex_Exchange *)account->data;
  if (exchange->discriminator != PERPDEX_ACCOUNT_EXCHANGE_DISCRIMINATOR)
    return PERPDEX_ERR_EXCHANGE_BAD_DISCRIMINATOR;
  if (!key_eq(account->key, exchange->address)) return PERPDEX_ERR_EXCHANGE_WRONG_PDA;
  *out = exchange;
  return PD_SUCCESS;
}

uint64_t load_market(const SolAccountInfo *account, const SolPubkey *program_id,
                     perpdex_Market **out) {
  if (!key_eq(account->owner, program_id)) return PERPDEX_ERR_MARKET_WRONG_OWNER;
  if (account->data_len != PERPDEX_ACCOUNT_MARKET_SIZE) return PERPDEX_ERR_MARKET_WRONG_SIZE;
  perpdex_Market *market = (perpdex_Market *)account->data;
  if (market->discriminator != PERPDEX_ACCOUNT_MARKET_DISCRIMINATOR)
    return PERPDEX_ERR_MARKET_BAD_DISCRIMINATOR;
  if (!key_eq(account->key, market->address)) return PERPDEX_ERR_MARKET_WRONG_PDA;
  *out = market;
  return PD_SUCCESS;
}

/* Owner, size, discriminator and stored address (deposit and withdraw also derive the PDA
 * from the signing owner). */
static uint64_t load_user(const SolAccountInfo *account, const SolPubkey *program_id,
                          perpdex_User **out) {
  if (!key_eq(account->owner, program_id)) return PERPDEX_ERR_USER_WRONG_OWNER;
  if (account->data_len != PERPDEX_ACCOUNT_USER_SIZE) return PERPDEX_ERR_USER_WRONG_SIZE;
  perpdex_User *user = (perpdex_User *)account->data;
  if (user->discriminator != PERPDEX_ACCOUNT_USER_DISCRIMINATOR)
    return PERPDEX_ERR_USER_BAD_DISCRIMINATOR;
  if (!key_eq(account->key, user->address)) return PERPDEX_ERR_USER_WRONG_PDA;
  *out = user;
  return PD_SUCCESS;
}

/* An initialised SPL token account of `mint`. */
static uint64_t check_token_account(const SolAccountInfo *account, const uint8_t *mint) {
  if (!key_eq(account->owner, &(const SolPubkey)PD_SPL_TOKEN_PROGRAM_ID))
    return PERPDEX_ERR_TOKEN_ACCOUNT_WRONG_OWNER;
  if (account->data_len != PD_TOKEN_ACCOUNT_LEN ||
      account->data[PD_TOKEN_ACCOUNT_STATE_OFFSET] != PD_TOKEN_ACCOUNT_STATE_INITIALIZED)
    return PERPDEX_ERR_TOKEN_ACCOUNT_BAD_LAYOUT;
  if (!key_eq((const SolPubkey *)(account->data + PD_TOKEN_ACCOUNT_MINT_OFFSET), mint))
    return PERPDEX_ERR_TOKEN_ACCOUNT_MINT_MISMATCH;
  return PD_SUCCESS;
}

/* The token account a signer pays from: an initialised token account of `mint` whose token
 * owner is the signer. The transfer would fail without it too, but with the Token program's
 * error instead of the program's own (a delegate cannot deposit on the owner's behalf). */
static uint64_t check_source_token(const SolAccountInfo *account, const uint8_t *mint,
                                   const SolPubkey *signer) {
  uint64_t err = check_token_account(account, mint);
  if (err) return err;
  if (!key_eq(account->data + PD_TOKEN_ACCOUNT_OWNER_OFFSET, signer))
    return PERPDEX_ERR_SOURCE_NOT_OWNER;
  return PD_SUCCESS;
}

/* ------------------------------------------------------------------ initialize */
static uint64_t ix_initialize(const SolParameters *params) {
  if (params->data_len != sizeof(perpdex_initialize_args))
    return PERPDEX_ERR_INSTRUCTION_DATA_LENGTH;
  const perpdex_initialize_args *args = (const perpdex_initialize_args *)params->data;
  uint64_t err = check_accounts(params, PERPDEX_IX_INITIALIZE_NUM_ACCOUNTS,
                                PERPDEX_IX_INITIALIZE_WRITABLE_MASK,
                                PERPDEX_IX_INITIALIZE_SIGNER_MASK, PERPDEX_ERR_AUTHORITY_NOT_SIGNER);
  if (err) return err;
  SolAccountInfo *ka = params->ka;
  SolAccountInfo *exchange = &ka[PERPDEX_IX_INITIALIZE_ACC_EXCHANGE];
  SolAccountInfo *authority = &ka[PERPDEX_IX_INITIALIZE_ACC_AUTHORITY];
  SolAccountInfo *mint = &ka[PERPDEX_IX_INITIALIZE_ACC_COLLATERAL_MINT];
  SolAccountInfo *vault = &ka[PERPDEX_IX_INITIALIZE_ACC_VAULT];
  SolAccountInfo *insurance = &ka[PERPDEX_IX_INITIALIZE_ACC_INSURANCE_VAULT];
  SolAccountInfo *vault_authority = &ka[PERPDEX_IX_INITIALIZE_ACC_VAULT_AUTHORITY];
  if (!is_system_program(&ka[PERPDEX_IX_INITIALIZE_ACC_SYSTEM_PROGRAM]))
    return PERPDEX_ERR_SYSTEM_PROGRAM_MISMATCH;
  if (key_eq(exchange->owner, params->program_id))
    return PERPDEX_ERR_EXCHANGE_ALREADY_INITIALIZED;
  if (!exchange_pda_ok(exchange, args->bump, params->program_id))
    return PERPDEX_ERR_EXCHANGE_WRONG_PDA;
  if (!vault_authority_pda_ok(vault_authority, args->vault_authority_bump, params->program_id))
    return PERPDEX_ERR_VAULT_AUTHORITY_WRONG_PDA;
  /* SPL mint: 82 bytes, is_initialized at 45 */
  if (!key_eq(mint->owner, &(const SolPubkey)PD_SPL_TOKEN_PROGRAM_ID) ||
      mint->data_len != 82 || mint->data[45] != 1)
    return PERPDEX_ERR_MINT_BAD_LAYOUT;
  if (key_eq(vault->key, insurance->key)) return PERPDEX_ERR_VAULT_MISMATCH;
  uint64_t escape_hatch_slots;
  __builtin_memcpy(&escape_hatch_slots, &args->escape_hatch_slots, sizeof escape_hatch_slots);
  if (escape_hatch_slots < PERPDEX_MIN_ESCAPE_HATCH_SLOTS ||
      escape_hatch_slots > PERPDEX_MAX_ESCAPE_HATCH_SLOTS)
    return PERPDEX_ERR_INVALID_ESCAPE_HATCH;
  SolClock clock;
  err = pd_get_clock(&clock);
  if (err) return err;
  const SolAccountInfo *vaults[2] = {vault, insurance};
  for (int i = 0; i < 2; i++) {
    err = check_token_account(vaults[i], mint->key->x);
    if (err) return err;
    if (!key_eq(vault_authority->key, vaults[i]->data + PD_TOKEN_ACCOUNT_OWNER_OFFSET))
      return PERPDEX_ERR_VAULT_NOT_OWNED_BY_AUTHORITY;
  }
  uint8_t bump = args->bump;
  const SolSignerSeed seeds[2] = {
      {(const uint8_t *)PERPDEX_SEED_EXCHANGE, PERPDEX_SEED_EXCHANGE_LEN}, {&bump, 1}};
  const SolSignerSeeds signer = {seeds, 2};
  PdCreateAccount create = {authority,
                            exchange,
                            &ka[PERPDEX_IX_INITIALIZE_ACC_SYSTEM_PROGRAM],
                            pd_rent_exempt_minimum(PERPDEX_ACCOUNT_EXCHANGE_SIZE),
                            PERPDEX_ACCOUNT_EXCHANGE_SIZE,
                            params->program_id};
  err = pd_system_create_account(&create, &signer, 1);
  if (err) return err;
  perpdex_Exchange *state = (perpdex_Exchange *)exchange->data;
  state->discriminator = PERPDEX_ACCOUNT_EXCHANGE_DISCRIMINATOR;
  pd_pubkey_copy((SolPubkey *)state->authority, authority->key);
  pd_pubkey_copy((SolPubkey *)state->operator, (const SolPubkey *)args->operator);
  pd_pubkey_copy((SolPubkey *)state->collateral_mint, mint->key);
  pd_pubkey_copy((SolPubkey *)state->vault, vault->key);
  pd_pubkey_copy((SolPubkey *)state->insurance_vault, insurance->key);
  state->bump = args->bump;
  state->vault_authority_bump = args->vault_authority_bump;
  pd_pubkey_copy((SolPubkey *)state->address, exchange->key);
  state->escape_hatch_slots = escape_hatch_slots;
  state->operator_active_slot = clock.slot; /* the hatch opens only after N slots of silence */
  return PD_SUCCESS;
}

/* ------------------------------------------------------------------ oracles */
static bool oracle_owner_ok(const SolAccountInfo *oracle, uint8_t source) {
  if (source == PERPDEX_ORACLE_SOURCE_PYTH_PULL)
    return key_eq(oracle->owner, &(const SolPubkey)PERPDEX_PYTH_RECEIVER_PROGRAM_ID);
  return key_eq(oracle->owner, &(const SolPubkey)PERPDEX_SWITCHBOARD_ON_DEMAND_PROGRAM_ID);
}

/* Owner, size, discriminator and (Pyth) feed id of a market's oracle account. */
static uint64_t check_oracle_layout(const SolAccountInfo *oracle, uint8_t source,
                                    const uint8_t *feed_id) {
  if (!oracle_owner_ok(oracle, source)) return PERPDEX_ERR_ORACLE_WRONG_OWNER;
  if (source == PERPDEX_ORACLE_SOURCE_PYTH_PULL) {
    if (oracle->data_len != PERPDEX_PYTH_PULL_SIZE ||
        pd_load_u64(oracle->data) != PERPDEX_PYTH_PULL_DISCRIMINATOR)
      return PERPDEX_ERR_ORACLE_BAD_LAYOUT;
    if (oracle->data[PERPDEX_PYTH_PULL_OFF_VERIFICATION] != PERPDEX_PYTH_PULL_VERIFICATION_FULL)
      return PERPDEX_ERR_ORACLE_NOT_VERIFIED;
    if (pd_memcmp(oracle->data + PERPDEX_PYTH_PULL_OFF_FEED_ID, feed_id, 32) != 0)
      return PERPDEX_ERR_ORACLE_FEED_MISMATCH;
    return PD_SUCCESS;
  }
  if (oracle->data_len != PERPDEX_SB_ON_DEMAND_SIZE ||
      pd_load_u64(oracle->data) != PERPDEX_SB_ON_DEMAND_DISCRIMINATOR)
    return PERPDEX_ERR_ORACLE_BAD_LAYOUT;
  return PD_SUCCESS;
}

/* The market's oracle price (PRICE_PRECISION) after the staleness and confidence guards. */
static uint64_t read_oracle_price(const perpdex_Market *market, const SolAccountInfo *oracle,
                                  const SolClock *clock, uint64_t *price_out) {
  if (!key_eq(oracle->key, market->oracle)) return PERPDEX_ERR_ORACLE_MISMATCH;
  uint64_t err = check_oracle_layout(oracle, market->oracle_source, market->oracle_feed_id);
  if (err) return err;
  const uint8_t *data = oracle->data;
  pd_i128 mantissa, confidence_raw;
  int64_t exponent;
  uint64_t slot;
  bool check_seconds = false;
  int64_t publish_time = 0;
  if (market->oracle_source == PERPDEX_ORACLE_SOURCE_PYTH_PULL) {
    mantissa = (pd_i128)pd_load_i64(data + PERPDEX_PYTH_PULL_OFF_PRICE);
    confidence_raw = (pd_i128)pd_load_u64(data + PERPDEX_PYTH_PULL_OFF_CONF);
    exponent = (int64_t)(int32_t)pd_load_u32(data + PERPDEX_PYTH_PULL_OFF_EXPONENT);
    publish_time = pd_load_i64(data + PERPDEX_PYTH_PULL_OFF_PUBLISH_TIME);
    slot = pd_load_u64(data + PERPDEX_PYTH_PULL_OFF_POSTED_SLOT);
    check_seconds = true;
  } else {
    /* Switchboard: freshness is result.slot (last_update_timestamp can lag by months). */
    slot = pd_load_u64(data + PERPDEX_SB_OFF_RESULT_SLOT);
    if (slot == 0 || data[PERPDEX_SB_OFF_NUM_SAMPLES] < data[PERPDEX_SB_OFF_MIN_SAMPLE_SIZE])
      return PERPDEX_ERR_ORACLE_NOT_VERIFIED;
    mantissa = pd_load_i128(data + PERPDEX_SB_OFF_RESULT_VALUE);
    confidence_raw = pd_load_i128(data + PERPDEX_SB_OFF_RESULT_STD_DEV);
    exponent = -(int64_t)PERPDEX_SB_ON_DEMAND_DECIMALS;
  }
  if (clock->slot > slot && clock->slot - slot > market->oracle_max_age_slots)
    return PERPDEX_ERR_ORACLE_STALE_SLOTS;
  if (check_seconds && clock->unix_timestamp > publish_time &&
      (uint64_t)clock->unix_timestamp - (uint64_t)publish_time > market->oracle_max_age_seconds)
    return PERPDEX_ERR_ORACLE_STALE_SECONDS;
  uint64_t price, confidence;
  err = pd_price_from_raw(&mantissa, exponent, &price);
  if (err) return err;
  err = pd_confidence_from_raw(&confidence_raw, exponent, &confidence);
  if (err) return err;
  /* confidence x 1e6 > max_confidence_ppm x price */
  pd_u128 lhs = pd_mul_u64_wide(confidence, PERPDEX_RATIO_PRECISION);
  pd_u128 rhs = pd_mul_u64_wide(market->oracle_max_confidence_ppm, price);
  if (lhs > rhs) return PERPDEX_ERR_ORACLE_CONFIDENCE_TOO_WIDE;
  *price_out = price;
  return PD_SUCCESS;
}

/* ------------------------------------------------------------------ create_market */
static uint64_t validate_market_params(const perpdex_MarketParams *p) {
  if (p->oracle_source != PERPDEX_ORACLE_SOURCE_PYTH_PULL &&
      p->oracle_source != PERPDEX_ORACLE_SOURCE_SWITCHBOARD_ON_DEMAND)
    return PERPDEX_ERR_INVALID_ORACLE_SOURCE;
  uint64_t tick = p->tick_size, lot = p->lot_size, rem;
  if (tick == 0 || lot == 0) return PERPDEX_ERR_INVALID_TICK_OR_LOT;
  pd_div_u128_u64(pd_mul_u64_wide(tick, lot), PERPDEX_BASE_PRECISION, &rem);
  if (rem != 0) return PERPDEX_ERR_INVALID_TICK_OR_LOT; /* one tick x one lot: whole quote */
  uint64_t err = pd_validate_fee_schedule(p->maker_fee_ppm, p->taker_fee_ppm,
                                          p->insurance_share_ppm);
  if (err) return err;
  perpdex_MarginTier tiers[PERPDEX_MAX_MARGIN_TIERS];
  __builtin_memcpy(tiers, p->margin_tiers, sizeof tiers); /* unaligned in the args */
  err = pd_validate_margin_tiers(tiers, p->num_margin_tiers);
  if (err) return err;
  for (uint64_t i = p->num_margin_tiers; i < PERPDEX_MAX_MARGIN_TIERS; i++)
    if (tiers[i].up_to_notional_quote || tiers[i].initial_ppm || tiers[i].maintenance_ppm)
      return PERPDEX_ERR_INVALID_MARGIN_TIERS; /* unused tiers must be zero */
  if (p->oracle_max_confidence_ppm > PERPDEX_RATIO_PRECISION)
    return PERPDEX_ERR_INVALID_GUARD_LIMITS;
  if (p->funding_cap_rate > PERPDEX_FUNDING_RATE_PRECISION) return PERPDEX_ERR_INVALID_FUNDING_CAP;
  /* the governance bounds: closing must help (fee < first maintenance), fee <= 10 % */
  if (p->liquidation_fee_ppm >= tiers[0].maintenance_ppm ||
      p->liquidation_fee_ppm > PERPDEX_MAX_LIQUIDATION_FEE_PPM)
    return PERPDEX_ERR_INVALID_LIQUIDATION_FEE;
  if (p->liquidator_share_ppm > PERPDEX_RATIO_PRECISION ||
      p->liquidation_buffer_ppm > PERPDEX_MAX_LIQUIDATION_FEE_PPM)
    return PERPDEX_ERR_INVALID_LIQUIDATION_SPLIT;
  return PD_SUCCESS;
}

static uint64_t ix_create_market(const SolParameters *params) {
  if (params->data_len != sizeof(perpdex_create_market_args))
    return PERPDEX_ERR_INSTRUCTION_DATA_LENGTH;
  const perpdex_create_market_args *args = (const perpdex_create_market_args *)params->data;
  uint64_t err = check_accounts(params, PERPDEX_IX_CREATE_MARKET_NUM_ACCOUNTS,
                                PERPDEX_IX_CREATE_MARKET_WRITABLE_MASK,
                                PERPDEX_IX_CREATE_MARKET_SIGNER_MASK,
                                PERPDEX_ERR_AUTHORITY_NOT_SIGNER);
  if (err) return err;
  SolAccountInfo *ka = params->ka;
  SolAccountInfo *market_account = &ka[PERPDEX_IX_CREATE_MARKET_ACC_MARKET];
  SolAccountInfo *authority = &ka[PERPDEX_IX_CREATE_MARKET_ACC_AUTHORITY];
  SolAccountInfo *oracle = &ka[PERPDEX_IX_CREATE_MARKET_ACC_ORACLE];
  perpdex_Exchange *exchange;
  err = load_exchange(&ka[PERPDEX_IX_CREATE_MARKET_ACC_EXCHANGE], params->program_id, &exchange);
  if (err) return err;
  if (!key_eq(authority->key, exchange->authority)) return PERPDEX_ERR_AUTHORITY_MISMATCH;
  if (!is_system_program(&ka[PERPDEX_IX_CREATE_MARKET_ACC_SYSTEM_PROGRAM]))
    return PERPDEX_ERR_SYSTEM_PROGRAM_MISMATCH;
  const perpdex_MarketParams *p = &args->params;
  uint16_t index = p->index;
  if (index != exchange->num_markets) return PERPDEX_ERR_MARKET_INDEX_MISMATCH;
  if (key_eq(market_account->owner, params->program_id))
    return PERPDEX_ERR_MARKET_ALREADY_INITIALIZED;
  uint8_t index_le[2] = {(uint8_t)(index & 0xff), (uint8_t)(index >> 8)};
  if (!market_pda_ok(market_account, index_le, args->bump, params->program_id))
    return PERPDEX_ERR_MARKET_WRONG_PDA;
  err = validate_market_params(p);
  if (err) return err;
  err = check_oracle_layout(oracle, p->oracle_source, p->oracle_feed_id);
  if (err) return err;
  uint8_t bump = args->bump;
  const SolSignerSeed seeds[3] = {
      {(const uint8_t *)PERPDEX_SEED_MARKET, PERPDEX_SEED_MARKET_LEN}, {index_le, 2}, {&bump, 1}};
  const SolSignerSeeds signer = {seeds, 3};
  PdCreateAccount create = {authority,
                            market_account,
                            &ka[PERPDEX_IX_CREATE_MARKET_ACC_SYSTEM_PROGRAM],
                            pd_rent_exempt_minimum(PERPDEX_ACCOUNT_MARKET_SIZE),
                            PERPDEX_ACCOUNT_MARKET_SIZE,
                            params->program_id};
  err = pd_system_create_account(&create, &signer, 1);
  if (err) return err;
  perpdex_Market *m = (perpdex_Market *)market_account->data;
  m->discriminator = PERPDEX_ACCOUNT_MARKET_DISCRIMINATOR;
  pd_pubkey_copy((SolPubkey *)m->exchange, ka[PERPDEX_IX_CREATE_MARKET_ACC_EXCHANGE].key);
  pd_pubkey_copy((SolPubkey *)m->oracle, oracle->key);
  __builtin_memcpy(m->oracle_feed_id, p->oracle_feed_id, 32);
  m->index = index;
  m->status = PERPDEX_MARKET_STATUS_ACTIVE;
  m->oracle_source = p->oracle_source;
  m->bump = bump;
  pd_pubkey_copy((SolPubkey *)m->address, market_account->key);
  m->num_margin_tiers = p->num_margin_tiers;
  m->tick_size = p->tick_size;
  m->lot_size = p->lot_size;
  m->maker_fee_ppm = p->maker_fee_ppm;
  m->taker_fee_ppm = p->taker_fee_ppm;
  m->insurance_share_ppm = p->insurance_share_ppm;
  m->oracle_max_confidence_ppm = p->oracle_max_confidence_ppm;
  m->oracle_max_age_slots = p->oracle_max_age_slots;
  m->oracle_max_age_seconds = p->oracle_max_age_seconds;
  m->funding_cap_rate = p->funding_cap_rate;
  __builtin_memcpy(m->margin_tiers, p->margin_tiers, sizeof m->margin_tiers);
  /* governable limits start at what the margin schedule implies (docs/PROTOCOL.md, Governance) */
  uint64_t first_initial = m->margin_tiers[0].initial_ppm;
  uint64_t leverage = PERPDEX_RATIO_PRECISION / first_initial; /* >= 1: initial <= 1e6 */
  m->max_leverage = (uint32_t)(leverage < PERPDEX_MAX_LEVERAGE ? leverage : PERPDEX_MAX_LEVERAGE);
  m->liquidation_fee_ppm = p->liquidation_fee_ppm;
  m->liquidator_share_ppm = p->liquidator_share_ppm;
  m->liquidation_buffer_ppm = p->liquidation_buffer_ppm;
  m->max_position_base = UINT64_MAX;
  m->max_open_interest_base = UINT64_MAX;
  exchange->num_markets = (uint16_t)(index + 1);
  return PD_SUCCESS;
}

/* ------------------------------------------------------------------ positions and funding */
/* The user's slot for market_index, or a fresh one (snapshot at the market's index: a new
 * position owes no funding); NULL when every slot holds another market. */
static perpdex_Position *position_slot(perpdex_User *user, const perpdex_Market *market) {
  perpdex_Position *free_slot = NULL;
  for (uint64_t i = 0; i < PERPDEX_MAX_POSITIONS; i++) {
    perpdex_Position *p = &user->positions[i];
    if (p->in_use && p->market_index == market->index) return p;
    if (!p->in_use && free_slot == NULL) free_slot = p;
  }
  if (free_slot != NULL) {
    pd_memset(free_slot, 0, sizeof *free_slot);
    free_slot->in_use = 1;
    free_slot->market_index = market->index;
    free_slot->funding_snapshot = market->cumulative_funding;
  }
  return free_slot;
}

/* Settle the position's funding to the market index (docs/PROTOCOL.md, Funding): the
 * payment leaves collateral into the market's funding pool; the rounding stays in the
 * position's carry, so the total paid does not depend on where settlements happen. */
static uint64_t settle_funding(perpdex_Exchange *exchange, perpdex_Market *market,
                               perpdex_User *user, perpdex_Position *position) {
  (void)exchange;
  pd_funding_settlement s;
  uint64_t err = pd_funding_settle(position->base, &position->funding_snapshot,
                                   &market->cumulative_funding,
                                   position->funding_carry_numerator, &s);
  if (err) return err;
  int64_t collateral, pool;
  if (!pd_sub_i64(user->collateral_quote, s.payment_quote, &collateral))
    return PERPDEX_ERR_COLLATERAL_OVERFLOW;
  if (!pd_add_i64(market->funding_pool_quote, s.payment_quote, &pool))
    return PERPDEX_ERR_FUNDING_PAYMENT_OVERFLOW;
  user->collateral_quote = collateral;
  market->funding_pool_quote = pool;
  position->funding_snapshot = market->cumulative_funding;
  position->funding_carry_numerator = s.carry_numerator;
  return PD_SUCCESS;
}

/* A position left flat frees its slot: its carry joins the market's surplus, whole units of
 * which move from the funding pool to the insurance fund. */
static uint64_t close_position(perpdex_Exchange *exchange, perpdex_Market *market,
                               perpdex_Position *position) {
  uint64_t swept, rest, insurance;
  int64_t pool;
  /* both < 1e18, so the sum < 2^64 */
  pd_sweep_surplus(market->funding_surplus_numerator + position->funding_carry_numerator, &swept,
                   &rest);
  if (!pd_sub_i64(market->funding_pool_quote, (int64_t)swept, &pool))
    return PERPDEX_ERR_FUNDING_PAYMENT_OVERFLOW;
  if (!pd_add_u64(exchange->insurance_fund_quote, swept, &insurance))
    return PERPDEX_ERR_FEE_OVERFLOW;
  market->funding_pool_quote = pool;
  market->funding_surplus_numerator = rest;
  exchange->insurance_fund_quote = insurance;
  pd_memset(position, 0, sizeof *position);
  return PD_SUCCESS;
}

static uint64_t long_base(int64_t base) { return base > 0 ? (uint64_t)base : 0; }

/* A position change: base and the signed quote flow (negative when paying). */
typedef struct {
  int64_t base_delta;
  int64_t quote_delta;
} PositionMove;

/* One side of a fill: position, realised PnL into collateral, open interest; a position left
 * flat is closed (its funding carry swept). */
static uint64_t fill_side(perpdex_Exchange *exchange, perpdex_Market *market, perpdex_User *user,
                          perpdex_Position *position, const PositionMove *move) {
  pd_position_state state = {position->base, position->entry_quote, position->realized_pnl_quote};
  int64_t realized, collateral;
  uint64_t err = pd_apply_fill(&state, move->base_delta, move->quote_delta, &realized);
  if (err) return err;
  if (!pd_add_i64(user->collateral_quote, realized, &collateral))
    return PERPDEX_ERR_COLLATERAL_OVERFLOW;
  uint64_t open_interest = market->open_interest_base - long_base(position->base);
  if (!pd_add_u64(open_interest, long_base(state.base), &open_interest))
    return PERPDEX_ERR_OPEN_INTEREST_OVERFLOW;
  market->open_interest_base = open_interest;
  user->collateral_quote = collateral;
  position->base = state.base;
  position->entry_quote = state.entry_quote;
  position->realized_pnl_quote = state.realized_pnl_quote;
  if (state.base == 0 && state.entry_quote == 0) return close_position(exchange, market, position);
  return PD_SUCCESS;
}

/* ------------------------------------------------------------------ deposit */
static uint64_t ix_deposit(const SolParameters *params) {
  if (params->data_len != sizeof(perpdex_deposit_args)) return PERPDEX_ERR_INSTRUCTION_DATA_LENGTH;
  const perpdex_deposit_args *args = (const perpdex_deposit_args *)params->data;
  uint64_t err = check_accounts(params, PERPDEX_IX_DEPOSIT_NUM_ACCOUNTS,
                                PERPDEX_IX_DEPOSIT_WRITABLE_MASK, PERPDEX_IX_DEPOSIT_SIGNER_MASK,
                                PERPDEX_ERR_OWNER_NOT_SIGNER);
  if (err) return err;
  SolAccountInfo *ka = params->ka;
  SolAccountInfo *user_account = &ka[PERPDEX_IX_DEPOSIT_ACC_USER];
  SolAccountInfo *owner = &ka[PERPDEX_IX_DEPOSIT_ACC_OWNER];
  SolAccountInfo *vault = &ka[PERPDEX_IX_DEPOSIT_ACC_VAULT];
  perpdex_Exchange *exchange;
  err = load_exchange(&ka[PERPDEX_IX_DEPOSIT_ACC_EXCHANGE], params->program_id, &exchange);
  if (err) return err;
  if (!is_token_program(&ka[PERPDEX_IX_DEPOSIT_ACC_TOKEN_PROGRAM]))
    return PERPDEX_ERR_TOKEN_PROGRAM_MISMATCH;
  if (!is_system_program(&ka[PERPDEX_IX_DEPOSIT_ACC_SYSTEM_PROGRAM]))
    return PERPDEX_ERR_SYSTEM_PROGRAM_MISMATCH;
  if (!key_eq(vault->key, exchange->vault)) return PERPDEX_ERR_VAULT_MISMATCH;
  err = check_source_token(&ka[PERPDEX_IX_DEPOSIT_ACC_OWNER_TOKEN], exchange->collateral_mint,
                           owner->key);
  if (err) return err;
  uint64_t amount = args->amount_quote;
  if (amount == 0) return PERPDEX_ERR_AMOUNT_ZERO;
  uint8_t bump = args->user_bump;
  bool create = !key_eq(user_account->owner, params->program_id);
  perpdex_User *user = NULL;
  if (create) {
    if (!is_system_key(user_account->owner)) return PERPDEX_ERR_USER_WRONG_OWNER;
    if (!user_pda_ok(user_account, owner->key, bump, params->program_id))
      return PERPDEX_ERR_USER_WRONG_PDA;
  } else {
    err = load_user(user_account, params->program_id, &user);
    if (err) return err;
    if (!user_pda_ok(user_account, owner->key, user->bump, params->program_id))
      return PERPDEX_ERR_USER_WRONG_PDA;
    if (!key_eq(owner->key, user->owner)) return PERPDEX_ERR_OWNER_MISMATCH;
  }
  int64_t collateral = create ? 0 : user->collateral_quote;
  uint64_t net;
  if (amount > (uint64_t)INT64_MAX || !pd_add_i64(collateral, (int64_t)amount, &collateral))
    return PERPDEX_ERR_COLLATERAL_OVERFLOW;
  if (!pd_add_u64(exchange->net_deposits_quote, amount, &net)) return PERPDEX_ERR_DEPOSIT_OVERFLOW;
  PdTokenTransferAccounts transfer = {&ka[PERPDEX_IX_DEPOSIT_ACC_OWNER_TOKEN], vault, owner,
                                      &ka[PERPDEX_IX_DEPOSIT_ACC_TOKEN_PROGRAM]};
  err = pd_spl_token_transfer(&transfer, amount, NULL, 0);
  if (err) return err;
  if (create) {
    const SolSignerSeed seeds[3] = {
        {(const uint8_t *)PERPDEX_SEED_USER, PERPDEX_SEED_USER_LEN}, {owner->key->x, 32}, {&bump, 1}};
    const SolSignerSeeds signer = {seeds, 3};
    PdCreateAccount create_args = {owner,
                                   user_account,
                                   &ka[PERPDEX_IX_DEPOSIT_ACC_SYSTEM_PROGRAM],
                                   pd_rent_exempt_minimum(PERPDEX_ACCOUNT_USER_SIZE),
                                   PERPDEX_ACCOUNT_USER_SIZE,
                                   params->program_id};
    err = pd_system_create_account(&create_args, &signer, 1);
    if (err) return err;
    user = (perpdex_User *)user_account->data;
    user->discriminator = PERPDEX_ACCOUNT_USER_DISCRIMINATOR;
    pd_pubkey_copy((SolPubkey *)user->owner, owner->key);
    user->bump = bump;
    pd_pubkey_copy((SolPubkey *)user->address, user_account->key);
  }
  user->collateral_quote = collateral;
  exchange->net_deposits_quote = net;
  perpdex_DepositedEvent event = {PERPDEX_EVENT_DEPOSITED_DISCRIMINATOR, {0}, amount, collateral};
  pd_pubkey_copy((SolPubkey *)event.owner, owner->key);
  emit(&event, sizeof event);
  return PD_SUCCESS;
}

/* ------------------------------------------------------------------ deposit_insurance */
/* A top-up of the insurance fund by any wallet (it only adds money, so no signer but the
 * funder's). The tokens go into the vault, not the insurance_vault token account: the fund is
 * a claim on the vault (fee shares, liquidation fees and bad-debt payments move between it and
 * collateral inside the vault), so a payment the top-up makes possible is backed by tokens a
 * wallet can then withdraw from the vault. */
static uint64_t ix_deposit_insurance(const SolParameters *params) {
  if (params->data_len != sizeof(perpdex_deposit_insurance_args))
    return PERPDEX_ERR_INSTRUCTION_DATA_LENGTH;
  const perpdex_deposit_insurance_args *args = (const perpdex_deposit_insurance_args *)params->data;
  uint64_t err = check_accounts(params, PERPDEX_IX_DEPOSIT_INSURANCE_NUM_ACCOUNTS,
                                PERPDEX_IX_DEPOSIT_INSURANCE_WRITABLE_MASK,
                                PERPDEX_IX_DEPOSIT_INSURANCE_SIGNER_MASK,
                                PERPDEX_ERR_OWNER_NOT_SIGNER);
  if (err) return err;
  SolAccountInfo *ka = params->ka;
  SolAccountInfo *funder = &ka[PERPDEX_IX_DEPOSIT_INSURANCE_ACC_FUNDER];
  SolAccountInfo *vault = &ka[PERPDEX_IX_DEPOSIT_INSURANCE_ACC_VAULT];
  perpdex_Exchange *exchange;
  err = load_exchange(&ka[PERPDEX_IX_DEPOSIT_INSURANCE_ACC_EXCHANGE], params->program_id,
                      &exchange);
  if (err) return err;
  if (!is_token_program(&ka[PERPDEX_IX_DEPOSIT_INSURANCE_ACC_TOKEN_PROGRAM]))
    return PERPDEX_ERR_TOKEN_PROGRAM_MISMATCH;
  if (!key_eq(vault->key, exchange->vault)) return PERPDEX_ERR_VAULT_MISMATCH;
  err = check_source_token(&ka[PERPDEX_IX_DEPOSIT_INSURANCE_ACC_FUNDER_TOKEN],
                           exchange->collateral_mint, funder->key);
  if (err) return err;
  uint64_t amount = args->amount_quote, fund;
  if (amount == 0) return PERPDEX_ERR_AMOUNT_ZERO;
  /* the engine's fund is an i64: keep the claim within it */
  if (!pd_add_u64(exchange->insurance_fund_quote, amount, &fund) || fund > (uint64_t)INT64_MAX)
    return PERPDEX_ERR_FEE_OVERFLOW;
  PdTokenTransferAccounts transfer = {&ka[PERPDEX_IX_DEPOSIT_INSURANCE_ACC_FUNDER_TOKEN], vault,
                                      funder, &ka[PERPDEX_IX_DEPOSIT_INSURANCE_ACC_TOKEN_PROGRAM]};
  err = pd_spl_token_transfer(&transfer, amount, NULL, 0);
  if (err) return err;
  exchange->insurance_fund_quote = fund;
  perpdex_InsuranceDepositedEvent event = {PERPDEX_EVENT_INSURANCE_DEPOSITED_DISCRIMINATOR, {0},
                                           amount, fund};
  pd_pubkey_copy((SolPubkey *)event.funder, funder->key);
  emit(&event, sizeof event);
  return PD_SUCCESS;
}

/* ------------------------------------------------------------------ withdraw */
#define WITHDRAW_FIXED_ACCOUNTS PERPDEX_IX_WITHDRAW_NUM_ACCOUNTS

typedef struct {
  perpdex_Exchange *exchange;
  perpdex_User *user;
  SolAccountInfo *destination; /* token account the collateral goes to */
  SolAccountInfo *vault;
  SolAccountInfo *vault_authority;
  SolAccountInfo *token_program;
  uint64_t fixed_accounts; /* the (Market, oracle) pairs follow these */
  uint64_t amount;
  const SolClock *clock;
} PdWithdrawal;

/* What withdraw and process_withdrawal share: funding settled in every held market, then
 * amount <= collateral and <= free collateral at the on-chain oracle prices, then the transfer
 * out of the vault signed by the vault authority PDA. */
static uint64_t withdraw_checked(const SolParameters *params, const PdWithdrawal *w) {
  SolAccountInfo *ka = params->ka;
  perpdex_Exchange *exchange = w->exchange;
  perpdex_User *user = w->user;
  if (!is_token_program(w->token_program)) return PERPDEX_ERR_TOKEN_PROGRAM_MISMATCH;
  if (!key_eq(w->vault->key, exchange->vault)) return PERPDEX_ERR_VAULT_MISMATCH;
  if (!vault_authority_pda_ok(w->vault_authority, exchange->vault_authority_bump,
                              params->program_id))
    return PERPDEX_ERR_VAULT_AUTHORITY_WRONG_PDA;
  uint64_t amount = w->amount;
  if (amount == 0) return PERPDEX_ERR_AMOUNT_ZERO;
  uint64_t err;
  pd_margin_position positions[PERPDEX_MAX_POSITIONS];
  perpdex_MarginTier tiers[PERPDEX_MAX_POSITIONS][PERPDEX_MAX_MARGIN_TIERS];
  uint64_t num_positions = 0, next_account = w->fixed_accounts;
  for (uint64_t i = 0; i < PERPDEX_MAX_POSITIONS; i++) {
    perpdex_Position *position = &user->positions[i];
    if (!position->in_use) continue;
    if (next_account + 2 > params->ka_num) return PERPDEX_ERR_WITHDRAW_MARKET_MISSING;
    SolAccountInfo *market_account = &ka[next_account];
    SolAccountInfo *oracle = &ka[next_account + 1];
    next_account += 2;
    perpdex_Market *market;
    err = load_market(market_account, params->program_id, &market);
    if (err) return err;
    if (market->index != position->market_index) return PERPDEX_ERR_WITHDRAW_MARKET_MISMATCH;
    if (!market_account->is_writable) return PERPDEX_ERR_ACCOUNT_NOT_WRITABLE;
    err = settle_funding(exchange, market, user, position);
    if (err) return err;
    uint64_t price;
    err = read_oracle_price(market, oracle, w->clock, &price);
    if (err) return err;
    __builtin_memcpy(tiers[num_positions], market->margin_tiers, sizeof tiers[0]);
    positions[num_positions] = (pd_margin_position){position->base, position->entry_quote, price,
                                                    tiers[num_positions],
                                                    market->num_margin_tiers};
    num_positions++;
  }
  if (user->collateral_quote < 0 || amount > (uint64_t)user->collateral_quote)
    return PERPDEX_ERR_INSUFFICIENT_COLLATERAL;
  pd_margin_result margin;
  err = pd_margin_summary(user->collateral_quote, positions, num_positions, &margin);
  if (err) return err;
  if (amount > margin.free_collateral_quote) return PERPDEX_ERR_INSUFFICIENT_FREE_COLLATERAL;
  uint64_t net;
  if (!pd_sub_u64(exchange->net_deposits_quote, amount, &net)) return PERPDEX_ERR_DEPOSIT_OVERFLOW;
  user->collateral_quote -= (int64_t)amount;
  exchange->net_deposits_quote = net;
  uint8_t vault_bump = exchange->vault_authority_bump;
  const SolSignerSeed seeds[2] = {
      {(const uint8_t *)PERPDEX_SEED_VAULT_AUTHORITY, PERPDEX_SEED_VAULT_AUTHORITY_LEN},
      {&vault_bump, 1}};
  const SolSignerSeeds signer = {seeds, 2};
  PdTokenTransferAccounts transfer = {w->vault, w->destination, w->vault_authority,
                                      w->token_program};
  return pd_spl_token_transfer(&transfer, amount, &signer, 1);
}

static uint64_t ix_withdraw(const SolParameters *params) {
  if (params->data_len != sizeof(perpdex_withdraw_args))
    return PERPDEX_ERR_INSTRUCTION_DATA_LENGTH;
  const perpdex_withdraw_args *args = (const perpdex_withdraw_args *)params->data;
  uint64_t err = check_accounts(params, PERPDEX_IX_WITHDRAW_NUM_ACCOUNTS,
                                PERPDEX_IX_WITHDRAW_WRITABLE_MASK,
                                PERPDEX_IX_WITHDRAW_SIGNER_MASK, PERPDEX_ERR_OWNER_NOT_SIGNER);
  if (err) return err;
  SolAccountInfo *ka = params->ka;
  SolAccountInfo *user_account = &ka[PERPDEX_IX_WITHDRAW_ACC_USER];
  SolAccountInfo *owner = &ka[PERPDEX_IX_WITHDRAW_ACC_OWNER];
  perpdex_Exchange *exchange;
  err = load_exchange(&ka[PERPDEX_IX_WITHDRAW_ACC_EXCHANGE], params->program_id, &exchange);
  if (err) return err;
  perpdex_User *user;
  err = load_user(user_account, params->program_id, &user);
  if (err) return err;
  if (!user_pda_ok(user_account, owner->key, user->bump, params->program_id))
    return PERPDEX_ERR_USER_WRONG_PDA;
  if (!key_eq(owner->key, user->owner)) return PERPDEX_ERR_OWNER_MISMATCH;
  /* any token account the owner names, but one of the collateral mint (the program's error,
   * not the Token program's) */
  err = check_token_account(&ka[PERPDEX_IX_WITHDRAW_ACC_OWNER_TOKEN], exchange->collateral_mint);
  if (err) return err;
  /* Escape hatch only: while the operator settles, the engine is the authority (the chain
   * knows only settled fills, so it could pay out against unsettled losses). */
  SolClock clock;
  err = pd_get_clock(&clock);
  if (err) return err;
  if (clock.slot <= exchange->operator_active_slot ||
      clock.slot - exchange->operator_active_slot <= exchange->escape_hatch_slots)
    return PERPDEX_ERR_OPERATOR_ACTIVE;
  PdWithdrawal w = {exchange,
                    user,
                    &ka[PERPDEX_IX_WITHDRAW_ACC_OWNER_TOKEN],
                    &ka[PERPDEX_IX_WITHDRAW_ACC_VAULT],
                    &ka[PERPDEX_IX_WITHDRAW_ACC_VAULT_AUTHORITY],
                    &ka[PERPDEX_IX_WITHDRAW_ACC_TOKEN_PROGRAM],
                    WITHDRAW_FIXED_ACCOUNTS,
                    args->amount_quote,
                    &clock};
  err = withdraw_checked(params, &w);
  if (err) return err;
  perpdex_WithdrawnEvent event = {PERPDEX_EVENT_WITHDRAWN_DISCRIMINATOR, {0}, args->amount_quote,
                                  user->collateral_quote};
  pd_pubkey_copy((SolPubkey *)event.owner, owner->key);
  emit(&event, sizeof event);
  return PD_SUCCESS;
}

/* ------------------------------------------------------------------ process_withdrawal */
/* The engine's withdrawal (CollateralWithdrawn at journal seq `sequence`), executed by the
 * operator. Exactly once and in journal order: the withdrawals form one chain over the
 * Exchange, like a market's fill batches (previous_sequence == last_withdrawal_sequence), so a
 * retry, a dead process's copy in flight or a replay can never apply twice. The operator
 * cannot redirect funds: the destination must be a token account of User.owner. */
static uint64_t ix_process_withdrawal(const SolParameters *params) {
  if (params->data_len != sizeof(perpdex_process_withdrawal_args))
    return PERPDEX_ERR_INSTRUCTION_DATA_LENGTH;
  const perpdex_process_withdrawal_args *args =
      (const perpdex_process_withdrawal_args *)params->data;
  uint64_t err = check_accounts(params, PERPDEX_IX_PROCESS_WITHDRAWAL_NUM_ACCOUNTS,
                                PERPDEX_IX_PROCESS_WITHDRAWAL_WRITABLE_MASK,
                                PERPDEX_IX_PROCESS_WITHDRAWAL_SIGNER_MASK,
                                PERPDEX_ERR_OPERATOR_NOT_SIGNER);
  if (err) return err;
  SolAccountInfo *ka = params->ka;
  perpdex_Exchange *exchange;
  err = load_exchange(&ka[PERPDEX_IX_PROCESS_WITHDRAWAL_ACC_EXCHANGE], params->program_id,
                      &exchange);
  if (err) return err;
  if (!key_eq(ka[PERPDEX_IX_PROCESS_WITHDRAWAL_ACC_OPERATOR].key, exchange->operator))
    return PERPDEX_ERR_OPERATOR_MISMATCH;
  uint64_t sequence = args->sequence;
  if (sequence <= exchange->last_withdrawal_sequence) return PERPDEX_ERR_SEQUENCE_NOT_INCREASING;
  if (args->previous_sequence != exchange->last_withdrawal_sequence)
    return PERPDEX_ERR_WITHDRAWAL_NOT_CONTIGUOUS;
  perpdex_User *user;
  err = load_user(&ka[PERPDEX_IX_PROCESS_WITHDRAWAL_ACC_USER], params->program_id, &user);
  if (err) return err;
  SolAccountInfo *destination = &ka[PERPDEX_IX_PROCESS_WITHDRAWAL_ACC_OWNER_TOKEN];
  err = check_token_account(destination, exchange->collateral_mint);
  if (err) return err;
  if (!key_eq(destination->data + PD_TOKEN_ACCOUNT_OWNER_OFFSET, user->owner))
    return PERPDEX_ERR_DESTINATION_NOT_OWNER;
  SolClock clock;
  err = pd_get_clock(&clock);
  if (err) return err;
  PdWithdrawal w = {exchange,
                    user,
                    destination,
                    &ka[PERPDEX_IX_PROCESS_WITHDRAWAL_ACC_VAULT],
                    &ka[PERPDEX_IX_PROCESS_WITHDRAWAL_ACC_VAULT_AUTHORITY],
                    &ka[PERPDEX_IX_PROCESS_WITHDRAWAL_ACC_TOKEN_PROGRAM],
                    PERPDEX_IX_PROCESS_WITHDRAWAL_NUM_ACCOUNTS,
                    args->amount_quote,
                    &clock};
  err = withdraw_checked(params, &w);
  if (err) return err;
  exchange->last_withdrawal_sequence = sequence;
  exchange->operator_active_slot = clock.slot;
  perpdex_WithdrawalProcessedEvent event = {PERPDEX_EVENT_WITHDRAWAL_PROCESSED_DISCRIMINATOR,
                                            {0}, sequence, args->amount_quote,
                                            user->collateral_quote};
  pd_pubkey_copy((SolPubkey *)event.owner, (const SolPubkey *)user->owner);
  emit(&event, sizeof event);
  return PD_SUCCESS;
}

/* ------------------------------------------------------------------ settle_fills */
#define SETTLE_FIXED_ACCOUNTS PERPDEX_IX_SETTLE_FILLS_NUM_ACCOUNTS

/* The User at remaining-account `index`, validated. */
static uint64_t fill_user(const SolParameters *params, uint64_t index, perpdex_User **out) {
  if (index >= params->ka_num - SETTLE_FIXED_ACCOUNTS) return PERPDEX_ERR_FILL_USER_INDEX_OUT_OF_RANGE;
  SolAccountInfo *account = &params->ka[SETTLE_FIXED_ACCOUNTS + index];
  if (!account->is_writable) return PERPDEX_ERR_ACCOUNT_NOT_WRITABLE;
  return load_user(account, params->program_id, out);
}

/* Ledger.trade of perp/ledger.py for one fill. */
static uint64_t settle_one(const SolParameters *params, perpdex_Exchange *exchange,
                           perpdex_Market *market, const perpdex_Fill *fill) {
  if (fill->taker_side > PERPDEX_TAKER_SIDE_SELL) return PERPDEX_ERR_FILL_BAD_SIDE;
  if (fill->price_ticks == 0 || fill->num_base_lots == 0) return PERPDEX_ERR_FILL_ZERO_SIZE;
  perpdex_User *maker, *taker;
  uint64_t err = fill_user(params, fill->maker, &maker);
  if (err) return err;
  err = fill_user(params, fill->taker, &taker);
  if (err) return err;
  if (maker == taker) return PERPDEX_ERR_FILL_SELF_TRADE;
  uint64_t price, base, notional;
  if (!pd_mul_u64(fill->price_ticks, market->tick_size, &price)) return PERPDEX_ERR_FILL_VALUE_OVERFLOW;
  if (!pd_mul_u64(fill->num_base_lots, market->lot_size, &base) || base > (uint64_t)INT64_MAX)
    return PERPDEX_ERR_FILL_VALUE_OVERFLOW;
  /* exact: one tick x one lot is a whole number of quote units (checked at creation) */
  if (!pd_mul_div_u64(price, base, PERPDEX_BASE_PRECISION, PD_ROUND_DOWN, &notional) ||
      notional > (uint64_t)INT64_MAX)
    return PERPDEX_ERR_FILL_VALUE_OVERFLOW;
  perpdex_Position *maker_position = position_slot(maker, market);
  perpdex_Position *taker_position = position_slot(taker, market);
  if (maker_position == NULL || taker_position == NULL) return PERPDEX_ERR_POSITION_SLOTS_FULL;
  err = settle_funding(exchange, market, maker, maker_position);
  if (err) return err;
  err = settle_funding(exchange, market, taker, taker_position);
  if (err) return err;
  bool taker_buys = fill->taker_side == PERPDEX_TAKER_SIDE_BUY;
  int64_t signed_base = taker_buys ? (int64_t)base : -(int64_t)base;
  int64_t signed_notional = taker_buys ? (int64_t)notional : -(int64_t)notional;
  const PositionMove taker_move = {signed_base, -signed_notional};
  const PositionMove maker_move = {-signed_base, signed_notional};
  err = fill_side(exchange, market, taker, taker_position, &taker_move);
  if (err) return err;
  err = fill_side(exchange, market, maker, maker_position, &maker_move);
  if (err) return err;
  pd_fill_fees fees;
  err = pd_fill_fees_split(notional, market->maker_fee_ppm, market->taker_fee_ppm,
                           market->insurance_share_ppm, &fees);
  if (err) return err;
  int64_t maker_collateral, taker_collateral;
  uint64_t fee_pool, insurance;
  if (!pd_sub_i64(maker->collateral_quote, fees.maker_fee_quote, &maker_collateral) ||
      !pd_sub_i64(taker->collateral_quote, fees.taker_fee_quote, &taker_collateral))
    return PERPDEX_ERR_COLLATERAL_OVERFLOW;
  if (!pd_add_u64(exchange->fee_pool_quote, fees.venue_quote, &fee_pool) ||
      !pd_add_u64(exchange->insurance_fund_quote, fees.insurance_quote, &insurance))
    return PERPDEX_ERR_FEE_OVERFLOW;
  maker->collateral_quote = maker_collateral;
  taker->collateral_quote = taker_collateral;
  exchange->fee_pool_quote = fee_pool;
  exchange->insurance_fund_quote = insurance;
  return PD_SUCCESS;
}

static uint64_t ix_settle_fills(const SolParameters *params) {
  const uint64_t header = sizeof(perpdex_settle_fills_args);
  if (params->data_len < header) return PERPDEX_ERR_INSTRUCTION_DATA_LENGTH;
  const perpdex_settle_fills_args *args = (const perpdex_settle_fills_args *)params->data;
  uint64_t num_fills = args->fills_len;
  if (num_fills == 0) return PERPDEX_ERR_FILL_BATCH_EMPTY;
  if (num_fills > PERPDEX_MAX_FILLS_PER_BATCH) return PERPDEX_ERR_FILL_BATCH_TOO_LARGE;
  if (params->data_len != header + num_fills * sizeof(perpdex_Fill))
    return PERPDEX_ERR_INSTRUCTION_DATA_LENGTH;
  uint64_t err = check_accounts(params, SETTLE_FIXED_ACCOUNTS,
                                PERPDEX_IX_SETTLE_FILLS_WRITABLE_MASK,
                                PERPDEX_IX_SETTLE_FILLS_SIGNER_MASK,
                                PERPDEX_ERR_OPERATOR_NOT_SIGNER);
  if (err) return err;
  SolAccountInfo *ka = params->ka;
  perpdex_Exchange *exchange;
  err = load_exchange(&ka[PERPDEX_IX_SETTLE_FILLS_ACC_EXCHANGE], params->program_id, &exchange);
  if (err) return err;
  if (!key_eq(ka[PERPDEX_IX_SETTLE_FILLS_ACC_OPERATOR].key, exchange->operator))
    return PERPDEX_ERR_OPERATOR_MISMATCH;
  perpdex_Market *market;
  err = load_market(&ka[PERPDEX_IX_SETTLE_FILLS_ACC_MARKET], params->program_id, &market);
  if (err) return err;
  uint64_t sequence = args->sequence;
  if (sequence <= market->last_settled_sequence) return PERPDEX_ERR_SEQUENCE_NOT_INCREASING;
  /* exactly once across processes: a batch extends the settled chain, so of two batches
   * planned from one progress point (a dead process's transaction still in flight and its
   * successor's) at most one can land */
  if (args->previous_sequence != market->last_settled_sequence)
    return PERPDEX_ERR_BATCH_NOT_CONTIGUOUS;
  if (args->first_sequence <= args->previous_sequence || args->first_sequence > sequence)
    return PERPDEX_ERR_BATCH_SEQUENCE_RANGE;
  SolClock clock;
  err = pd_get_clock(&clock);
  if (err) return err;
  for (uint64_t i = 0; i < num_fills; i++) {
    perpdex_Fill fill;
    __builtin_memcpy(&fill, (const uint8_t *)args->fills + i * sizeof(perpdex_Fill), sizeof fill);
    err = settle_one(params, exchange, market, &fill);
    if (err) return err;
  }
  market->last_settled_sequence = sequence;
  exchange->operator_active_slot = clock.slot;
  perpdex_FillsSettledEvent event = {PERPDEX_EVENT_FILLS_SETTLED_DISCRIMINATOR, market->index,
                                     sequence, (uint32_t)num_fills, args->first_sequence};
  emit(&event, sizeof event);
  return PD_SUCCESS;
}

/* ------------------------------------------------------------------ settle_liquidation */
/* The engine's own liquidations (docs/PROTOCOL.md, Engine liquidations on-chain): the events
 * LiquidationExecuted, PositionDeleveraged and InsuranceFundPaidBadDebt as moves, applied at
 * the engine's prices and fees. The program checks that each move is what the protocol allows
 * (a position reduced by whole lots, the quote rounded as the rules round it, a fee split that
 * adds up and stays under the hard bound, a payment the fund holds and the account needs) and
 * keeps journal order: the batch continues the Exchange's liquidation chain and the settled
 * chain of every Market it moves, the same chain settle_fills continues. */
#define SETTLE_LIQUIDATION_FIXED_ACCOUNTS PERPDEX_IX_SETTLE_LIQUIDATION_NUM_ACCOUNTS

typedef struct {
  const SolParameters *params;
  uint64_t first; /* index in ka of the first User */
  uint64_t count;
  perpdex_Market *markets[PERPDEX_MAX_LIQUIDATION_BATCH_MARKETS];
  uint64_t num_markets;
  uint8_t market_used[PERPDEX_MAX_LIQUIDATION_BATCH_MARKETS];
} LiquidationBatch;

static uint64_t liquidation_user(const LiquidationBatch *batch, uint64_t index,
                                 perpdex_User **out) {
  if (index >= batch->count) return PERPDEX_ERR_LIQUIDATION_MOVE_USER_OUT_OF_RANGE;
  SolAccountInfo *account = &batch->params->ka[batch->first + index];
  if (!account->is_writable) return PERPDEX_ERR_ACCOUNT_NOT_WRITABLE;
  return load_user(account, batch->params->program_id, out);
}

/* The user's slot in `market` whose position base_delta reduces (same rule as the engine's
 * apply_plan: a position, the opposite sign, no larger than it). */
static uint64_t reduced_slot(perpdex_User *user, const perpdex_Market *market, int64_t base_delta,
                             perpdex_Position **out) {
  for (uint64_t i = 0; i < PERPDEX_MAX_POSITIONS; i++) {
    perpdex_Position *p = &user->positions[i];
    if (!p->in_use || p->market_index != market->index) continue;
    if (p->base == 0 || (p->base > 0) == (base_delta > 0) ||
        pd_abs_i64(base_delta) > pd_abs_i64(p->base))
      return PERPDEX_ERR_LIQUIDATION_MOVE_NOT_REDUCING;
    *out = p;
    return PD_SUCCESS;
  }
  return PERPDEX_ERR_LIQUIDATION_MOVE_NOT_REDUCING;
}

/* liquidation/rules.py: a slice's quote (_close_quote) rounds against the account, an ADL
 * fill's (_adl_quote) against the counterparty; a purchase pays the ceiling either way. */
static uint64_t move_quote(int64_t base_delta, uint64_t price, bool adl, int64_t *out) {
  pd_rounding rounding = (base_delta > 0 || adl) ? PD_ROUND_UP : PD_ROUND_DOWN;
  uint64_t quote;
  if (!pd_mul_div_u64(pd_abs_i64(base_delta), price, PERPDEX_BASE_PRECISION, rounding, &quote) ||
      quote > (uint64_t)INT64_MAX)
    return PERPDEX_ERR_LIQUIDATION_VALUE_OVERFLOW;
  *out = base_delta > 0 ? -(int64_t)quote : (int64_t)quote;
  return PD_SUCCESS;
}

static uint64_t settle_payment(perpdex_Exchange *exchange, perpdex_User *account,
                               const perpdex_LiquidationMove *move) {
  if (move->market != 0 || move->counterparty != 0 || move->base_delta != 0 || move->price != 0 ||
      move->fee_quote != 0 || move->liquidator_fee_quote != 0 || move->quote_delta <= 0)
    return PERPDEX_ERR_LIQUIDATION_MOVE_FIELDS_INVALID;
  uint64_t amount = (uint64_t)move->quote_delta;
  if (amount > exchange->insurance_fund_quote) return PERPDEX_ERR_INSURANCE_FUND_INSUFFICIENT;
  for (uint64_t i = 0; i < PERPDEX_MAX_POSITIONS; i++)
    if (account->positions[i].in_use && account->positions[i].base != 0)
      return PERPDEX_ERR_INSURANCE_PAYMENT_ACCOUNT_OPEN;
  int64_t collateral;
  if (!pd_add_i64(account->collateral_quote, move->quote_delta, &collateral))
    return PERPDEX_ERR_COLLATERAL_OVERFLOW;
  if (collateral > 0) return PERPDEX_ERR_INSURANCE_PAYMENT_ABOVE_DEFICIT;
  account->collateral_quote = collateral;
  exchange->insurance_fund_quote -= amount;
  return PD_SUCCESS;
}

static uint64_t settle_move(perpdex_Exchange *exchange, LiquidationBatch *batch,
                            const perpdex_LiquidationMove *move) {
  if (move->kind > PERPDEX_LIQUIDATION_MOVE_PAYMENT) return PERPDEX_ERR_LIQUIDATION_MOVE_BAD_KIND;
  perpdex_User *account;
  uint64_t err = liquidation_user(batch, move->account, &account);
  if (err) return err;
  if (move->kind == PERPDEX_LIQUIDATION_MOVE_PAYMENT) return settle_payment(exchange, account, move);
  if (move->market >= batch->num_markets) return PERPDEX_ERR_LIQUIDATION_MOVE_MARKET_OUT_OF_RANGE;
  perpdex_Market *market = batch->markets[move->market];
  perpdex_User *counterparty;
  err = liquidation_user(batch, move->counterparty, &counterparty);
  if (err) return err;
  if (counterparty == account) return PERPDEX_ERR_LIQUIDATION_MOVE_SELF;
  bool adl = move->kind == PERPDEX_LIQUIDATION_MOVE_ADL;
  if (adl ? (move->fee_quote != 0 || move->liquidator_fee_quote != 0) : move->price == 0)
    return PERPDEX_ERR_LIQUIDATION_MOVE_FIELDS_INVALID;
  int64_t base_delta = move->base_delta;
  if (base_delta == 0 || pd_abs_i64(base_delta) % market->lot_size != 0)
    return PERPDEX_ERR_LIQUIDATION_MOVE_NOT_REDUCING;
  perpdex_Position *account_position, *counterparty_position;
  err = reduced_slot(account, market, base_delta, &account_position);
  if (err) return err;
  if (adl) {
    err = reduced_slot(counterparty, market, -base_delta, &counterparty_position);
    if (err) return err;
  } else {
    counterparty_position = position_slot(counterparty, market);
    if (counterparty_position == NULL) return PERPDEX_ERR_POSITION_SLOTS_FULL;
  }
  int64_t quote;
  err = move_quote(base_delta, move->price, adl, &quote);
  if (err) return err;
  if (quote != move->quote_delta) return PERPDEX_ERR_LIQUIDATION_QUOTE_MISMATCH;
  if (!adl) {
    uint64_t notional, max_fee;
    if (!pd_mul_div_u64(pd_abs_i64(base_delta), move->price, PERPDEX_BASE_PRECISION, PD_ROUND_UP,
                        &notional) ||
        !pd_mul_div_u64(notional, PERPDEX_MAX_LIQUIDATION_FEE_PPM, PERPDEX_RATIO_PRECISION,
                        PD_ROUND_UP, &max_fee))
      return PERPDEX_ERR_LIQUIDATION_VALUE_OVERFLOW;
    if (move->liquidator_fee_quote > move->fee_quote || move->fee_quote > max_fee)
      return PERPDEX_ERR_LIQUIDATION_FEE_INVALID;
  }
  /* both sides settled to the market's index first (the carry rule makes the point free) */
  err = settle_funding(exchange, market, account, account_position);
  if (err) return err;
  err = settle_funding(exchange, market, counterparty, counterparty_position);
  if (err) return err;
  const PositionMove account_move = {base_delta, quote};
  const PositionMove counterparty_move = {-base_delta, -quote};
  err = fill_side(exchange, market, account, account_position, &account_move);
  if (err) return err;
  err = fill_side(exchange, market, counterparty, counterparty_position, &counterparty_move);
  if (err) return err;
  if (!adl) {
    /* fee <= max_fee <= 1e5 / 1e6 of a notional that fits i64 */
    int64_t account_collateral, counterparty_collateral;
    uint64_t insurance;
    if (!pd_sub_i64(account->collateral_quote, (int64_t)move->fee_quote, &account_collateral) ||
        !pd_add_i64(counterparty->collateral_quote, (int64_t)move->liquidator_fee_quote,
                    &counterparty_collateral))
      return PERPDEX_ERR_COLLATERAL_OVERFLOW;
    if (!pd_add_u64(exchange->insurance_fund_quote,
                    move->fee_quote - move->liquidator_fee_quote, &insurance))
      return PERPDEX_ERR_FEE_OVERFLOW;
    account->collateral_quote = account_collateral;
    counterparty->collateral_quote = counterparty_collateral;
    exchange->insurance_fund_quote = insurance;
  }
  batch->market_used[move->market] = 1;
  return PD_SUCCESS;
}

static uint64_t ix_settle_liquidation(const SolParameters *params) {
  const uint64_t header = sizeof(perpdex_settle_liquidation_args);
  if (params->data_len < header) return PERPDEX_ERR_INSTRUCTION_DATA_LENGTH;
  const perpdex_settle_liquidation_args *args =
      (const perpdex_settle_liquidation_args *)params->data;
  uint64_t num_moves = args->moves_len;
  if (num_moves == 0) return PERPDEX_ERR_LIQUIDATION_BATCH_EMPTY;
  if (num_moves > PERPDEX_MAX_LIQUIDATION_MOVES) return PERPDEX_ERR_LIQUIDATION_BATCH_TOO_LARGE;
  if (params->data_len != header + num_moves * sizeof(perpdex_LiquidationMove))
    return PERPDEX_ERR_INSTRUCTION_DATA_LENGTH;
  uint64_t err = check_accounts(params, SETTLE_LIQUIDATION_FIXED_ACCOUNTS,
                                PERPDEX_IX_SETTLE_LIQUIDATION_WRITABLE_MASK,
                                PERPDEX_IX_SETTLE_LIQUIDATION_SIGNER_MASK,
                                PERPDEX_ERR_OPERATOR_NOT_SIGNER);
  if (err) return err;
  SolAccountInfo *ka = params->ka;
  perpdex_Exchange *exchange;
  err = load_exchange(&ka[PERPDEX_IX_SETTLE_LIQUIDATION_ACC_EXCHANGE], params->program_id,
                      &exchange);
  if (err) return err;
  if (!key_eq(ka[PERPDEX_IX_SETTLE_LIQUIDATION_ACC_OPERATOR].key, exchange->operator))
    return PERPDEX_ERR_OPERATOR_MISMATCH;
  uint64_t previous = args->previous_liquidation_sequence, first = args->first_sequence,
           sequence = args->sequence;
  if (sequence <= exchange->last_liquidation_sequence) return PERPDEX_ERR_SEQUENCE_NOT_INCREASING;
  if (previous != exchange->last_liquidation_sequence)
    return PERPDEX_ERR_LIQUIDATION_CHAIN_NOT_CONTIGUOUS;
  if (first <= previous || first > sequence) return PERPDEX_ERR_LIQUIDATION_SEQUENCE_RANGE;
  uint64_t num_markets = args->num_markets;
  uint64_t previous_sequences[PERPDEX_MAX_LIQUIDATION_BATCH_MARKETS];
  __builtin_memcpy(previous_sequences, args->previous_sequences, sizeof previous_sequences);
  if (num_markets > PERPDEX_MAX_LIQUIDATION_BATCH_MARKETS ||
      params->ka_num - SETTLE_LIQUIDATION_FIXED_ACCOUNTS < num_markets)
    return PERPDEX_ERR_LIQUIDATION_BATCH_MARKETS_INVALID;
  for (uint64_t i = num_markets; i < PERPDEX_MAX_LIQUIDATION_BATCH_MARKETS; i++)
    if (previous_sequences[i] != 0) return PERPDEX_ERR_LIQUIDATION_BATCH_MARKETS_INVALID;
  LiquidationBatch batch;
  pd_memset(&batch, 0, sizeof batch);
  perpdex_Market **markets = batch.markets;
  for (uint64_t i = 0; i < num_markets; i++) {
    SolAccountInfo *market_account = &ka[SETTLE_LIQUIDATION_FIXED_ACCOUNTS + i];
    err = load_market(market_account, params->program_id, &markets[i]);
    if (err) return err;
    if (!market_account->is_writable) return PERPDEX_ERR_ACCOUNT_NOT_WRITABLE;
    if (i > 0 && markets[i]->index <= markets[i - 1]->index)
      return PERPDEX_ERR_LIQUIDATION_BATCH_MARKETS_INVALID;
    if (sequence <= markets[i]->last_settled_sequence) return PERPDEX_ERR_SEQUENCE_NOT_INCREASING;
    if (previous_sequences[i] != markets[i]->last_settled_sequence)
      return PERPDEX_ERR_LIQUIDATION_MARKET_NOT_CONTIGUOUS;
    if (first <= previous_sequences[i]) return PERPDEX_ERR_LIQUIDATION_SEQUENCE_RANGE;
  }
  SolClock clock;
  err = pd_get_clock(&clock);
  if (err) return err;
  batch.params = params;
  batch.first = SETTLE_LIQUIDATION_FIXED_ACCOUNTS + num_markets;
  batch.count = params->ka_num - batch.first;
  batch.num_markets = num_markets;
  for (uint64_t i = 0; i < num_moves; i++) {
    perpdex_LiquidationMove move;
    __builtin_memcpy(&move, (const uint8_t *)args->moves + i * sizeof move, sizeof move);
    err = settle_move(exchange, &batch, &move);
    if (err) return err;
  }
  for (uint64_t i = 0; i < num_markets; i++) {
    if (!batch.market_used[i]) return PERPDEX_ERR_LIQUIDATION_MARKET_UNUSED;
    markets[i]->last_settled_sequence = sequence;
  }
  exchange->last_liquidation_sequence = sequence;
  exchange->operator_active_slot = clock.slot;
  perpdex_LiquidationsSettledEvent event = {PERPDEX_EVENT_LIQUIDATIONS_SETTLED_DISCRIMINATOR,
                                            sequence, first, (uint32_t)num_moves,
                                            (uint8_t)num_markets};
  emit(&event, sizeof event);
  return PD_SUCCESS;
}

/* ------------------------------------------------------------------ update_funding */
static uint64_t ix_update_funding(const SolParameters *params) {
  if (params->data_len != sizeof(perpdex_update_funding_args))
    return PERPDEX_ERR_INSTRUCTION_DATA_LENGTH;
  const perpdex_update_funding_args *args = (const perpdex_update_funding_args *)params->data;
  uint64_t err = check_accounts(params, PERPDEX_IX_UPDATE_FUNDING_NUM_ACCOUNTS,
                                PERPDEX_IX_UPDATE_FUNDING_WRITABLE_MASK,
                                PERPDEX_IX_UPDATE_FUNDING_SIGNER_MASK,
                                PERPDEX_ERR_OPERATOR_NOT_SIGNER);
  if (err) return err;
  SolAccountInfo *ka = params->ka;
  perpdex_Exchange *exchange;
  err = load_exchange(&ka[PERPDEX_IX_UPDATE_FUNDING_ACC_EXCHANGE], params->program_id, &exchange);
  if (err) return err;
  if (!key_eq(ka[PERPDEX_IX_UPDATE_FUNDING_ACC_OPERATOR].key, exchange->operator))
    return PERPDEX_ERR_OPERATOR_MISMATCH;
  perpdex_Market *market;
  err = load_market(&ka[PERPDEX_IX_UPDATE_FUNDING_ACC_MARKET], params->program_id, &market);
  if (err) return err;
  if (args->sequence <= market->last_funding_sequence) return PERPDEX_ERR_SEQUENCE_NOT_INCREASING;
  if (pd_abs_i64(args->rate) > market->funding_cap_rate) return PERPDEX_ERR_FUNDING_RATE_ABOVE_CAP;
  err = pd_funding_advance(&market->cumulative_funding, args->rate, args->index_price);
  if (err) return err;
  market->last_funding_sequence = args->sequence;
  perpdex_FundingUpdatedEvent event = {PERPDEX_EVENT_FUNDING_UPDATED_DISCRIMINATOR, market->index,
                                       args->sequence, args->rate, 0};
  pd_store_i128(&event.cumulative_funding, market->cumulative_funding);
  emit(&event, sizeof event);
  return PD_SUCCESS;
}

/* ------------------------------------------------------------------ set_market_status */
static uint64_t ix_set_market_status(const SolParameters *params) {
  if (params->data_len != sizeof(perpdex_set_market_status_args))
    return PERPDEX_ERR_INSTRUCTION_DATA_LENGTH;
  const perpdex_set_market_status_args *args =
      (const perpdex_set_market_status_args *)params->data;
  uint64_t err = check_accounts(params, PERPDEX_IX_SET_MARKET_STATUS_NUM_ACCOUNTS,
                                PERPDEX_IX_SET_MARKET_STATUS_WRITABLE_MASK,
                                PERPDEX_IX_SET_MARKET_STATUS_SIGNER_MASK,
                                PERPDEX_ERR_AUTHORITY_NOT_SIGNER);
  if (err) return err;
  SolAccountInfo *ka = params->ka;
  perpdex_Exchange *exchange;
  err = load_exchange(&ka[PERPDEX_IX_SET_MARKET_STATUS_ACC_EXCHANGE], params->program_id,
                      &exchange);
  if (err) return err;
  const SolPubkey *signer = ka[PERPDEX_IX_SET_MARKET_STATUS_ACC_SIGNER].key;
  if (!key_eq(signer, exchange->authority) && !key_eq(signer, exchange->operator))
    return PERPDEX_ERR_STATUS_SIGNER_MISMATCH;
  perpdex_Market *market;
  err = load_market(&ka[PERPDEX_IX_SET_MARKET_STATUS_ACC_MARKET], params->program_id, &market);
  if (err) return err;
  if (args->status > PERPDEX_MARKET_STATUS_HALTED) return PERPDEX_ERR_INVALID_STATUS;
  market->status = args->status;
  perpdex_MarketStatusChangedEvent event = {PERPDEX_EVENT_MARKET_STATUS_CHANGED_DISCRIMINATOR,
                                            market->index, args->status};
  emit(&event, sizeof event);
  return PD_SUCCESS;
}

/* ------------------------------------------------------------------ liquidate */
#define LIQUIDATE_FIXED_ACCOUNTS PERPDEX_IX_LIQUIDATE_NUM_ACCOUNTS

typedef struct {
  perpdex_Market *market[PERPDEX_MAX_LIQUIDATION_MARKETS];
  uint64_t price[PERPDEX_MAX_LIQUIDATION_MARKETS];
  uint64_t count;
} LiquidationMarkets;

/* The pair of the slot's market, or LiquidationMarketMissing. */
static uint64_t liquidation_market(const LiquidationMarkets *markets,
                                   const perpdex_Position *position, uint64_t *out) {
  for (uint64_t j = 0; j < markets->count; j++) {
    if (markets->market[j]->index == position->market_index) {
      *out = j;
      return PD_SUCCESS;
    }
  }
  return PERPDEX_ERR_LIQUIDATION_MARKET_MISSING;
}

/* Settle funding of every used slot of `user` (each slot's market must be in the pairs). */
static uint64_t liquidation_settle_funding(perpdex_Exchange *exchange,
                                           const LiquidationMarkets *markets, perpdex_User *user) {
  for (uint64_t i = 0; i < PERPDEX_MAX_POSITIONS; i++) {
    perpdex_Position *position = &user->positions[i];
    if (!position->in_use) continue;
    uint64_t j;
    uint64_t err = liquidation_market(markets, position, &j);
    if (err) return err;
    err = settle_funding(exchange, markets->market[j], user, position);
    if (err) return err;
  }
  return PD_SUCCESS;
}

typedef struct {
  pd_liq_position positions[PERPDEX_MAX_POSITIONS];
  perpdex_MarginTier tiers[PERPDEX_MAX_POSITIONS][PERPDEX_MAX_MARGIN_TIERS];
  perpdex_Position *slot[PERPDEX_MAX_POSITIONS];
  uint64_t pair[PERPDEX_MAX_POSITIONS];
  pd_margin_position margin[PERPDEX_MAX_POSITIONS];
  pd_liq_plan plan;
} LiquidationScratch;

static uint64_t ix_liquidate(const SolParameters *params) {
  if (params->data_len != sizeof(perpdex_liquidate_args))
    return PERPDEX_ERR_INSTRUCTION_DATA_LENGTH;
  uint64_t err = check_accounts(params, LIQUIDATE_FIXED_ACCOUNTS,
                                PERPDEX_IX_LIQUIDATE_WRITABLE_MASK,
                                PERPDEX_IX_LIQUIDATE_SIGNER_MASK,
                                PERPDEX_ERR_LIQUIDATOR_NOT_SIGNER);
  if (err) return err;
  SolAccountInfo *ka = params->ka;
  perpdex_Exchange *exchange;
  err = load_exchange(&ka[PERPDEX_IX_LIQUIDATE_ACC_EXCHANGE], params->program_id, &exchange);
  if (err) return err;
  SolAccountInfo *user_account = &ka[PERPDEX_IX_LIQUIDATE_ACC_USER];
  SolAccountInfo *liquidator_account = &ka[PERPDEX_IX_LIQUIDATE_ACC_LIQUIDATOR_USER];
  perpdex_User *user, *liquidator;
  err = load_user(user_account, params->program_id, &user);
  if (err) return err;
  err = load_user(liquidator_account, params->program_id, &liquidator);
  if (err) return err;
  if (key_eq(user_account->key, liquidator_account->key)) return PERPDEX_ERR_SELF_LIQUIDATION;
  if (!key_eq(ka[PERPDEX_IX_LIQUIDATE_ACC_LIQUIDATOR].key, liquidator->owner))
    return PERPDEX_ERR_LIQUIDATOR_MISMATCH;
  uint64_t extra = params->ka_num - LIQUIDATE_FIXED_ACCOUNTS;
  if (extra % 2 != 0 || extra / 2 > PERPDEX_MAX_LIQUIDATION_MARKETS)
    return PERPDEX_ERR_LIQUIDATION_MARKETS_INVALID;
  SolClock clock;
  err = pd_get_clock(&clock);
  if (err) return err;
  LiquidationMarkets markets;
  markets.count = extra / 2;
  for (uint64_t j = 0; j < markets.count; j++) {
    SolAccountInfo *market_account = &ka[LIQUIDATE_FIXED_ACCOUNTS + 2 * j];
    err = load_market(market_account, params->program_id, &markets.market[j]);
    if (err) return err;
    if (!market_account->is_writable) return PERPDEX_ERR_ACCOUNT_NOT_WRITABLE;
    if (j > 0 && markets.market[j]->index <= markets.market[j - 1]->index)
      return PERPDEX_ERR_LIQUIDATION_MARKETS_INVALID;
    /* never at a stale or unverified price: the same guards as withdraw */
    err = read_oracle_price(markets.market[j], &ka[LIQUIDATE_FIXED_ACCOUNTS + 2 * j + 1], &clock,
                            &markets.price[j]);
    if (err) return err;
  }
  err = liquidation_settle_funding(exchange, &markets, user);
  if (err) return err;
  err = liquidation_settle_funding(exchange, &markets, liquidator);
  if (err) return err;
  /* the plan of liquidation/rules.py over the user's held positions */
  LiquidationScratch *s = (LiquidationScratch *)pd_alloc(sizeof(LiquidationScratch));
  if (s == NULL) return PERPDEX_ERR_NOT_ENOUGH_ACCOUNTS;
  uint64_t n = 0;
  for (uint64_t i = 0; i < PERPDEX_MAX_POSITIONS; i++) {
    perpdex_Position *position = &user->positions[i];
    if (!position->in_use || position->base == 0) continue;
    uint64_t j;
    err = liquidation_market(&markets, position, &j);
    if (err) return err;
    perpdex_Market *market = markets.market[j];
    __builtin_memcpy(s->tiers[n], market->margin_tiers, sizeof s->tiers[0]);
    s->positions[n] = (pd_liq_position){position->base,
                                        position->entry_quote,
                                        markets.price[j],
                                        market->lot_size,
                                        market->liquidation_fee_ppm,
                                        market->liquidator_share_ppm,
                                        market->liquidation_buffer_ppm,
                                        s->tiers[n],
                                        market->num_margin_tiers,
                                        market->index};
    s->slot[n] = position;
    s->pair[n] = j;
    n++;
  }
  pd_liq_input input = {user->collateral_quote, exchange->insurance_fund_quote, n};
  err = pd_liquidation_plan(&input, s->positions, &s->plan);
  if (err) return err;
  perpdex_PositionLiquidatedEvent slice_event;
  slice_event.discriminator = PERPDEX_EVENT_POSITION_LIQUIDATED_DISCRIMINATOR;
  pd_pubkey_copy((SolPubkey *)slice_event.owner, (const SolPubkey *)user->owner);
  pd_pubkey_copy((SolPubkey *)slice_event.liquidator, (const SolPubkey *)liquidator->owner);
  for (uint64_t t = 0; t < s->plan.num_transfers; t++) {
    const pd_liq_transfer *transfer = &s->plan.transfers[t];
    uint64_t k = transfer->position;
    perpdex_Market *market = markets.market[s->pair[k]];
    perpdex_Position *liquidator_position = position_slot(liquidator, market);
    if (liquidator_position == NULL) return PERPDEX_ERR_POSITION_SLOTS_FULL;
    /* rules.apply_plan: both fills, then the fee and its split */
    const PositionMove user_move = {transfer->base_delta, transfer->quote_delta};
    const PositionMove liquidator_move = {-transfer->base_delta, -transfer->quote_delta};
    err = fill_side(exchange, market, user, s->slot[k], &user_move);
    if (err) return err;
    err = fill_side(exchange, market, liquidator, liquidator_position, &liquidator_move);
    if (err) return err;
    int64_t user_collateral, liquidator_collateral;
    uint64_t insurance;
    if (!pd_sub_i64(user->collateral_quote, (int64_t)transfer->fee_quote, &user_collateral) ||
        !pd_add_i64(liquidator->collateral_quote, (int64_t)transfer->liquidator_fee_quote,
                    &liquidator_collateral))
      return PERPDEX_ERR_COLLATERAL_OVERFLOW;
    if (!pd_add_u64(exchange->insurance_fund_quote, transfer->insurance_fee_quote, &insurance))
      return PERPDEX_ERR_FEE_OVERFLOW;
    user->collateral_quote = user_collateral;
    liquidator->collateral_quote = liquidator_collateral;
    exchange->insurance_fund_quote = insurance;
    slice_event.market_index = market->index;
    slice_event.base_delta = transfer->base_delta;
    slice_event.quote_delta = transfer->quote_delta;
    slice_event.price = s->positions[k].price;
    slice_event.fee_quote = transfer->fee_quote;
    slice_event.liquidator_fee_quote = transfer->liquidator_fee_quote;
    slice_event.insurance_fee_quote = transfer->insurance_fee_quote;
    pd_store_i128(&slice_event.cumulative_funding, market->cumulative_funding);
    emit(&slice_event, sizeof slice_event);
  }
  uint64_t payment = s->plan.insurance_payment_quote; /* <= the fund (before the fees) */
  exchange->insurance_fund_quote -= payment;
  user->collateral_quote += (int64_t)payment;
  /* the liquidator takes the risk only while it stays above initial margin */
  uint64_t m = 0;
  for (uint64_t i = 0; i < PERPDEX_MAX_POSITIONS; i++) {
    perpdex_Position *position = &liquidator->positions[i];
    if (!position->in_use || position->base == 0) continue;
    uint64_t j;
    err = liquidation_market(&markets, position, &j);
    if (err) return err;
    __builtin_memcpy(s->tiers[m], markets.market[j]->margin_tiers, sizeof s->tiers[0]);
    s->margin[m] = (pd_margin_position){position->base, position->entry_quote, markets.price[j],
                                        s->tiers[m], markets.market[j]->num_margin_tiers};
    m++;
  }
  pd_margin_result margin;
  err = pd_margin_summary(liquidator->collateral_quote, s->margin, m, &margin);
  if (err) return err;
  if (margin.equity_quote < 0 || (uint64_t)margin.equity_quote < margin.initial_quote)
    return PERPDEX_ERR_LIQUIDATOR_BELOW_INITIAL_MARGIN;
  perpdex_AccountLiquidatedEvent done = {PERPDEX_EVENT_ACCOUNT_LIQUIDATED_DISCRIMINATOR,
                                         {0},
                                         {0},
                                         s->plan.equity_before_quote,
                                         s->plan.maintenance_before_quote,
                                         payment,
                                         user->collateral_quote,
                                         (uint8_t)s->plan.num_transfers};
  pd_pubkey_copy((SolPubkey *)done.owner, (const SolPubkey *)user->owner);
  pd_pubkey_copy((SolPubkey *)done.liquidator, (const SolPubkey *)liquidator->owner);
  emit(&done, sizeof done);
  return PD_SUCCESS;
}

/* ------------------------------------------------------------------ entrypoint */
uint64_t entrypoint(const uint8_t *input) {
  uint64_t num_accounts = *(const uint64_t *)input;
  /* account infos on the heap: 56 bytes each would not fit a 4 KiB stack frame */
  SolAccountInfo *ka = (SolAccountInfo *)pd_alloc(num_accounts * sizeof(SolAccountInfo));
  if (ka == NULL && num_accounts != 0) return PERPDEX_ERR_NOT_ENOUGH_ACCOUNTS;
  SolParameters params;
  params.ka = ka;
  if (!pd_deserialize(input, &params, num_accounts)) return PD_ERROR_INVALID_ARGUMENT;
  /* the program id follows the instruction data: unaligned; an aligned copy for key_eq */
  uint64_t program_id_words[4];
  pd_memcpy(program_id_words, params.program_id, sizeof program_id_words);
  params.program_id = (const SolPubkey *)program_id_words;
  if (params.data_len < 8) return PERPDEX_ERR_UNKNOWN_INSTRUCTION;
  switch (pd_load_u64(params.data)) {
    case PERPDEX_IX_INITIALIZE_DISCRIMINATOR:
      return ix_initialize(&params);
    case PERPDEX_IX_CREATE_MARKET_DISCRIMINATOR:
      return ix_create_market(&params);
    case PERPDEX_IX_DEPOSIT_DISCRIMINATOR:
      return ix_deposit(&params);
    case PERPDEX_IX_WITHDRAW_DISCRIMINATOR:
      return ix_withdraw(&params);
    case PERPDEX_IX_SETTLE_FILLS_DISCRIMINATOR:
      return ix_settle_fills(&params);
    case PERPDEX_IX_UPDATE_FUNDING_DISCRIMINATOR:
      return ix_update_funding(&params);
    case PERPDEX_IX_SET_MARKET_STATUS_DISCRIMINATOR:
      return ix_set_market_status(&params);
    case PERPDEX_IX_INITIALIZE_GOVERNANCE_DISCRIMINATOR:
      return ix_initialize_governance(&params);
    case PERPDEX_IX_PROPOSE_PARAM_CHANGE_DISCRIMINATOR:
      return ix_propose_param_change(&params);
    case PERPDEX_IX_APPROVE_DISCRIMINATOR:
      return ix_approve(&params);
    case PERPDEX_IX_EXECUTE_DISCRIMINATOR:
      return ix_execute(&params);
    case PERPDEX_IX_CANCEL_DISCRIMINATOR:
      return ix_cancel(&params);
    case PERPDEX_IX_GUARDIAN_SET_STATUS_DISCRIMINATOR:
      return ix_guardian_set_status(&params);
    case PERPDEX_IX_LIQUIDATE_DISCRIMINATOR:
      return ix_liquidate(&params);
    case PERPDEX_IX_PROCESS_WITHDRAWAL_DISCRIMINATOR:
      return ix_process_withdrawal(&params);
    case PERPDEX_IX_SETTLE_LIQUIDATION_DISCRIMINATOR:
      return ix_settle_liquidation(&params);
    case PERPDEX_IX_DEPOSIT_INSURANCE_DISCRIMINATOR:
      return ix_deposit_insurance(&params);
    default:
      return PERPDEX_ERR_UNKNOWN_INSTRUCTION;
  }
}
