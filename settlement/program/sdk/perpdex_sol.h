/*
 * perpdex_sol.h: perpdex's own small C SDK for Solana SBPF v0 programs.
 *
 * Built with stock clang-19 (`-target bpf -mcpu=v2`, see settlement/toolchain) and linked by
 * settlement/toolchain/sbf_linker.py. Everything here is `static inline` (PD_INLINE): include it from any
 * number of translation units.
 *
 * Rules the compiler does not enforce for you (the linker rejects what it can see):
 *  - no writable globals (.data/.bss): keep tables `static const T *const`;
 *  - no signed `/` or `%`: use pd_div_i64_* below;
 *  - no 128-bit `*`, `/`, `%` or variable shifts (they become __multi3/__udivti3...; the link
 *    fails naming the symbol): use pd_mul_u64_wide / pd_div_u128_u64 / pd_mul_div_u64;
 *  - at most 5 arguments per function, no struct pass-by-value, no floating point;
 *  - struct copies up to 1024 bytes are inlined; larger ones fail to compile ("A call to
 *    built-in function 'memcpy' is not supported"): use pd_memcpy. An explicit call to a
 *    declared `memcpy`/`memmove`/`memset` is bound by the linker to the sol_mem*_ syscall
 *    (whose return value is NOT the destination pointer).
 *
 * Structures passed to syscalls (SolPubkey, SolAccountInfo, SolAccountMeta, SolInstruction,
 * SolSignerSeed(s), SolBytes, SolClock) follow the runtime's C ABI exactly; do not reorder them.
 */
#ifndef PERPDEX_SOL_H
#define PERPDEX_SOL_H

/* ------------------------------------------------------------------ fixed-width types */
/* clang's own freestanding headers (no libc needed); the same header also builds on the host
 * (gcc/clang with the system headers), where tests run the maths natively. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
typedef unsigned __int128 pd_u128;
typedef __int128 pd_i128;

#define PD_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
PD_STATIC_ASSERT(sizeof(uint64_t) == 8, "uint64_t is 8 bytes");
PD_STATIC_ASSERT(sizeof(void *) == 8, "pointers are 8 bytes");
PD_STATIC_ASSERT(sizeof(pd_u128) == 16, "pd_u128 is 16 bytes");

/* Every helper is forced inline: BPF cannot return a 128-bit value from a real call
 * ("only small returns supported"), and inlining keeps call overhead out of the hot paths. */
#define PD_INLINE static inline __attribute__((always_inline))

#define PD_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define PD_UNUSED(x) ((void)(x))

/* ------------------------------------------------------------------ return codes */
/* Success is 0. A custom error N (Anchor: >= 6000) is returned as N and shows as Custom(N).
 * Builtin errors are (index << 32), as the runtime's ProgramError encoding. */
#define PD_SUCCESS 0ull
#define PD_BUILTIN_ERROR(index) (((uint64_t)(index)) << 32)
#define PD_ERROR_CUSTOM_ZERO PD_BUILTIN_ERROR(1)
#define PD_ERROR_INVALID_ARGUMENT PD_BUILTIN_ERROR(2)
#define PD_ERROR_INVALID_INSTRUCTION_DATA PD_BUILTIN_ERROR(3)
#define PD_ERROR_INVALID_ACCOUNT_DATA PD_BUILTIN_ERROR(4)
#define PD_ERROR_ACCOUNT_DATA_TOO_SMALL PD_BUILTIN_ERROR(5)
#define PD_ERROR_INSUFFICIENT_FUNDS PD_BUILTIN_ERROR(6)
#define PD_ERROR_INCORRECT_PROGRAM_ID PD_BUILTIN_ERROR(7)
#define PD_ERROR_MISSING_REQUIRED_SIGNATURES PD_BUILTIN_ERROR(8)
#define PD_ERROR_ACCOUNT_ALREADY_INITIALIZED PD_BUILTIN_ERROR(9)
#define PD_ERROR_UNINITIALIZED_ACCOUNT PD_BUILTIN_ERROR(10)
#define PD_ERROR_NOT_ENOUGH_ACCOUNT_KEYS PD_BUILTIN_ERROR(11)
#define PD_ERROR_ACCOUNT_BORROW_FAILED PD_BUILTIN_ERROR(12)
#define PD_ERROR_MAX_SEED_LENGTH_EXCEEDED PD_BUILTIN_ERROR(13)
#define PD_ERROR_INVALID_SEEDS PD_BUILTIN_ERROR(14)

