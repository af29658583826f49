/* The ECS cluster query language (include/wharf/query.h): a recursive
 * descent parser into a node array, and a matcher over it. Recursion is
 * bounded by WH_QUERY_MAX_DEPTH (counted on every '(' and not), and chains
 * of and/or become one n-ary node, so neither parsing nor matching can be
 * driven deep by long input. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wharf/query.h"

#define QUERY_NAME_MAX 128 /* ECS's limit on an attribute name */

enum query_kind { QUERY_OR, QUERY_AND, QUERY_NOT, QUERY_TEST };

enum query_op {
    QUERY_EQ,
    QUERY_NE,
    QUERY_IN,
    QUERY_NOT_IN,
    QUERY_MATCH,
    QUERY_NOT_MATCH,
    QUERY_EXISTS,
    QUERY_NOT_EXISTS,
};

struct query_node {
    enum query_kind kind;
    enum query_op op;   /* QUERY_TEST */
    int first;          /* OR, AND, NOT: first child */
    int next;           /* next sibling under an OR or AND, -1 = last */
    const char *name;   /* QUERY_TEST: the attribute looked up */
    size_t first_value; /* QUERY_TEST: its values in wh_query.values */
    size_t n_values;
};

struct wh_query {
    char *text;
    char *strings; /* names and unquoted values, each NUL-ended */
    size_t strings_used;
    struct query_node *nodes;
    size_t n_nodes, cap_nodes;
    const char **values;
    size_t n_values, cap_values;
    int root;
};

struct query_parser {
    struct wh_query *q;
    const char *text;
    size_t pos;
    int depth;
    char *err;
    size_t errlen;
    int failed;
};

