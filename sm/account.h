/* account: what the sm does to an account outside the c2s's authreg
 * requests (authreg.c implements both): the ad-hoc admin commands
 * (mod_admin) create, remove, disable and re-key accounts through these.
 *
 * A disabled account keeps its data; its authreg get answer carries
 * disabled='true', and c2s refuses the login once the password is proven
 * (SASL failure <account-disabled/>; a wrong password stays not-authorized). The flag is the record (collection "account", key
 * "disabled") of the user, so deleting the account deletes it too. */
#ifndef WEFT_SM_ACCOUNT_H
#define WEFT_SM_ACCOUNT_H

/* SCRAM-SHA-256 and -SHA-1 key texts for a password (SASLprep'd first),
 * stored through storage_user_create/set_keys. 0, or -1 when the password is
 * empty or not acceptable (out untouched). The caller frees both. */
int sm_account_keys(const char *password, char **sha256, char **sha1);
/* done(rc, arg) gets 0, 1 if there is no such account, -1 on a storage
 * error, once storage answered (at once on SQLite, later on PostgreSQL). */
typedef void (*sm_account_fn)(int rc, void *arg);
/* Ends the user's sessions (c2s closes the streams with reason), runs the
 * user_delete hooks and removes the account. */
void sm_account_remove(const char *bare, const char *reason, sm_account_fn done, void *arg);
/* Sets or clears the flag; disabling ends the user's sessions. */
void sm_account_set_disabled(const char *bare, int disabled, sm_account_fn done, void *arg);
/* Ends every session of the user (c2s closes the streams with reason);
 * returns how many ended. */
int sm_account_end_sessions(const char *bare, const char *reason);

#endif