/* ------------------------------------------------------------------ ABI structures */
#define PD_PUBKEY_BYTES 32
typedef struct {
  uint8_t x[PD_PUBKEY_BYTES];
} SolPubkey;

/* One account of the instruction, pointing into the serialized input (writes go on-chain). */
typedef struct {
  SolPubkey *key;
  uint64_t *lamports;
  uint64_t data_len;
  uint8_t *data;
  SolPubkey *owner;
  uint64_t rent_epoch;
  bool is_signer;
  bool is_writable;
  bool executable;
} SolAccountInfo;

typedef struct {
  SolPubkey *pubkey;
  bool is_writable;
  bool is_signer;
} SolAccountMeta;

typedef struct {
  SolPubkey *program_id;
  SolAccountMeta *accounts;
  uint64_t account_len;
  uint8_t *data;
  uint64_t data_len;
} SolInstruction;

/* A byte slice: one PDA seed, one sha256 input, one sol_log_data field. */
typedef struct {
  const uint8_t *addr;
  uint64_t len;
} SolSignerSeed;
typedef SolSignerSeed SolBytes;

/* The seeds of one PDA signer. */
typedef struct {
  const SolSignerSeed *addr;
  uint64_t len;
} SolSignerSeeds;

typedef struct {
  uint64_t slot;
  int64_t epoch_start_timestamp;
  uint64_t epoch;
  uint64_t leader_schedule_epoch;
  int64_t unix_timestamp;
} SolClock;

PD_STATIC_ASSERT(sizeof(SolAccountInfo) == 56, "SolAccountInfo ABI size");
PD_STATIC_ASSERT(sizeof(SolAccountMeta) == 16, "SolAccountMeta ABI size");
PD_STATIC_ASSERT(sizeof(SolInstruction) == 40, "SolInstruction ABI size");
PD_STATIC_ASSERT(sizeof(SolSignerSeed) == 16, "SolSignerSeed ABI size");
PD_STATIC_ASSERT(sizeof(SolClock) == 40, "SolClock ABI size");

/* ------------------------------------------------------------------ syscalls */
/* Resolved by name at load time (murmur3 hash); the linker accepts exactly these externs. */
void sol_log_(const char *message, uint64_t len);
void sol_log_64_(uint64_t a, uint64_t b, uint64_t c, uint64_t d, uint64_t e);
void sol_log_pubkey(const SolPubkey *pubkey);
void sol_log_compute_units_(void);
void sol_log_data(const SolBytes *fields, uint64_t num_fields);
void sol_panic_(const char *file, uint64_t file_len, uint64_t line, uint64_t column)
    __attribute__((noreturn));
void sol_memcpy_(void *dst, const void *src, uint64_t n);
void sol_memmove_(void *dst, const void *src, uint64_t n);
void sol_memset_(void *dst, uint8_t value, uint64_t n);
void sol_memcmp_(const void *a, const void *b, uint64_t n, int32_t *result);
uint64_t sol_sha256(const SolBytes *inputs, uint64_t num_inputs, uint8_t *hash_out);
uint64_t sol_create_program_address(const SolSignerSeed *seeds, uint64_t num_seeds,
                                    const SolPubkey *program_id, SolPubkey *address_out);
