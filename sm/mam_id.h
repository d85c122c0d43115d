/* mam_id: the archive ids of mod_mam (XEP-0359 stanza ids): make one, tell
 * one this server made from a forged one. See mam_id.c for the format. */
#ifndef WEFT_SM_MAM_ID_H
#define WEFT_SM_MAM_ID_H

#include <stdint.h>

#define MAM_ID_RANDOM 16           /* hex digits of time and randomness */
#define MAM_ID_TAG 12              /* hex digits of the keyed tag */
#define MAM_ID_LEN (MAM_ID_RANDOM + MAM_ID_TAG)

/* A new id for bare's archive into buf (MAM_ID_LEN + 1 bytes), keyed with
 * key (the sm's secret); us is the time in microseconds: ids made by one
 * process only grow, even when the clock does not. Returns the time the id
 * begins with (us, or just after the last id's), in 13 hex digits: the
 * record's stamp, so that its key is a stamped one (storage_hint_t). */
int64_t mam_id_new(const char *key, const char *bare, int64_t us, char *buf);

/* 1 when id is one mam_id_new made for bare with key, else 0. */
int mam_id_genuine(const char *key, const char *bare, const char *id);

/* Frees the kept MAC state (the module's free; the next use makes it again). */
void mam_id_free(void);

#endif