/* Records the first error only: later ones follow from it. */
__attribute__((format(printf, 3, 4))) static void query_fail(struct query_parser *p, size_t pos,
                                                             const char *fmt, ...)
{
    if (p->failed)
        return;
    p->failed = 1;
    if (!p->err || p->errlen == 0)
        return;
    int n = snprintf(p->err, p->errlen, "column %zu: ", pos + 1);
    if (n < 0 || (size_t)n >= p->errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
    va_end(ap);
}

static int query_new_node(struct query_parser *p, enum query_kind kind)
{
    struct wh_query *q = p->q;
    if (q->n_nodes == q->cap_nodes) {
        size_t cap = q->cap_nodes ? q->cap_nodes * 2 : 8;
        struct query_node *nodes = realloc(q->nodes, cap * sizeof(*nodes));
        if (!nodes) {
            query_fail(p, p->pos, "out of memory");
            return -1;
        }
        q->nodes = nodes;
        q->cap_nodes = cap;
    }
    struct query_node *n = &q->nodes[q->n_nodes];
    memset(n, 0, sizeof(*n));
    n->kind = kind;
    n->first = -1;
    n->next = -1;
    return (int)q->n_nodes++;
}

static int query_add_value(struct query_parser *p, const char *value)
{
    struct wh_query *q = p->q;
    if (q->n_values == q->cap_values) {
        size_t cap = q->cap_values ? q->cap_values * 2 : 8;
        const char **values = realloc(q->values, cap * sizeof(*values));
        if (!values) {
            query_fail(p, p->pos, "out of memory");
            return -1;
        }
        q->values = values;
        q->cap_values = cap;
    }
    q->values[q->n_values++] = value;
    return 0;
}

/* Room was sized at parse start: every copied byte comes from the text. */
static char *query_string_start(struct query_parser *p)
{
    return p->q->strings + p->q->strings_used;
}

static void query_string_put(struct query_parser *p, char c)
{
    p->q->strings[p->q->strings_used++] = c;
}

/* ---- lexing ---- */

static char query_peek(const struct query_parser *p)
{
    return p->text[p->pos];
}

static void query_skip_space(struct query_parser *p)
{
    while (isspace((unsigned char)p->text[p->pos]))
        p->pos++;
}

static int query_is_name_char(char c)
{
    return isalnum((unsigned char)c) || c == '.' || c == '_' || c == '/' || c == '-';
}

/* The word at pos when it is `word` (case-insensitive) and ends there;
 * consumes it. */
static int query_keyword(struct query_parser *p, const char *word)
{
    size_t n = strlen(word);
    if (strncasecmp(p->text + p->pos, word, n) != 0 || query_is_name_char(p->text[p->pos + n]))
        return 0;
    p->pos += n;
    return 1;
}

static int query_symbol(struct query_parser *p, const char *sym)
{
    size_t n = strlen(sym);
    if (strncmp(p->text + p->pos, sym, n) != 0)
        return 0;
    p->pos += n;
    return 1;
}

/* ---- grammar ---- */

static int query_parse_or(struct query_parser *p);

/* A value: bare up to a delimiter, or 'quoted' with \' and \\. */
static const char *query_parse_value(struct query_parser *p)
{
    query_skip_space(p);
    size_t start = p->pos;
    char *out = query_string_start(p);
    if (query_peek(p) == '\'') {
        p->pos++;
        for (;;) {
            char c = query_peek(p);
            if (c == '\0') {
                query_fail(p, start, "unterminated quoted value (a ' is missing)");
                return NULL;
            }
            p->pos++;
            if (c == '\'')
                break;
            if (c == '\\' && (query_peek(p) == '\'' || query_peek(p) == '\\'))
                c = p->text[p->pos++];
            query_string_put(p, c);
        }
    } else {
        while (query_peek(p) && !isspace((unsigned char)query_peek(p)) &&
               !strchr(",[]()'&|", query_peek(p)))
            query_string_put(p, p->text[p->pos++]);
        if (p->pos == start) {
            query_fail(p, start, "expected a value");
            return NULL;
        }
    }
    query_string_put(p, '\0');
    return out;
}

/* The argument of in / not_in: [v, ...] with at least one value. */
static int query_parse_list(struct query_parser *p, size_t *n_values)
{
    query_skip_space(p);
    if (!query_symbol(p, "[")) {
        query_fail(p, p->pos, "expected '[' to start the list of values");
        return -1;
    }
    for (;;) {
        const char *v = query_parse_value(p);
        if (!v || query_add_value(p, v) < 0)
            return -1;
        (*n_values)++;
        query_skip_space(p);
        if (query_symbol(p, "]"))
            return 0;
        if (!query_symbol(p, ",")) {
            query_fail(p, p->pos, "expected ',' or ']' in the list of values");
            return -1;
        }
    }
}

static int query_parse_operator(struct query_parser *p, enum query_op *op)
{
    static const struct {
        const char *text;
        int symbol; /* 1: punctuation, matched as is; 0: a word */
        enum query_op op;
    } ops[] = {
        {"==", 1, QUERY_EQ},         {"!=", 1, QUERY_NE},
        {"=~", 1, QUERY_MATCH},      {"!~", 1, QUERY_NOT_MATCH},
        {"!in", 0, QUERY_NOT_IN},    {"!exists", 0, QUERY_NOT_EXISTS},
        {"equals", 0, QUERY_EQ},     {"not_equals", 0, QUERY_NE},
        {"in", 0, QUERY_IN},         {"not_in", 0, QUERY_NOT_IN},
        {"matches", 0, QUERY_MATCH}, {"not_matches", 0, QUERY_NOT_MATCH},
        {"exists", 0, QUERY_EXISTS}, {"not_exists", 0, QUERY_NOT_EXISTS},
    };
    query_skip_space(p);
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        if (ops[i].symbol ? query_symbol(p, ops[i].text) : query_keyword(p, ops[i].text)) {
            *op = ops[i].op;
            return 0;
        }
    }
    query_fail(p, p->pos,
               "expected an operator (==, !=, in, not_in, =~, !~, exists, !exists) after the "
               "subject");
    return -1;
}