uint64_t sol_try_find_program_address(const SolSignerSeed *seeds, uint64_t num_seeds,
                                      const SolPubkey *program_id, SolPubkey *address_out,
                                      uint8_t *bump_out);
uint64_t sol_invoke_signed_c(const SolInstruction *instruction,
                             const SolAccountInfo *account_infos, uint64_t num_account_infos,
                             const SolSignerSeeds *signers, uint64_t num_signers);
uint64_t sol_get_clock_sysvar(SolClock *clock_out);
void sol_set_return_data(const uint8_t *data, uint64_t len);
uint64_t sol_get_return_data(uint8_t *data_out, uint64_t max_len, SolPubkey *program_id_out);

/* ------------------------------------------------------------------ logging and panics */
PD_INLINE uint64_t pd_strlen(const char *s) {
  uint64_t n = 0;
  while (s[n] != 0) n++;
  return n;
}

/* Log a string literal without scanning it. */
#define PD_LOG(literal) sol_log_((literal), sizeof(literal) - 1)
PD_INLINE void sol_log(const char *message) { sol_log_(message, pd_strlen(message)); }
#define sol_log_64(a, b, c, d, e) sol_log_64_((a), (b), (c), (d), (e))

/* Abort the transaction: the runtime logs file:line:column. __FILE_NAME__ (basename) keeps
 * build paths out of the binary so builds are reproducible. */
#ifndef __FILE_NAME__
#define __FILE_NAME__ __FILE__
#endif
#define PD_PANIC() sol_panic_(__FILE_NAME__, sizeof(__FILE_NAME__) - 1, __LINE__, 0)
#define PD_ASSERT(cond)   \
  do {                    \
    if (!(cond)) {        \
      PD_PANIC();         \
    }                     \
  } while (0)

/* ------------------------------------------------------------------ memory */
PD_INLINE void pd_memcpy(void *dst, const void *src, uint64_t n) { sol_memcpy_(dst, src, n); }
PD_INLINE void pd_memset(void *dst, uint8_t value, uint64_t n) { sol_memset_(dst, value, n); }
/* 0 when equal (sign of the first differing byte otherwise, as memcmp). */
PD_INLINE int32_t pd_memcmp(const void *a, const void *b, uint64_t n) {
  int32_t result = 0;
  sol_memcmp_(a, b, n, &result);
  return result;
}

/* Unaligned little-endian loads/stores (SBPF allows unaligned access; clang must be told). */
PD_INLINE uint64_t pd_load_u64(const uint8_t *p) {
  uint64_t v;
  __builtin_memcpy(&v, p, 8);
  return v;
}
PD_INLINE int64_t pd_load_i64(const uint8_t *p) { return (int64_t)pd_load_u64(p); }
PD_INLINE uint32_t pd_load_u32(const uint8_t *p) {
  uint32_t v;
  __builtin_memcpy(&v, p, 4);
  return v;
}
PD_INLINE void pd_store_u64(uint8_t *p, uint64_t v) { __builtin_memcpy(p, &v, 8); }
PD_INLINE void pd_store_i64(uint8_t *p, int64_t v) { pd_store_u64(p, (uint64_t)v); }
PD_INLINE void pd_store_u32(uint8_t *p, uint32_t v) { __builtin_memcpy(p, &v, 4); }

PD_INLINE bool pd_pubkey_eq(const SolPubkey *a, const SolPubkey *b) {
  uint64_t diff = 0;
  for (int i = 0; i < 4; i++) diff |= pd_load_u64(a->x + 8 * i) ^ pd_load_u64(b->x + 8 * i);
  return diff == 0;
}
PD_INLINE void pd_pubkey_copy(SolPubkey *dst, const SolPubkey *src) {
  for (int i = 0; i < 4; i++) pd_store_u64(dst->x + 8 * i, pd_load_u64(src->x + 8 * i));
}

