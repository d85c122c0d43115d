/* ws: c2s's WebSocket transport (RFC 6455 carrying RFC 7395 XMPP framing),
 * the one place where a WebSocket client differs from a TCP one.
 *
 * A client_t accepted on a websocket listener has c->ws set. client.c calls
 * in here at the transport's edges only, and runs the same session code for
 * both (SASL, bind, XEP-0198 with resumption, deliveries):
 *   in:  client_feed hands the plaintext to ws_conn_feed, which reads the
 *        HTTP request (ws_http.c: upgrade or host-meta), then frames, and
 *        gives each text message to ws_xmpp_message, which turns <open/> and
 *        <close/> into the stream header and end the XML stream parser
 *        expects (client_feed_xml);
 *   out: client_write sends each unit the session writes (an element, the
 *        features, an error) as one text message (ws_conn_send); the stream
 *        header, stream errors and the end become <open/>, <stream:error/>
 *        and <close/> (ws_xmpp.c).
 * TLS (wss) sits under all this exactly as for direct TLS clients, record
 * takeover included: the WebSocket bytes are what TLS carries. */
#ifndef WEFT_C2S_WS_H
#define WEFT_C2S_WS_H
#include "c2s.h"
#include "http_request.h"

#define NS_FRAMING "urn:ietf:params:xml:ns:xmpp-framing"

typedef struct ws_conn ws_conn_t;

/* ws_conn.c: one connection's HTTP and frame state. */
/* trusted: the connection counts as secure without TLS (loopback peer, or
 * websocket.trust-plain). */
ws_conn_t *ws_conn_new(int trusted);
void ws_conn_free(ws_conn_t *w);
int ws_conn_trusted(const ws_conn_t *w);
/* Bytes read from the connection (plaintext under TLS). 0, or -1 when c is
 * no longer one to read for (closed, detached). */
int ws_conn_feed(client_t *c, const char *data, size_t n);
/* Sends data as one text message; nothing before the upgrade or after the
 * close frame. */
void ws_conn_send(client_t *c, const char *data, size_t len);
/* The connection is upgraded and no close frame was sent. */
int ws_conn_is_open(const ws_conn_t *w);
/* Marks the upgrade done (ws_http.c, after the 101 response). */
void ws_conn_upgraded(ws_conn_t *w);
/* The close code that ws_conn_end will send (a protocol error sets it
 * before the stream error). */
void ws_conn_set_close_code(ws_conn_t *w, int code);
/* Sends the close frame once (client_close calls it). */
void ws_conn_end(client_t *c);
/* Pings a quiet connection (websocket.ping-interval). */
void ws_conn_cron(client_t *c, double now);

/* ws_http.c: the HTTP request on a websocket listener. Answers it: 101 and
 * the upgrade (returns 1), or host-meta, a refusal, and the connection
 * closing (returns 0). */
int ws_http_request(client_t *c, const http_request_t *req);
/* Answers a request the parser refused with status, and closes. */
void ws_http_refuse(client_t *c, int status);

/* ws_xmpp.c: RFC 7395 framing of the XMPP stream. */
/* A text message from the client (in place, may be changed). 0, or -1 when
 * c is no longer one to read for. */
int ws_xmpp_message(client_t *c, char *msg, size_t len);
/* Our <open/> (the stream header's place). */
void ws_xmpp_open(client_t *c, const char *to_attr, const char *id);
/* A stream error (condition, optional text, or a see-other-host host) and
 * <close/>. */
void ws_xmpp_stream_error(client_t *c, const char *condition, const char *text, const char *host);
/* <close/>: the stream's end (the place of </stream:stream>). */
void ws_xmpp_close(client_t *c);

#endif
