/* upload.h: what the files of weft-upload share: its configuration
 * (config.c's table fills upload_cfg_t) and the entry points of each part:
 * slot.c answers XMPP (disco, slot requests), store.c owns the files and
 * their metadata on disk, http_conn.c the HTTP connections and http_serve.c
 * what a GET, HEAD, PUT or OPTIONS request does. docs/upload.md describes
 * the service. */
#ifndef WEFT_UPLOAD_H
#define WEFT_UPLOAD_H
#include <stddef.h>
#include "config.h"
#include "comp_client.h"
#include "daemon.h"
#include "xml.h"

typedef struct upload_cfg {
    daemon_common_t common;
    comp_link_cfg_t link;      /* router.*, name, secret (common/comp_client.h) */
    char *domain;
    char *allowed_domains;   /* who may request slots: space-separated domains */
    char *directory;
    size_t max_file_size;
    size_t quota;
    double expire_after;     /* files are deleted this long after their slot */
    double slot_timeout;     /* a slot not uploaded within this is dropped */
    char *http_listen;
    char *public_url;
    char *tls_cert;
    char *tls_key;
    long max_connections;
    long max_per_ip;
    double header_timeout;
    double idle_timeout;
    size_t min_rate;
    char *cors_origin;
} upload_cfg_t;

extern upload_cfg_t *upload_config;

const cfg_option_t *upload_config_table(void);

/* slot.c: an XMPP stanza addressed to the service; owns nothing. */
void slot_handle(xml_node_t *stanza);
/* main.c: sends a stanza to the router (logged when the buffer is full). */
void upload_send(const xml_node_t *stanza);

/* metrics.c: the Prometheus families, and what the other files count. */
void upload_metrics_register(void);
void upload_metrics_slot(const char *result);
void upload_metrics_http(int status);
void upload_metrics_bytes(const char *direction, long long n);

/* The base of the URLs handed out (public_url, or http(s)://first-listen-address),
 * without a trailing slash. */
const char *upload_base_url(void);

#endif
