/* mod_version: XEP-0092 software version of the domain: version.name, the
 * release (WEFT_VERSION) and, only when version.show-os is set, the
 * operating system (uname). To an account's bare JID the question is for its
 * clients: the registry answers service-unavailable (the module serves the
 * domain only); sent with no 'to', it is the server's. A set: not-allowed.
 * No state. */
#include "mod_version.h"
#include "module.h"
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>

/* The release this code is; keep in step with project() in meson.build. */
#define WEFT_VERSION "0.1.0"
#define NS_VERSION "jabber:iq:version"

typedef struct version_cfg {
    char *name;               /* software name answered */
    int show_os;              /* include the OS */
} version_cfg_t;

extern sm_module_t sm_module_version;

const char *sm_version_name(void)
{
    const version_cfg_t *cfg = sm_module_config(&sm_module_version);
    return cfg->name && *cfg->name ? cfg->name : "weft";
}

static void add_text_child(xml_node_t *parent, const char *name, const char *text)
{
    xml_node_t *c = xml_add_child(parent, NS_VERSION, name);
    xml_add_text(c, text, strlen(text));
}

static void version_get(sm_iq_t *req)
{
    const version_cfg_t *cfg = sm_module_config(&sm_module_version);
    xml_node_t *q = xml_elem_new(NS_VERSION, "query");
    add_text_child(q, "name", sm_version_name());
    add_text_child(q, "version", WEFT_VERSION);
    struct utsname un;
    if (cfg->show_os && uname(&un) == 0) {
        char os[2 * sizeof un.sysname + 2];
        snprintf(os, sizeof os, "%s %s", un.sysname, un.release);
        add_text_child(q, "os", os);
    }
    sm_iq_reply(req, q);
}

static const cfg_option_t version_options[] = {
    {"name", CFG_STRING, "weft", 0, 0, 1, offsetof(version_cfg_t, name), NULL,
     "Software name answered to XEP-0092 software version requests."},
    {"show-os", CFG_BOOL, "false", 0, 0, 1, offsetof(version_cfg_t, show_os), NULL,
     "Include the operating system in XEP-0092 answers."},
    {NULL, 0, NULL, 0, 0, 0, 0, NULL, NULL},
};

static const sm_iq_handler_t version_iqs[] = {
    {NS_VERSION, SM_IQ_SERVER, version_get, NULL, "not-allowed"},
    {NULL, 0, NULL, NULL, NULL},
};

static const char *const version_features[] = {NS_VERSION, NULL};

sm_module_t sm_module_version = {
    .name = "version",
    .help = "Software version (XEP-0092) of the server.",
    .options = version_options,
    .config_size = sizeof(version_cfg_t),
    .iqs = version_iqs,
    .server_features = version_features,
};
