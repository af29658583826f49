/* The admin API's private helpers, shared by its endpoint files. */
#ifndef WHARF_API_INT_H
#define WHARF_API_INT_H

/* Split rest ("", "/", or "/a[/b...]", the path after an endpoint's prefix)
 * into at most max percent-decoded segments (malloc'ed: the caller frees
 * them); returns how many (0 for "" or "/"), or -1 when malformed: text
 * before the first '/', an empty segment, too many or too long ones. */
int wh_api_split_path(const char *rest, char **seg, int max);

#endif
