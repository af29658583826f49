/* Placement of new tasks (ECS's task placement on the user's hosts):
 * constraints filter the hosts, strategies in order narrow them, and the
 * survivors' tie is broken by the fewest tasks of the service, then by the
 * hosts' order. Every pick is followed by a commit, so k tasks placed in a
 * row see each other (6 tasks spread by az over 2 AZs go 3/3). */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>

#include "wharf/query.h"
#include "controller/plan.h"

struct place_host {
    const struct wh_plan_host *h;
    long cpu_free, memory_free;
    int n_service;        /* tasks of the current service */
    unsigned char member; /* meets the current service's memberOf constraints */
};

/* A spread field's value ids per host, made once per plan. */
struct place_field {
    const char *attribute; /* NULL = instanceId */
    int *value_of;
    int n_values;
};

struct place_id {
    const char *id;
    long host;
};

struct wh_place_fleet {
    struct place_host *hosts;
    size_t n;
    struct place_id *by_id; /* sorted by id */
    struct place_field *fields;
    size_t n_fields, cap_fields;
    long *cand;   /* scratch: the candidates of a pick */
    long *keys;   /* scratch: their keys under one strategy */
    int *counts;  /* scratch: tasks per spread value */
    int distinct; /* the current service has distinctInstance */
};

const char *wh_plan_host_attr(const struct wh_plan_host *h, const char *name)
{
    if (strcmp(name, "instanceId") == 0)
        return h->id;
    if (strcmp(name, "ecs.availability-zone") == 0)
        name = "az";
    else if (strcmp(name, "ecs.instance-type") == 0)
        name = "instance_type";
    for (size_t i = 0; i < h->n_attributes; i++)
        if (strcmp(h->attributes[i].name, name) == 0)
            return h->attributes[i].value;
    return NULL;
}

int wh_place_strategy_parse(const char *type, const char *field, struct wh_place_strategy *out,
                            char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    field = field ? field : "";
    if (strcmp(type, "spread") == 0) {
        out->type = WH_PLACE_SPREAD;
        /* ECS takes "host" as another name of instanceId. */
        if (strcmp(field, "instanceId") == 0 || strcmp(field, "host") == 0)
            return 0;
        if (strncmp(field, "attribute:", 10) == 0 && field[10]) {
            out->attribute = field + 10;
            return 0;
        }
        snprintf(err, errlen, "a spread field is instanceId or attribute:NAME, not '%s'", field);
        return -1;
    }
    if (strcmp(type, "binpack") == 0) {
        out->type = WH_PLACE_BINPACK;
        if (strcmp(field, "cpu") == 0 || strcmp(field, "memory") == 0) {
            out->resource = field[0] == 'c' ? WH_PLACE_CPU : WH_PLACE_MEMORY;
            return 0;
        }
        snprintf(err, errlen, "a binpack field is cpu or memory, not '%s'", field);
        return -1;
    }
    if (strcmp(type, "random") == 0) {
        out->type = WH_PLACE_RANDOM;
        if (!field[0])
            return 0;
        snprintf(err, errlen, "random takes no field, not '%s'", field);
        return -1;
    }
    snprintf(err, errlen, "a placement strategy is spread, binpack or random, not '%s'", type);
    return -1;
}

/* ---- the fleet ---- */

static int place_id_cmp(const void *a, const void *b)
{
    return strcmp(((const struct place_id *)a)->id, ((const struct place_id *)b)->id);
}

struct wh_place_fleet *wh_place_fleet_new(const struct wh_plan_host *hosts, size_t n_hosts)
{
    struct wh_place_fleet *f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    f->n = n_hosts;
    f->hosts = calloc(n_hosts + 1, sizeof(*f->hosts));
    f->by_id = calloc(n_hosts + 1, sizeof(*f->by_id));
    f->cand = calloc(n_hosts + 1, sizeof(*f->cand));
    f->keys = calloc(n_hosts + 1, sizeof(*f->keys));
    f->counts = calloc(n_hosts + 2, sizeof(*f->counts));
    if (!f->hosts || !f->by_id || !f->cand || !f->keys || !f->counts) {
        wh_place_fleet_free(f);
        return NULL;
    }
    for (size_t i = 0; i < n_hosts; i++) {
        const struct wh_plan_host *h = &hosts[i];
        f->hosts[i] = (struct place_host){.h = h,
                                          .cpu_free = h->cpu_total - h->cpu_reserved,
                                          .memory_free = h->memory_total - h->memory_reserved};
        f->by_id[i] = (struct place_id){.id = h->id, .host = (long)i};
    }
    qsort(f->by_id, n_hosts, sizeof(*f->by_id), place_id_cmp);
    return f;
}

