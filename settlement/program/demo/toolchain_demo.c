/*
 * toolchain_demo.c: the smallest program that exercises every part of the SBF toolchain
 * (perpdex_sol.h + clang-19 + settlement/toolchain/sbf_linker.py) end to end on the real loader.
 *
 * Instruction data: u8 tag, then the tag's arguments (little-endian).
 *   0 log             logs, then calls through a function-pointer table (callx, .rodata pointers)
 *   1 u128 vectors    n x (u64 a, u64 b, u64 d) -> return data n x 9 u64 (see op_u128)
 *   2 pda             u8 num_seeds, n x (u8 len, bytes) -> return data address[32], bump
 *   3 token transfer  u64 amount; accounts: vault (w), destination (w), vault authority PDA
 *                     ["vault"], token program. The PDA signs the CPI.
 *   4 create account  u64 space; accounts: payer (ws), new PDA ["state", payer] (w), system
 *                     program. The PDA signs; the account is owned by this program.
 *   5 clock           return data: slot, unix_timestamp
 *   6 heap            return data: number of 1 KiB blocks the bump allocator hands out
 *   7 fail            u64 code: returns it as the program result
 *   8 panic           aborts through sol_panic_
 */
#include "perpdex_sol.h"

#define DEMO_MAX_ACCOUNTS 8
#define DEMO_MAX_U128_VECTORS 14 /* 14 x 72 bytes fits the 1 KiB return data */

typedef uint64_t (*demo_handler)(const SolParameters *params);

static uint64_t op_log(const SolParameters *params);
static uint64_t op_u128(const SolParameters *params);
static uint64_t op_pda(const SolParameters *params);
static uint64_t op_token_transfer(const SolParameters *params);
static uint64_t op_create_account(const SolParameters *params);
static uint64_t op_clock(const SolParameters *params);
static uint64_t op_heap(const SolParameters *params);
static uint64_t op_fail(const SolParameters *params);
static uint64_t op_panic(const SolParameters *params);

/* A const table of function pointers: 64-bit data relocations in .rodata and callx. */
static demo_handler const HANDLERS[] = {
    op_log, op_u128, op_pda, op_token_transfer, op_create_account,
    op_clock, op_heap, op_fail, op_panic,
};

static const char *const GREETINGS[] = {"perpdex toolchain demo", "callx ok"};

__attribute__((noinline)) static uint64_t log_greeting(uint64_t index) {
  sol_log(GREETINGS[index]);
  return 0;
}

static uint64_t op_log(const SolParameters *params) {
  log_greeting(0);
  sol_log_64_(params->ka_total, params->data_len, 0, 0, 0);
  log_greeting(1);
  return PD_SUCCESS;
}

/* Per vector, 9 x u64: a*b (lo, hi), a*b/d (lo, hi), a*b%d, floor and ceil of (i64)a*b/d,
 * fit flags (bit 0 floor fits i64, bit 1 ceil fits), floor((i64)a / d). */
static uint64_t op_u128(const SolParameters *params) {
  uint64_t len = params->data_len - 1;
  if (len % 24 != 0 || len / 24 > DEMO_MAX_U128_VECTORS) return PD_ERROR_INVALID_INSTRUCTION_DATA;
  uint64_t n = len / 24;
  uint8_t *out = pd_alloc(n * 72);
  if (out == NULL) return PD_ERROR_INSUFFICIENT_FUNDS;
  for (uint64_t i = 0; i < n; i++) {
    const uint8_t *in = params->data + 1 + 24 * i;
    uint64_t a = pd_load_u64(in), b = pd_load_u64(in + 8), d = pd_load_u64(in + 16);
    if (d == 0) return PD_ERROR_INVALID_ARGUMENT;
    pd_u128 product = pd_mul_u64_wide(a, b);
    uint64_t rem;
    pd_u128 q = pd_div_u128_u64(product, d, &rem);
    int64_t floor_q = 0, ceil_q = 0;
    uint64_t fits = pd_mul_div_i64((int64_t)a, b, d, PD_ROUND_DOWN, &floor_q) ? 1 : 0;
    fits |= pd_mul_div_i64((int64_t)a, b, d, PD_ROUND_UP, &ceil_q) ? 2 : 0;
    uint8_t *o = out + 72 * i;
    pd_store_u64(o, pd_u128_lo(product));
    pd_store_u64(o + 8, pd_u128_hi(product));
    pd_store_u64(o + 16, pd_u128_lo(q));
    pd_store_u64(o + 24, pd_u128_hi(q));
    pd_store_u64(o + 32, rem);
    pd_store_i64(o + 40, floor_q);
    pd_store_i64(o + 48, ceil_q);
    pd_store_u64(o + 56, fits);
    pd_store_i64(o + 64, pd_div_i64_floor((int64_t)a, d));
  }
  pd_set_return_data(out, n * 72);
  return PD_SUCCESS;
}