/* ------------------------------------------------------------------ heap: bump allocator */
/* The runtime gives each invocation a zeroed 32 KiB heap at this address. There are no
 * writable globals, so the bump cursor lives in the heap's first 8 bytes (0 = fresh). */
#define PD_HEAP_START 0x300000000ull
#define PD_HEAP_LENGTH (32u * 1024u)

/* `size` bytes aligned to 8, zeroed; NULL when the heap is exhausted. Never freed. */
PD_INLINE void *pd_alloc(uint64_t size) {
  uint64_t *cursor = (uint64_t *)PD_HEAP_START;
  uint64_t next = *cursor;
  if (next == 0) next = PD_HEAP_START + 8;
  uint64_t aligned_size = (size + 7) & ~7ull;
  if (aligned_size < size || aligned_size > PD_HEAP_START + PD_HEAP_LENGTH - next) return NULL;
  *cursor = next + aligned_size;
  return (void *)next;
}

/* ------------------------------------------------------------------ entrypoint input */
/* Serialization v1 (BPFLoaderUpgradeable): u64 num_accounts; per account: u8 dup marker
 * (0xff = first occurrence, else index of the original), then either 7 pad bytes (duplicate)
 * or is_signer, is_writable, executable, 4 pad, key, owner, u64 lamports, u64 data_len, data,
 * 10 KiB realloc room, pad to 8, u64 rent_epoch; then u64 data_len, data, program id. */
#define PD_MAX_PERMITTED_DATA_INCREASE (10 * 1024)
#define PD_NON_DUP_MARKER 0xff

typedef struct {
  SolAccountInfo *ka;          /* filled account infos (caller's array) */
  uint64_t ka_num;             /* entries filled: min(accounts in input, capacity) */
  uint64_t ka_total;           /* accounts in the input (may exceed capacity) */
  const uint8_t *data;         /* instruction data */
  uint64_t data_len;
  const SolPubkey *program_id; /* this program */
} SolParameters;

/* Parse the input into `params`, filling at most `ka_capacity` account infos (the rest are
 * skipped but counted in ka_total). Duplicated accounts get a copy of the original's info.
 * Returns false on a malformed duplicate marker. */
PD_INLINE bool pd_deserialize(const uint8_t *input, SolParameters *params,
                                  uint64_t ka_capacity) {
  uint64_t num_accounts = *(const uint64_t *)input;
  input += 8;
  params->ka_total = num_accounts;
  params->ka_num = num_accounts < ka_capacity ? num_accounts : ka_capacity;
  for (uint64_t i = 0; i < num_accounts; i++) {
    uint8_t dup = input[0];
    if (dup != PD_NON_DUP_MARKER) {
      if (dup >= i) return false;
      if (i < ka_capacity) {
        if (dup >= ka_capacity) return false;
        params->ka[i] = params->ka[dup];
      }
      input += 8;
      continue;
    }
    if (i < ka_capacity) {
      SolAccountInfo *info = &params->ka[i];
      info->is_signer = input[1] != 0;
      info->is_writable = input[2] != 0;
      info->executable = input[3] != 0;
      info->key = (SolPubkey *)(input + 8);
      info->owner = (SolPubkey *)(input + 40);
      info->lamports = (uint64_t *)(input + 72);
      info->data_len = *(const uint64_t *)(input + 80);
      info->data = (uint8_t *)(input + 88);
    }
    uint64_t data_len = *(const uint64_t *)(input + 80);
    input += 88 + data_len + PD_MAX_PERMITTED_DATA_INCREASE;
    input = (const uint8_t *)(((uint64_t)input + 7) & ~7ull);
    if (i < ka_capacity) params->ka[i].rent_epoch = *(const uint64_t *)input;
    input += 8;
  }
  params->data_len = *(const uint64_t *)input;
  input += 8;
  params->data = input;
  input += params->data_len;
  params->program_id = (const SolPubkey *)input;
  return true;
}

