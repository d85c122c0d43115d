/* metrics_process: the standard process_* metrics of Prometheus client
 * libraries (CPU time, resident and virtual memory, open descriptors, start
 * time), read from /proc/self at each scrape. */
#ifndef WEFT_METRICS_PROCESS_H
#define WEFT_METRICS_PROCESS_H

/* Registers the families and their collector; call once at start. */
void metrics_process_register(void);

#endif
