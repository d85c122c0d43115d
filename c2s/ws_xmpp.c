/* ws_xmpp: the XMPP framing of RFC 7395 §3.3-3.6 over a WebSocket. Each
 * message holds one whole element: <open/> opens (and, after STARTTLS-less
 * SASL, restarts) the stream, <close/> ends it, anything else is a stanza or
 * a stream-level element (SASL, XEP-0198).
 *
 * Input goes to the same XML stream parser as a TCP client's: <open/>
 * becomes the <stream:stream> header it expects (to, version and xml:lang
 * carried over), <close/> its </stream:stream>, and stanza messages go in
 * as they are (each declares its namespace; one that does not inherits
 * jabber:client from the header, as on TCP). A message that leaves a
 * stanza unfinished is refused: a message is a whole element.
 *
 * Output: client.c writes one unit at a time, each a message; here the
 * units whose TCP form would not stand alone as a document: <open/> for
 * the header, stream errors with their xmlns:stream, <close/> for the end. */
#include "ws.h"
#include "comp_proto.h"
#include "jid.h"
#include "log.h"
#include "ws_frame.h"
#include <string.h>

/* Ends the stream with a stream error; -1 for the caller to return. */
static int ws_xmpp_refuse(client_t *c, const char *condition, const char *text)
{
    client_stream_error(c, condition, text);
    return -1;
}

/* Whether msg (after blanks) starts with the start tag of name. */
static int ws_xmpp_starts(const char *msg, size_t len, const char *name)
{
    size_t i = 0, nl = strlen(name);
    while (i < len && (msg[i] == ' ' || msg[i] == '\t' || msg[i] == '\r' || msg[i] == '\n'))
        i++;
    if (len - i < nl + 2 || msg[i] != '<' || memcmp(msg + i + 1, name, nl))
        return 0;
    char after = msg[i + 1 + nl];
    return after == ' ' || after == '/' || after == '>' || after == '\t' || after == '\r' || after == '\n';
}

static void ws_xmpp_attr(strbuf_t *sb, const char *name, const char *value)
{
    if (!value)
        return;
    strbuf_printf(sb, " %s='", name);
    xml_escape(sb, value, strlen(value), 1);
    strbuf_putc(sb, '\'');
}

/* <open/>: parsed on its own (small, once per stream), checked, and given to
 * the stream parser as the header it stands for. */
static int ws_xmpp_on_open(client_t *c, const char *msg, size_t len)
{
    xml_limits_t lim;
    xml_limits_default(&lim);
    lim.max_stanza_bytes = lim.max_text = 4096;
    char err[128];
    unsigned line;
    xml_node_t *open = xml_parse_document(msg, len, &lim, err, sizeof err, &line);
    if (!open)
        return ws_xmpp_refuse(c, "not-well-formed", "bad <open/>");
    if (strcmp(open->ns, NS_FRAMING)) {
        xml_free(open);
        return ws_xmpp_refuse(c, "invalid-namespace", NULL);
    }
    strbuf_t hdr;
    strbuf_init(&hdr);
    strbuf_puts(&hdr, "<stream:stream xmlns='" NS_CLIENT "' xmlns:stream='" XML_NS_STREAM "'");
    ws_xmpp_attr(&hdr, "to", xml_attr_get(open, "to"));
    ws_xmpp_attr(&hdr, "from", xml_attr_get(open, "from"));
    ws_xmpp_attr(&hdr, "version", xml_attr_get(open, "version"));
    ws_xmpp_attr(&hdr, "xml:lang", xml_attr_get_ns(open, XML_NS_XML, "lang"));
    strbuf_putc(&hdr, '>');
    xml_free(open);
    int rc = client_feed_xml(c, hdr.data, hdr.len);
    strbuf_free(&hdr);
    return rc;
}

int ws_xmpp_message(client_t *c, char *msg, size_t len)
{
    if (ws_xmpp_starts(msg, len, "open")) {
        if (c->want_header)
            return ws_xmpp_on_open(c, msg, len);
        return ws_xmpp_refuse(c, "policy-violation", "<open/> without a stream restart");
    }
    if (ws_xmpp_starts(msg, len, "close")) {
        log_debug("event=websocket-stream-close peer=%s sid=%s", c->peer, c->sid_str);
        if (!c->want_header) {
            client_feed_xml(c, "</stream:stream>", 16);   /* answered and closed like on TCP */
            return -1;
        }
        ws_xmpp_close(c);
        client_close(c, CLOSE_END);
        return -1;
    }
    if (c->want_header)
        return ws_xmpp_refuse(c, "not-authorized", "the stream starts with <open/> (RFC 7395 3.4)");
    if (client_feed_xml(c, msg, len) < 0)
        return -1;
    if (xml_stream_in_stanza(c->xs))
        return ws_xmpp_refuse(c, "not-well-formed", "a WebSocket message holds whole elements (RFC 7395 3.3.3)");
    return 0;
}

void ws_xmpp_open(client_t *c, const char *to_attr, const char *id)
{
    strbuf_t sb;
    strbuf_init(&sb);
    strbuf_puts(&sb, "<open xmlns='" NS_FRAMING "'");
    ws_xmpp_attr(&sb, "from", c2s_config->domain);
    ws_xmpp_attr(&sb, "to", to_attr);
    ws_xmpp_attr(&sb, "id", id);
    strbuf_puts(&sb, " version='1.0'");
    ws_xmpp_attr(&sb, "xml:lang", c->lang);
    strbuf_puts(&sb, "/>");
    client_write(c, sb.data, sb.len);
    strbuf_free(&sb);
}

void ws_xmpp_stream_error(client_t *c, const char *condition, const char *text, const char *host)
{
    strbuf_t sb;
    strbuf_init(&sb);
    strbuf_puts(&sb, "<stream:error xmlns:stream='" XML_NS_STREAM "'>");
    if (host) {
        strbuf_printf(&sb, "<%s xmlns='" NS_STREAMS "'>", condition);
        xml_escape(&sb, host, strlen(host), 0);
        strbuf_printf(&sb, "</%s>", condition);
    } else {
        strbuf_printf(&sb, "<%s xmlns='" NS_STREAMS "'/>", condition);
    }
    if (text) {
        strbuf_puts(&sb, "<text xmlns='" NS_STREAMS "'>");
        xml_escape(&sb, text, strlen(text), 0);
        strbuf_puts(&sb, "</text>");
    }
    strbuf_puts(&sb, "</stream:error>");
    client_write(c, sb.data, sb.len);
    strbuf_free(&sb);
    ws_xmpp_close(c);
}

void ws_xmpp_close(client_t *c)
{
    static const char close_el[] = "<close xmlns='" NS_FRAMING "'/>";
    client_write(c, close_el, sizeof close_el - 1);
}