/* ------------------------------------------------------------------ 128-bit arithmetic */
/* BPF codegen cannot multiply or divide 128-bit values (it would call __multi3/__udivti3,
 * which do not exist on-chain); these do it with 64-bit operations only. */

PD_INLINE uint64_t pd_u128_lo(pd_u128 v) { return (uint64_t)v; }
PD_INLINE uint64_t pd_u128_hi(pd_u128 v) { return (uint64_t)(v >> 64); }
PD_INLINE pd_u128 pd_u128_make(uint64_t hi, uint64_t lo) {
  return ((pd_u128)hi << 64) | (pd_u128)lo;
}

/* Exact a * b. */
PD_INLINE pd_u128 pd_mul_u64_wide(uint64_t a, uint64_t b) {
  uint64_t a_lo = a & 0xffffffffull, a_hi = a >> 32;
  uint64_t b_lo = b & 0xffffffffull, b_hi = b >> 32;
  uint64_t p_ll = a_lo * b_lo, p_lh = a_lo * b_hi, p_hl = a_hi * b_lo, p_hh = a_hi * b_hi;
  /* each term < 2^32, so the sum < 3 * 2^32: no overflow */
  uint64_t mid = (p_ll >> 32) + (p_lh & 0xffffffffull) + (p_hl & 0xffffffffull);
  uint64_t lo = (p_ll & 0xffffffffull) | (mid << 32);
  uint64_t hi = p_hh + (p_lh >> 32) + (p_hl >> 32) + (mid >> 32);
  return pd_u128_make(hi, lo);
}

/* Number of leading zero bits of a non-zero value (no ctlz instruction on BPF). */
PD_INLINE uint64_t pd_clz64(uint64_t v) {
  uint64_t n = 0;
  if ((v >> 32) == 0) { n += 32; v <<= 32; }
  if ((v >> 48) == 0) { n += 16; v <<= 16; }
  if ((v >> 56) == 0) { n += 8; v <<= 8; }
  if ((v >> 60) == 0) { n += 4; v <<= 4; }
  if ((v >> 62) == 0) { n += 2; v <<= 2; }
  if ((v >> 63) == 0) { n += 1; }
  return n;
}

/* (high:low) / divisor for high < divisor (so the quotient fits 64 bits), remainder in *rem.
 * Long division in base 2^32 with a normalised divisor (two quotient digits, each estimated
 * from the top digits and corrected at most twice). */
PD_INLINE uint64_t pd_div_2by1(uint64_t high, uint64_t low, uint64_t divisor,
                                   uint64_t *rem) {
  const uint64_t base = 1ull << 32;
  if (high == 0) {
    *rem = low % divisor;
    return low / divisor;
  }
  uint64_t shift = pd_clz64(divisor);
  uint64_t v = divisor << shift;
  uint64_t v_hi = v >> 32, v_lo = v & 0xffffffffull;
  uint64_t u_top = (high << shift) | (shift == 0 ? 0 : low >> (64 - shift));
  uint64_t u_low = low << shift;
  uint64_t u1 = u_low >> 32, u0 = u_low & 0xffffffffull;

  uint64_t q1 = u_top / v_hi;
  uint64_t rhat = u_top - q1 * v_hi;
  while (q1 >= base || q1 * v_lo > ((rhat << 32) | u1)) {
    q1 -= 1;
    rhat += v_hi;
    if (rhat >= base) break;
  }
  uint64_t u21 = (u_top << 32) + u1 - q1 * v; /* exact modulo 2^64: the true value < v */

  uint64_t q0 = u21 / v_hi;
  rhat = u21 - q0 * v_hi;
  while (q0 >= base || q0 * v_lo > ((rhat << 32) | u0)) {
    q0 -= 1;
    rhat += v_hi;
    if (rhat >= base) break;
  }
  *rem = ((u21 << 32) + u0 - q0 * v) >> shift;
  return (q1 << 32) | q0;
}