/* attribute:NAME or ec2InstanceId, copied into the strings. */
static const char *query_parse_subject(struct query_parser *p)
{
    size_t start = p->pos;
    if (query_keyword(p, "ec2InstanceId")) {
        char *out = query_string_start(p);
        for (const char *s = WH_QUERY_INSTANCE_ID; *s; s++)
            query_string_put(p, *s);
        query_string_put(p, '\0');
        return out;
    }
    if (strncmp(p->text + p->pos, "attribute:", 10) != 0) {
        query_fail(p, start, "expected attribute:NAME, ec2InstanceId, not or '('");
        return NULL;
    }
    p->pos += 10;
    char *out = query_string_start(p);
    size_t name_start = p->pos;
    while (query_is_name_char(query_peek(p)))
        query_string_put(p, p->text[p->pos++]);
    size_t len = p->pos - name_start;
    if (len == 0 || len > QUERY_NAME_MAX) {
        query_fail(p, name_start, "an attribute name is 1 to %d of A-Z a-z 0-9 . _ / -",
                   QUERY_NAME_MAX);
        return NULL;
    }
    query_string_put(p, '\0');
    return out;
}

static int query_parse_test(struct query_parser *p)
{
    const char *name = query_parse_subject(p);
    if (!name)
        return -1;
    enum query_op op;
    if (query_parse_operator(p, &op) < 0)
        return -1;
    size_t first_value = p->q->n_values, n_values = 0;
    if (op == QUERY_IN || op == QUERY_NOT_IN) {
        if (query_parse_list(p, &n_values) < 0)
            return -1;
    } else if (op != QUERY_EXISTS && op != QUERY_NOT_EXISTS) {
        const char *v = query_parse_value(p);
        if (!v || query_add_value(p, v) < 0)
            return -1;
        n_values = 1;
    }
    int i = query_new_node(p, QUERY_TEST);
    if (i < 0)
        return -1;
    struct query_node *n = &p->q->nodes[i];
    n->op = op;
    n->name = name;
    n->first_value = first_value;
    n->n_values = n_values;
    return i;
}

static int query_enter(struct query_parser *p, size_t start)
{
    if (++p->depth > WH_QUERY_MAX_DEPTH) {
        query_fail(p, start, "nested deeper than %d parentheses or nots", WH_QUERY_MAX_DEPTH);
        return -1;
    }
    return 0;
}

/* not X, ( X ), or a test. */
static int query_parse_unary(struct query_parser *p)
{
    query_skip_space(p);
    size_t start = p->pos;
    if (query_peek(p) == '\0') {
        query_fail(p, start, "expression ends too early");
        return -1;
    }
    if (query_keyword(p, "not") ||
        (query_peek(p) == '!' && !strchr("=~", p->text[p->pos + 1]) && query_symbol(p, "!"))) {
        if (query_enter(p, start) < 0)
            return -1;
        int child = query_parse_unary(p);
        p->depth--;
        int i = child < 0 ? -1 : query_new_node(p, QUERY_NOT);
        if (i >= 0)
            p->q->nodes[i].first = child;
        return i;
    }
    if (query_symbol(p, "(")) {
        if (query_enter(p, start) < 0)
            return -1;
        int i = query_parse_or(p);
        p->depth--;
        if (i < 0)
            return -1;
        query_skip_space(p);
        if (!query_symbol(p, ")")) {
            query_fail(p, p->pos, "expected ')' to close the '(' at column %zu", start + 1);
            return -1;
        }
        return i;
    }
    return query_parse_test(p);
}

static int query_next_is(struct query_parser *p, enum query_kind kind)
{
    query_skip_space(p);
    if (kind == QUERY_AND)
        return query_keyword(p, "and") || query_symbol(p, "&&");
    return query_keyword(p, "or") || query_symbol(p, "||");
}

/* operand { op operand }: one n-ary node when the operator appears. */
static int query_parse_chain(struct query_parser *p, enum query_kind kind)
{
    int first = kind == QUERY_AND ? query_parse_unary(p) : query_parse_chain(p, QUERY_AND);
    if (first < 0 || !query_next_is(p, kind))
        return first;
    int node = query_new_node(p, kind);
    if (node < 0)
        return -1;
    p->q->nodes[node].first = first;
    int last = first;
    do {
        int next = kind == QUERY_AND ? query_parse_unary(p) : query_parse_chain(p, QUERY_AND);
        if (next < 0)
            return -1;
        p->q->nodes[last].next = next;
        last = next;
    } while (query_next_is(p, kind));
    return node;
}