void wh_place_fleet_free(struct wh_place_fleet *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->n_fields; i++)
        free(f->fields[i].value_of);
    free(f->fields);
    free(f->hosts);
    free(f->by_id);
    free(f->cand);
    free(f->keys);
    free(f->counts);
    free(f);
}

long wh_place_fleet_find(const struct wh_place_fleet *f, const char *id)
{
    if (!id)
        return -1;
    struct place_id key = {.id = id};
    const struct place_id *found = bsearch(&key, f->by_id, f->n, sizeof(*f->by_id), place_id_cmp);
    return found ? found->host : -1;
}

void wh_place_fleet_reserve(struct wh_place_fleet *f, long host, long cpu, long memory)
{
    f->hosts[host].cpu_free -= cpu;
    f->hosts[host].memory_free -= memory;
}

static int place_same(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

/* Value ids of a field over the hosts: first come, first numbered. */
static int place_field_fill(struct wh_place_fleet *f, struct place_field *pf)
{
    pf->value_of = malloc((f->n + 1) * sizeof(*pf->value_of));
    const char **first = malloc((f->n + 1) * sizeof(*first)); /* each value, once */
    if (!pf->value_of || !first) {
        free(pf->value_of);
        free(first);
        return -1;
    }
    pf->n_values = 0;
    for (size_t i = 0; i < f->n; i++) {
        if (!pf->attribute) {
            pf->value_of[i] = (int)i;
            continue;
        }
        const char *v = wh_plan_host_attr(f->hosts[i].h, pf->attribute);
        int id = 0;
        while (id < pf->n_values && !place_same(first[id], v))
            id++;
        if (id == pf->n_values)
            first[pf->n_values++] = v;
        pf->value_of[i] = id;
    }
    if (!pf->attribute)
        pf->n_values = (int)f->n;
    free(first);
    return 0;
}

static const struct place_field *place_field(struct wh_place_fleet *f, const char *attribute)
{
    for (size_t i = 0; i < f->n_fields; i++)
        if (place_same(f->fields[i].attribute, attribute))
            return &f->fields[i];
    if (f->n_fields == f->cap_fields) {
        size_t cap = f->cap_fields ? f->cap_fields * 2 : 4;
        struct place_field *fields = realloc(f->fields, cap * sizeof(*fields));
        if (!fields)
            return NULL;
        f->fields = fields;
        f->cap_fields = cap;
    }
    struct place_field *pf = &f->fields[f->n_fields];
    pf->attribute = attribute;
    if (place_field_fill(f, pf) < 0)
        return NULL;
    f->n_fields++;
    return pf;
}

int wh_place_spread_value(struct wh_place_fleet *f, const char *attribute, long host, int *n_values)
{
    const struct place_field *pf = place_field(f, attribute);
    if (!pf)
        return -1;
    *n_values = pf->n_values;
    return pf->value_of[host];
}

/* ---- per service ---- */

static const char *place_lookup(void *arg, const char *name)
{
    return wh_plan_host_attr(arg, name);
}

static int place_member(const struct wh_plan_service *svc, const struct wh_plan_host *h)
{
    for (size_t c = 0; c < svc->n_constraints; c++) {
        const struct wh_place_constraint *pc = &svc->constraints[c];
        if (pc->type == WH_PLACE_MEMBER_OF && pc->query &&
            !wh_query_match(pc->query, place_lookup, (void *)h))
            return 0;
    }
    return 1;
}

int wh_place_service_begin(struct wh_place_fleet *f, const struct wh_plan_service *svc)
{
    f->distinct = 0;
    for (size_t c = 0; c < svc->n_constraints; c++)
        f->distinct |= svc->constraints[c].type == WH_PLACE_DISTINCT_INSTANCE;
    for (size_t i = 0; i < f->n; i++) {
        f->hosts[i].n_service = 0;
        f->hosts[i].member = (unsigned char)place_member(svc, f->hosts[i].h);
    }
    /* Made now so that a pick cannot fail for want of memory. */
    for (size_t s = 0; s < svc->n_strategies; s++)
        if (svc->strategies[s].type == WH_PLACE_SPREAD &&
            !place_field(f, svc->strategies[s].attribute))
            return -1;
    return 0;
}

void wh_place_service_count(struct wh_place_fleet *f, long host, int delta)
{
    f->hosts[host].n_service += delta;
}

int wh_place_service_tasks(const struct wh_place_fleet *f, long host)
{
    return f->hosts[host].n_service;
}

static int place_eligible(const struct wh_place_fleet *f, const struct wh_plan_service *svc,
                          const struct place_host *ph)
{
    return ph->h->state == WH_PLAN_HOST_ACTIVE && ph->member && ph->cpu_free >= svc->cpu &&
           ph->memory_free >= svc->memory && !(f->distinct && ph->n_service > 0);
}

/* Keeps the candidates whose key equals the smallest. */
static size_t place_keep_min(long *cand, size_t k, const long *key)
{
    long best = key[0];
    for (size_t i = 1; i < k; i++)
        if (key[i] < best)
            best = key[i];
    size_t kept = 0;
    for (size_t i = 0; i < k; i++)
        if (key[i] == best)
            cand[kept++] = cand[i];
    return kept;
}

static uint64_t place_rand(uint64_t *state)
{
    /* splitmix64: tiny, and the same sequence on every platform. */
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The fewest tasks of the service in the candidate's value of the field,
 * counting every host (a full AZ still counts its tasks). */
static void place_spread_keys(struct wh_place_fleet *f, const struct place_field *pf, size_t k,
                              long *key)
{
    memset(f->counts, 0, (size_t)(pf->n_values + 1) * sizeof(*f->counts));
    for (size_t i = 0; i < f->n; i++)
        f->counts[pf->value_of[i]] += f->hosts[i].n_service;
    for (size_t i = 0; i < k; i++)
        key[i] = f->counts[pf->value_of[f->cand[i]]];
}

static size_t place_apply(struct wh_place_fleet *f, const struct wh_plan_service *svc,
                          const struct wh_place_strategy *s, long *key, size_t k, uint64_t *rng)
{
    long *cand = f->cand;
    switch (s->type) {
    case WH_PLACE_SPREAD:
        place_spread_keys(f, place_field(f, s->attribute), k, key);
        break;
    case WH_PLACE_BINPACK:
        /* What would remain after this task: the least wins. */
        for (size_t i = 0; i < k; i++) {
            const struct place_host *ph = &f->hosts[cand[i]];
            key[i] = s->resource == WH_PLACE_CPU ? ph->cpu_free - svc->cpu
                                                 : ph->memory_free - svc->memory;
        }
        break;
    case WH_PLACE_RANDOM:
        cand[0] = cand[place_rand(rng) % k];
        return 1;
    }
    return place_keep_min(cand, k, key);
}

long wh_place_pick(struct wh_place_fleet *f, const struct wh_plan_service *svc, uint64_t *rng)
{
    size_t k = 0;
    for (size_t i = 0; i < f->n; i++)
        if (place_eligible(f, svc, &f->hosts[i]))
            f->cand[k++] = (long)i;
    if (k == 0)
        return -1;
    for (size_t s = 0; s < svc->n_strategies && k > 1; s++)
        k = place_apply(f, svc, &svc->strategies[s], f->keys, k, rng);
    long best = f->cand[0];
    for (size_t i = 1; i < k; i++)
        if (f->hosts[f->cand[i]].n_service < f->hosts[best].n_service)
            best = f->cand[i];
    return best;
}

void wh_place_commit(struct wh_place_fleet *f, const struct wh_plan_service *svc, long host)
{
    wh_place_fleet_reserve(f, host, svc->cpu, svc->memory);
    f->hosts[host].n_service++;
}