/* n / divisor (divisor != 0) with the remainder in *rem (may be NULL). */
PD_INLINE pd_u128 pd_div_u128_u64(pd_u128 n, uint64_t divisor, uint64_t *rem) {
  uint64_t n_hi = pd_u128_hi(n), n_lo = pd_u128_lo(n);
  uint64_t q_hi = n_hi / divisor;
  uint64_t r_hi = n_hi - q_hi * divisor;
  uint64_t r;
  uint64_t q_lo = pd_div_2by1(r_hi, n_lo, divisor, &r);
  if (rem != NULL) *rem = r;
  return pd_u128_make(q_hi, q_lo);
}

typedef enum { PD_ROUND_DOWN = 0, PD_ROUND_UP = 1 } pd_rounding;

/* *out = a * b / divisor rounded down or up; false when divisor is 0 or the result does not
 * fit 64 bits (then *out is untouched). */
PD_INLINE bool pd_mul_div_u64(uint64_t a, uint64_t b, uint64_t divisor, pd_rounding rounding,
                                  uint64_t *out) {
  if (divisor == 0) return false;
  uint64_t rem;
  pd_u128 q = pd_div_u128_u64(pd_mul_u64_wide(a, b), divisor, &rem);
  if (rounding == PD_ROUND_UP && rem != 0) q += 1;
  if (pd_u128_hi(q) != 0) return false;
  *out = pd_u128_lo(q);
  return true;
}

/* ------------------------------------------------------------------ checked 64-bit maths */
PD_INLINE bool pd_add_u64(uint64_t a, uint64_t b, uint64_t *out) {
  return !__builtin_add_overflow(a, b, out);
}
PD_INLINE bool pd_sub_u64(uint64_t a, uint64_t b, uint64_t *out) {
  return !__builtin_sub_overflow(a, b, out);
}
PD_INLINE bool pd_add_i64(int64_t a, int64_t b, int64_t *out) {
  return !__builtin_add_overflow(a, b, out);
}
PD_INLINE bool pd_sub_i64(int64_t a, int64_t b, int64_t *out) {
  return !__builtin_sub_overflow(a, b, out);
}
PD_INLINE bool pd_mul_u64(uint64_t a, uint64_t b, uint64_t *out) {
  pd_u128 p = pd_mul_u64_wide(a, b);
  if (pd_u128_hi(p) != 0) return false;
  *out = pd_u128_lo(p);
  return true;
}

/* |v| as unsigned (exact for INT64_MIN). */
PD_INLINE uint64_t pd_abs_i64(int64_t v) { return v < 0 ? 0 - (uint64_t)v : (uint64_t)v; }

/* sign * magnitude into *out; false if it does not fit i64. */
PD_INLINE bool pd_i64_from_sign_mag(bool negative, uint64_t magnitude, int64_t *out) {
  if (negative) {
    if (magnitude > (uint64_t)INT64_MAX + 1) return false;
    *out = (int64_t)(0 - magnitude);
  } else {
    if (magnitude > (uint64_t)INT64_MAX) return false;
    *out = (int64_t)magnitude;
  }
  return true;
}

/* Signed / unsigned division without signed `/` (unsupported by BPF codegen). divisor > 0. */
PD_INLINE int64_t pd_div_i64_trunc(int64_t a, uint64_t divisor) {
  uint64_t q = pd_abs_i64(a) / divisor;
  return a < 0 ? (int64_t)(0 - q) : (int64_t)q;
}
PD_INLINE int64_t pd_div_i64_floor(int64_t a, uint64_t divisor) {
  uint64_t mag = pd_abs_i64(a);
  uint64_t q = mag / divisor;
  if (a < 0) {
    if (q * divisor != mag) q += 1;
    return (int64_t)(0 - q);
  }
  return (int64_t)q;
}
PD_INLINE int64_t pd_div_i64_ceil(int64_t a, uint64_t divisor) {
  uint64_t mag = pd_abs_i64(a);
  uint64_t q = mag / divisor;
  if (a >= 0) {
    if (q * divisor != mag) q += 1;
    return (int64_t)q;
  }
  return (int64_t)(0 - q);
}
/* Remainder of pd_div_i64_floor: always in [0, divisor). */
PD_INLINE uint64_t pd_mod_i64_floor(int64_t a, uint64_t divisor) {
  /* modulo-2^64 unsigned arithmetic: exact because the true result lies in [0, divisor) */
  return (uint64_t)a - (uint64_t)pd_div_i64_floor(a, divisor) * divisor;
}