static uint64_t op_pda(const SolParameters *params) {
  if (params->data_len < 2) return PD_ERROR_INVALID_INSTRUCTION_DATA;
  uint64_t num_seeds = params->data[1];
  if (num_seeds > 15) return PD_ERROR_MAX_SEED_LENGTH_EXCEEDED;
  SolSignerSeed seeds[16];
  uint64_t pos = 2;
  for (uint64_t i = 0; i < num_seeds; i++) {
    if (pos >= params->data_len) return PD_ERROR_INVALID_INSTRUCTION_DATA;
    uint64_t len = params->data[pos];
    if (pos + 1 + len > params->data_len) return PD_ERROR_INVALID_INSTRUCTION_DATA;
    seeds[i].addr = params->data + pos + 1;
    seeds[i].len = len;
    pos += 1 + len;
  }
  uint8_t out[33];
  SolPubkey *address = (SolPubkey *)out;
  if (pd_find_program_address(seeds, num_seeds, params->program_id, address, &out[32]) != 0)
    return PD_ERROR_INVALID_SEEDS;
  /* the bump re-derives the same address through create_program_address */
  seeds[num_seeds].addr = &out[32];
  seeds[num_seeds].len = 1;
  SolPubkey again;
  if (pd_create_program_address(seeds, num_seeds + 1, params->program_id, &again) != 0 ||
      !pd_pubkey_eq(&again, address))
    return PD_ERROR_INVALID_SEEDS;
  pd_set_return_data(out, sizeof(out));
  return PD_SUCCESS;
}

static uint64_t op_token_transfer(const SolParameters *params) {
  if (params->ka_num < 4) return PD_ERROR_NOT_ENOUGH_ACCOUNT_KEYS;
  if (params->data_len != 9) return PD_ERROR_INVALID_INSTRUCTION_DATA;
  const SolAccountInfo *ka = params->ka;
  SolPubkey token_program = PD_SPL_TOKEN_PROGRAM_ID;
  if (!pd_pubkey_eq(ka[3].key, &token_program)) return PD_ERROR_INCORRECT_PROGRAM_ID;
  static const uint8_t vault_seed[] = "vault";
  SolSignerSeed seeds[2] = {{vault_seed, sizeof(vault_seed) - 1}, {NULL, 1}};
  SolPubkey authority;
  uint8_t bump;
  if (pd_find_program_address(seeds, 1, params->program_id, &authority, &bump) != 0 ||
      !pd_pubkey_eq(&authority, ka[2].key))
    return PD_ERROR_INVALID_SEEDS;
  seeds[1].addr = &bump;
  SolSignerSeeds signer = {seeds, 2};
  PdTokenTransferAccounts accounts = {&ka[0], &ka[1], &ka[2], &ka[3]};
  return pd_spl_token_transfer(&accounts, pd_load_u64(params->data + 1), &signer, 1);
}

static uint64_t op_create_account(const SolParameters *params) {
  if (params->ka_num < 3) return PD_ERROR_NOT_ENOUGH_ACCOUNT_KEYS;
  if (params->data_len != 9) return PD_ERROR_INVALID_INSTRUCTION_DATA;
  const SolAccountInfo *ka = params->ka;
  if (!ka[0].is_signer) return PD_ERROR_MISSING_REQUIRED_SIGNATURES;
  static const uint8_t state_seed[] = "state";
  SolSignerSeed seeds[3] = {
      {state_seed, sizeof(state_seed) - 1}, {ka[0].key->x, PD_PUBKEY_BYTES}, {NULL, 1}};
  SolPubkey address;
  uint8_t bump;
  if (pd_find_program_address(seeds, 2, params->program_id, &address, &bump) != 0 ||
      !pd_pubkey_eq(&address, ka[1].key))
    return PD_ERROR_INVALID_SEEDS;
  seeds[2].addr = &bump;
  SolSignerSeeds signer = {seeds, 3};
  uint64_t space = pd_load_u64(params->data + 1);
  PdCreateAccount args = {&ka[0], &ka[1], &ka[2], pd_rent_exempt_minimum(space), space,
                          params->program_id};
  return pd_system_create_account(&args, &signer, 1);
}

static uint64_t op_clock(const SolParameters *params) {
  PD_UNUSED(params);
  SolClock clock;
  if (pd_get_clock(&clock) != 0) return PD_ERROR_INVALID_ARGUMENT;
  uint8_t out[16];
  pd_store_u64(out, clock.slot);
  pd_store_i64(out + 8, clock.unix_timestamp);
  pd_set_return_data(out, sizeof(out));
  return PD_SUCCESS;
}

static uint64_t op_heap(const SolParameters *params) {
  PD_UNUSED(params);
  uint64_t blocks = 0;
  uint8_t *block;
  while ((block = pd_alloc(1024)) != NULL) {
    block[1023] = 1; /* the whole block is addressable */
    blocks++;
  }
  uint8_t out[8];
  pd_store_u64(out, blocks);
  pd_set_return_data(out, sizeof(out));
  return PD_SUCCESS;
}

static uint64_t op_fail(const SolParameters *params) {
  if (params->data_len != 9) return PD_ERROR_INVALID_INSTRUCTION_DATA;
  return pd_load_u64(params->data + 1);
}

static uint64_t op_panic(const SolParameters *params) {
  PD_UNUSED(params);
  PD_PANIC();
}

uint64_t entrypoint(const uint8_t *input) {
  SolAccountInfo accounts[DEMO_MAX_ACCOUNTS];
  SolParameters params = {.ka = accounts};
  if (!pd_deserialize(input, &params, DEMO_MAX_ACCOUNTS)) return PD_ERROR_INVALID_ARGUMENT;
  if (params.data_len == 0) return PD_ERROR_INVALID_INSTRUCTION_DATA;
  uint64_t tag = params.data[0];
  if (tag >= PD_ARRAY_LEN(HANDLERS)) return PD_ERROR_INVALID_INSTRUCTION_DATA;
  return HANDLERS[tag](&params);
}