static int query_parse_or(struct query_parser *p)
{
    return query_parse_chain(p, QUERY_OR);
}

struct wh_query *wh_query_parse(const char *text, char *err, size_t errlen)
{
    struct query_parser p = {.text = text, .err = err, .errlen = errlen};
    if (err && errlen)
        err[0] = '\0';
    size_t len = strnlen(text, WH_QUERY_MAX_LEN + 1);
    if (len > WH_QUERY_MAX_LEN) {
        query_fail(&p, WH_QUERY_MAX_LEN, "the expression is longer than %d characters",
                   WH_QUERY_MAX_LEN);
        return NULL;
    }
    struct wh_query *q = calloc(1, sizeof(*q));
    if (!q || !(q->text = strdup(text)) || !(q->strings = malloc(2 * len + 2))) {
        query_fail(&p, 0, "out of memory");
        wh_query_free(q);
        return NULL;
    }
    p.q = q;
    query_skip_space(&p);
    if (query_peek(&p) == '\0')
        query_fail(&p, 0, "empty expression");
    else
        q->root = query_parse_or(&p);
    query_skip_space(&p);
    if (q->root >= 0 && query_peek(&p) != '\0')
        query_fail(&p, p.pos, "expected and, or, or the end of the expression");
    if (p.failed) {
        wh_query_free(q);
        return NULL;
    }
    return q;
}

/* ---- matching ---- */

/* Whole-string glob: '*' any run, '?' one byte. Iterative with one
 * backtracking point, so it stays O(len(value) * len(pattern)). */
static int query_glob(const char *pat, const char *s)
{
    const char *star = NULL, *resume = NULL;
    while (*s) {
        if (*pat == '*') {
            star = pat++;
            resume = s;
        } else if (*pat && (*pat == '?' || *pat == *s)) {
            pat++;
            s++;
        } else if (star) {
            pat = star + 1;
            s = ++resume;
        } else {
            return 0;
        }
    }
    while (*pat == '*')
        pat++;
    return *pat == '\0';
}

static int query_in(const struct wh_query *q, const struct query_node *n, const char *v)
{
    for (size_t i = 0; i < n->n_values; i++)
        if (strcmp(q->values[n->first_value + i], v) == 0)
            return 1;
    return 0;
}

static int query_test(const struct wh_query *q, const struct query_node *n, const char *v)
{
    switch (n->op) {
    case QUERY_EXISTS:
        return v != NULL;
    case QUERY_NOT_EXISTS:
        return v == NULL;
    case QUERY_EQ:
    case QUERY_IN:
        return v && query_in(q, n, v);
    case QUERY_NE:
    case QUERY_NOT_IN:
        return !v || !query_in(q, n, v);
    case QUERY_MATCH:
        return v && query_glob(q->values[n->first_value], v);
    case QUERY_NOT_MATCH:
        return !v || !query_glob(q->values[n->first_value], v);
    }
    return 0;
}

static int query_eval(const struct wh_query *q, int i, wh_query_lookup_fn lookup, void *arg)
{
    const struct query_node *n = &q->nodes[i];
    switch (n->kind) {
    case QUERY_TEST:
        return query_test(q, n, lookup(arg, n->name));
    case QUERY_NOT:
        return !query_eval(q, n->first, lookup, arg);
    case QUERY_AND:
    case QUERY_OR:
        for (int c = n->first; c >= 0; c = q->nodes[c].next)
            if (query_eval(q, c, lookup, arg) == (n->kind == QUERY_OR))
                return n->kind == QUERY_OR;
        return n->kind == QUERY_AND;
    }
    return 0;
}

int wh_query_match(const struct wh_query *q, wh_query_lookup_fn lookup, void *arg)
{
    return query_eval(q, q->root, lookup, arg);
}

const char *wh_query_text(const struct wh_query *q)
{
    return q->text;
}

void wh_query_free(struct wh_query *q)
{
    if (!q)
        return;
    free(q->text);
    free(q->strings);
    free(q->nodes);
    free(q->values);
    free(q);
}