/* *out = a * b / divisor for signed a, rounded toward -inf (PD_ROUND_DOWN) or +inf
 * (PD_ROUND_UP); false when divisor is 0 or the result does not fit i64. */
PD_INLINE bool pd_mul_div_i64(int64_t a, uint64_t b, uint64_t divisor, pd_rounding rounding,
                                  int64_t *out) {
  if (divisor == 0) return false;
  bool negative = a < 0;
  /* rounding the magnitude up pushes a negative value down, and vice versa */
  pd_rounding magnitude_rounding =
      negative ? (rounding == PD_ROUND_DOWN ? PD_ROUND_UP : PD_ROUND_DOWN) : rounding;
  uint64_t rem;
  pd_u128 q = pd_div_u128_u64(pd_mul_u64_wide(pd_abs_i64(a), b), divisor, &rem);
  if (magnitude_rounding == PD_ROUND_UP && rem != 0) q += 1;
  if (pd_u128_hi(q) != 0) return false;
  return pd_i64_from_sign_mag(negative && pd_u128_lo(q) != 0, pd_u128_lo(q), out);
}

/* ------------------------------------------------------------------ hashing and PDAs */
PD_INLINE uint64_t pd_sha256(const SolBytes *inputs, uint64_t num_inputs, uint8_t out[32]) {
  return sol_sha256(inputs, num_inputs, out);
}

/* The canonical PDA (highest bump) of `seeds` under `program_id`. 0 on success. */
PD_INLINE uint64_t pd_find_program_address(const SolSignerSeed *seeds, uint64_t num_seeds,
                                               const SolPubkey *program_id, SolPubkey *address_out,
                                               uint8_t *bump_out) {
  return sol_try_find_program_address(seeds, num_seeds, program_id, address_out, bump_out);
}

/* The PDA of `seeds` (the bump included as the last seed). 0 on success; non-zero when the
 * seeds land on the curve. Cheaper than a find: use it with a stored bump. */
PD_INLINE uint64_t pd_create_program_address(const SolSignerSeed *seeds, uint64_t num_seeds,
                                                 const SolPubkey *program_id,
                                                 SolPubkey *address_out) {
  return sol_create_program_address(seeds, num_seeds, program_id, address_out);
}

/* True when `account` is the PDA of seeds (bump included) under program_id. */
PD_INLINE bool pd_is_program_address(const SolAccountInfo *account, const SolSignerSeed *seeds,
                                         uint64_t num_seeds, const SolPubkey *program_id) {
  SolPubkey expected;
  if (pd_create_program_address(seeds, num_seeds, program_id, &expected) != 0) return false;
  return pd_pubkey_eq(&expected, account->key);
}

/* ------------------------------------------------------------------ well-known programs */
/* TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA */
#define PD_SPL_TOKEN_PROGRAM_ID                                                                 \
  {{0x06, 0xdd, 0xf6, 0xe1, 0xd7, 0x65, 0xa1, 0x93, 0xd9, 0xcb, 0xe1, 0x46, 0xce, 0xeb, 0x79,    \
    0xac, 0x1c, 0xb4, 0x85, 0xed, 0x5f, 0x5b, 0x37, 0x91, 0x3a, 0x8c, 0xf5, 0x85, 0x7e, 0xff,    \
    0x00, 0xa9}}
