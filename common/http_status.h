/* http_status: the reason phrase of each HTTP status code weft's HTTP
 * sides answer with (c2s's WebSocket upgrade and host-meta, weft-upload),
 * one table for all of them. */
#ifndef WEFT_HTTP_STATUS_H
#define WEFT_HTTP_STATUS_H

/* "Not Found" for 404; "Error" for a code not in the table. */
const char *http_status_text(int status);

#endif
