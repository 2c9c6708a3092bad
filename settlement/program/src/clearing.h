/*
 * clearing.h: helpers clearing.c shares with governance.c, and the governance instructions
 * the entrypoint dispatches to. Same conventions: 0 or the IDL error of the failed check.
 */
#ifndef PERPDEX_CLEARING_H
#define PERPDEX_CLEARING_H

#include "perpdex_sol.h"
#include "perpdex_clearing_idl.h"

bool key_eq(const void *a, const void *b);
bool is_system_program(const SolAccountInfo *account);
void emit(const void *event, uint64_t len);
uint64_t check_accounts(const SolParameters *params, uint64_t num, uint64_t writable_mask,
                        uint64_t signer_mask, uint64_t not_signer_error);
uint64_t load_exchange(const SolAccountInfo *account, const SolPubkey *program_id,
                       perpdex_Exchange **out);
uint64_t load_market(const SolAccountInfo *account, const SolPubkey *program_id,
                     perpdex_Market **out);

/* governance.c */
uint64_t ix_initialize_governance(const SolParameters *params);
uint64_t ix_propose_param_change(const SolParameters *params);
uint64_t ix_approve(const SolParameters *params);
uint64_t ix_execute(const SolParameters *params);
uint64_t ix_cancel(const SolParameters *params);
uint64_t ix_guardian_set_status(const SolParameters *params);

#endif /* PERPDEX_CLEARING_H */
