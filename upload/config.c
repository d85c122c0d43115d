/* config: weft-upload's option table (docs/configuration.md is generated
 * from it by `weft-upload --doc`). Strings are owned by the loaded config
 * and freed by cfg_free; main.c keeps the running one in upload_config. */
#include "upload.h"
#include <stddef.h>

#define OPT(n, t, d, lo, hi, r, f, h) {n, t, d, lo, hi, r, offsetof(upload_cfg_t, f), NULL, h}
static const cfg_option_t upload_options[] = {
    DAEMON_COMMON_OPTIONS(upload_cfg_t),
    COMP_LINK_OPTIONS(upload_cfg_t, "upload", "weft-upload-secret", "4M"),
    OPT("domain", CFG_STRING, "upload.localhost", 0, 0, 0, domain,
        "The service's XMPP address (bound on the router; clients find it in the server's disco#items)."),
    OPT("allowed-domains", CFG_STRING, "localhost", 0, 0, 1, allowed_domains,
        "Domains whose users may request upload slots (space separated); others get not-allowed."),
    OPT("directory", CFG_STRING, "var/upload", 0, 0, 0, directory,
        "Where files, their metadata and the token key are kept (created if missing)."),
    OPT("limits.max-file-size", CFG_SIZE, "10M", 1, 68719476736.0, 1, max_file_size,
        "Largest file a slot is given for (announced in disco#info); larger requests get file-too-large."),
    OPT("limits.quota", CFG_SIZE, "100M", 1, 1099511627776.0, 1, quota,
        "Bytes of files and pending slots one user may hold; past it a request gets resource-constraint."),
    OPT("limits.expire-after", CFG_SECONDS, "168h", 1, 315360000, 1, expire_after,
        "A file is deleted this long after its slot was given (a week by default)."),
    OPT("limits.slot-timeout", CFG_SECONDS, "5m", 1, 86400, 1, slot_timeout,
        "A slot whose PUT has not started this long after it was given is dropped."),
    OPT("http.listen", CFG_STRING, "127.0.0.1:5281", 0, 0, 0, http_listen,
        "Addresses (host:port, space separated) of the HTTP listener for PUT and GET."),
    OPT("http.public-url", CFG_STRING, "", 0, 0, 0, public_url,
        "Base of the URLs handed to clients (e.g. https://upload.example.org behind a reverse proxy, which forwards the path unchanged); empty: http(s)://first-listen-address."),
    OPT("http.tls.certificate", CFG_STRING, "", 0, 0, 0, tls_cert,
        "PEM certificate chain: the listener speaks HTTPS; empty: plain HTTP (loopback, or behind a TLS proxy)."),
    OPT("http.tls.key", CFG_STRING, "", 0, 0, 0, tls_key,
        "PEM private key of http.tls.certificate."),
    OPT("http.max-connections", CFG_INT, "512", 1, 1000000, 1, max_connections,
        "Open HTTP connections at most; past it a new one gets 503 and is closed."),
    OPT("http.max-connections-per-ip", CFG_INT, "32", 1, 1000000, 1, max_per_ip,
        "Open HTTP connections from one address at most; past it 503."),
    OPT("http.header-timeout", CFG_SECONDS, "10s", 1, 3600, 1, header_timeout,
        "A request head must be complete this long after the connection (or the previous response), at any pace."),
    OPT("http.idle-timeout", CFG_SECONDS, "30s", 1, 3600, 1, idle_timeout,
        "Longest gap between two reads or writes of a body; also the fixed part of a transfer's time limit."),
    OPT("http.min-rate", CFG_SIZE, "4K", 1, 1073741824, 1, min_rate,
        "A body (upload or download) may take http.idle-timeout plus its size at this many bytes a second."),
    OPT("http.cors-origin", CFG_STRING, "*", 0, 0, 1, cors_origin,
        "Access-Control-Allow-Origin of every response, for web clients; empty: no CORS headers."),
    {NULL, 0, NULL, 0, 0, 0, 0, NULL, NULL},
};

const cfg_option_t *upload_config_table(void)
{
    return upload_options;
}
