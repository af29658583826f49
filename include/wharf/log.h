/* wharf logging: one line per message to stderr, "time level module: text".
 * The level is the only mutable global besides signal flags (STYLE.md). */
#ifndef WHARF_LOG_H
#define WHARF_LOG_H

enum wh_log_level { WH_LOG_ERROR = 0, WH_LOG_WARN, WH_LOG_INFO, WH_LOG_DEBUG };

void wh_log_set_level(enum wh_log_level level);
enum wh_log_level wh_log_get_level(void);
void wh_log(enum wh_log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define WH_ERR_LEN 512

#define wh_log_error(mod, ...) wh_log(WH_LOG_ERROR, mod, __VA_ARGS__)
#define wh_log_warn(mod, ...) wh_log(WH_LOG_WARN, mod, __VA_ARGS__)
#define wh_log_info(mod, ...) wh_log(WH_LOG_INFO, mod, __VA_ARGS__)
#define wh_log_debug(mod, ...)                                                                     \
    do {                                                                                           \
        if (wh_log_get_level() >= WH_LOG_DEBUG)                                                    \
            wh_log(WH_LOG_DEBUG, mod, __VA_ARGS__);                                                \
    } while (0)

#endif
