/* Magic-checked objects (after Varnish's miniobj.h).
 *
 * A struct that travels through `void *` (libevent and libcurl callbacks,
 * the worker pipe) carries `unsigned magic` set by WH_INIT_OBJ. The callback
 * checks it on entry with WH_CAST_OBJ / WH_CHECK_OBJ, so a wrong cast or a
 * use after free stops the daemon at once, naming the place, instead of
 * corrupting memory. WH_FREE_OBJ clears the magic before the memory goes. */
#ifndef WHARF_OBJ_H
#define WHARF_OBJ_H

#include <stdio.h>
#include <stdlib.h>

__attribute__((noreturn, cold)) static inline void wh_obj_bad(const char *what, const char *file,
                                                              int line)
{
    fprintf(stderr, "%s:%d: bad object (%s): wrong type or used after free\n", file, line, what);
    abort();
}

/* ptr must be non-NULL and carry magic. */
#define WH_CHECK_OBJ(ptr, type_magic)                                                              \
    do {                                                                                           \
        if ((ptr) == NULL || (ptr)->magic != (type_magic))                                         \
            wh_obj_bad(#ptr, __FILE__, __LINE__);                                                  \
    } while (0)

/* NULL is allowed; anything else must carry magic. */
#define WH_CHECK_OBJ_ORNULL(ptr, type_magic)                                                       \
    do {                                                                                           \
        if ((ptr) != NULL && (ptr)->magic != (type_magic))                                         \
            wh_obj_bad(#ptr, __FILE__, __LINE__);                                                  \
    } while (0)

/* to = from (a void * of a callback), checked. */
#define WH_CAST_OBJ(to, from, type_magic)                                                          \
    do {                                                                                           \
        (to) = (from);                                                                             \
        WH_CHECK_OBJ((to), (type_magic));                                                          \
    } while (0)

#define WH_INIT_OBJ(ptr, type_magic) ((ptr)->magic = (type_magic))

/* Clear the magic, free the object, NULL the pointer. */
#define WH_FREE_OBJ(ptr)                                                                           \
    do {                                                                                           \
        (ptr)->magic = 0;                                                                          \
        free(ptr);                                                                                 \
        (ptr) = NULL;                                                                              \
    } while (0)

#endif