/* 11111111111111111111111111111111 */
#define PD_SYSTEM_PROGRAM_ID {{0}}

/* SPL Token account layout (165 bytes): mint, owner, amount, ... state at 108. */
#define PD_TOKEN_ACCOUNT_LEN 165
#define PD_TOKEN_ACCOUNT_MINT_OFFSET 0
#define PD_TOKEN_ACCOUNT_OWNER_OFFSET 32
#define PD_TOKEN_ACCOUNT_AMOUNT_OFFSET 64
#define PD_TOKEN_ACCOUNT_STATE_OFFSET 108
#define PD_TOKEN_ACCOUNT_STATE_INITIALIZED 1

/* ------------------------------------------------------------------ CPI helpers */
/* Default rent (3,480 lamports per byte-year, 2 years exempt, 128 bytes of account overhead). */
PD_INLINE uint64_t pd_rent_exempt_minimum(uint64_t data_len) {
  return (data_len + 128) * 3480 * 2;
}

/* SPL Token `Transfer` (tag 3) of `amount` from `source` to `destination`, authorised by
 * `authority`; pass `signers` (its PDA seeds, bump included) when the authority is a PDA of
 * this program, or num_signers 0 when it signed the transaction. Returns the runtime's result. */
typedef struct {
  const SolAccountInfo *source;
  const SolAccountInfo *destination;
  const SolAccountInfo *authority;
  const SolAccountInfo *token_program;
} PdTokenTransferAccounts;

PD_INLINE uint64_t pd_spl_token_transfer(const PdTokenTransferAccounts *accounts,
                                             uint64_t amount, const SolSignerSeeds *signers,
                                             uint64_t num_signers) {
  SolAccountMeta metas[3] = {
      {accounts->source->key, true, false},
      {accounts->destination->key, true, false},
      {accounts->authority->key, false, true},
  };
  uint8_t data[9];
  data[0] = 3;
  pd_store_u64(data + 1, amount);
  SolInstruction instruction = {accounts->token_program->key, metas, 3, data, sizeof(data)};
  SolAccountInfo infos[4] = {*accounts->source, *accounts->destination, *accounts->authority,
                             *accounts->token_program};
  return sol_invoke_signed_c(&instruction, infos, 4, signers, num_signers);
}

/* System `CreateAccount` (tag 0): `payer` funds `new_account` with `lamports`, allocates
 * `space` bytes and assigns it to `owner`. `new_account` must sign: as a PDA, via `signers`. */
typedef struct {
  const SolAccountInfo *payer;
  const SolAccountInfo *new_account;
  const SolAccountInfo *system_program;
  uint64_t lamports;
  uint64_t space;
  const SolPubkey *owner;
} PdCreateAccount;

PD_INLINE uint64_t pd_system_create_account(const PdCreateAccount *args,
                                                const SolSignerSeeds *signers,
                                                uint64_t num_signers) {
  SolAccountMeta metas[2] = {
      {args->payer->key, true, true},
      {args->new_account->key, true, true},
  };
  uint8_t data[52];
  pd_store_u32(data, 0);
  pd_store_u64(data + 4, args->lamports);
  pd_store_u64(data + 12, args->space);
  pd_pubkey_copy((SolPubkey *)(data + 20), args->owner);
  SolInstruction instruction = {args->system_program->key, metas, 2, data, sizeof(data)};
  SolAccountInfo infos[3] = {*args->payer, *args->new_account, *args->system_program};
  return sol_invoke_signed_c(&instruction, infos, 3, signers, num_signers);
}

/* ------------------------------------------------------------------ sysvars, return data */
PD_INLINE uint64_t pd_get_clock(SolClock *clock_out) { return sol_get_clock_sysvar(clock_out); }
PD_INLINE void pd_set_return_data(const uint8_t *data, uint64_t len) {
  sol_set_return_data(data, len);
}

#endif /* PERPDEX_SOL_H */
