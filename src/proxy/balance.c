/* Target selection: the algorithms over an immutable snapshot (see
 * balance.h), and on top of them the pick from a worker's view of a group
 * (wh_balance_group_pick, wh_balance_group_find: proxy-int.h), the seam
 * every request's choice of target goes through.
 *
 * Every algorithm scans the members once or twice, from the caller's cursor,
 * and never allocates. Floating point is used only when the snapshot has
 * slow start on and some member is actually ramping; otherwise the weights
 * and the random draw stay integers. */
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "balance.h"
#include "proxy-int.h"
#include "rules.h"

uint64_t wh_balance_rand(uint64_t *state)
{
    uint64_t x = *state;
    if (x == 0) /* a zeroed state would stay zero forever */
        x = 0x9E3779B97F4A7C15ULL;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* A uniform double in [0, 1) from the top 53 bits of one draw. */
static double balance_unit(uint64_t *state)
{
    return (double)(wh_balance_rand(state) >> 11) * 0x1.0p-53;
}

/* True while m ramps: slow start on, begun, and not over at now. */
static inline int balance_ramping(const struct wh_tg_snapshot *snap, const struct wh_tg_member *m,
                                  double now)
{
    return m->slow_start_begin > 0 && now - m->slow_start_begin < snap->slow_start;
}

double wh_slow_start_factor(const struct wh_tg_snapshot *snap, const struct wh_tg_member *m,
                            double now)
{
    if (!(snap->slow_start > 0) || !balance_ramping(snap, m, now))
        return 1.0;
    double elapsed = now - m->slow_start_begin;
    if (elapsed < 0) /* now from before the ramp began: the start of the ramp */
        elapsed = 0;
    return WH_SLOW_START_FLOOR + (1.0 - WH_SLOW_START_FLOOR) * elapsed / snap->slow_start;
}

/* For round robin and least outstanding: does this candidate take the
 * request? A member at full share always does; a ramping one with
 * probability = its factor. */
static int balance_admit(int slow, const struct wh_tg_snapshot *snap, const struct wh_tg_member *m,
                         struct wh_balance_state *st, double now)
{
    if (!slow || !balance_ramping(snap, m, now))
        return 1;
    return balance_unit(&st->rng) < wh_slow_start_factor(snap, m, now);
}

static int balance_round_robin(const struct wh_tg_snapshot *snap, struct wh_balance_state *st,
                               const struct wh_target *exclude, double now)
{
    size_t n = snap->n, start = st->rr_next % n;
    int slow = snap->slow_start > 0;
    int plain = -1; /* the first candidate: the choice when every one declines */
    for (size_t k = 0; k < n; k++) {
        size_t i = start + k < n ? start + k : start + k - n;
        const struct wh_tg_member *m = &snap->members[i];
        if (m->target == exclude)
            continue;
        if (plain < 0)
            plain = (int)i;
        if (balance_admit(slow, snap, m, st, now)) {
            st->rr_next = (unsigned)(i + 1);
            return (int)i;
        }
    }
    if (plain >= 0)
        st->rr_next = (unsigned)plain + 1;
    return plain;
}

/* The fewest in flight, ties to the first from the cursor. A ramping
 * member that would win draws once to take it; losing the draw leaves it
 * out of this pick (drawing only when it matters gives the same odds as
 * drawing for everyone up front). */
static int balance_least_outstanding(const struct wh_tg_snapshot *snap, struct wh_balance_state *st,
                                     const struct wh_target *exclude, double now)
{
    size_t n = snap->n, start = st->rr_next % n;
    int slow = snap->slow_start > 0;
    int best = -1, plain = -1;
    int best_load = 0, plain_load = 0;
    for (size_t k = 0; k < n; k++) {
        size_t i = start + k < n ? start + k : start + k - n;
        const struct wh_tg_member *m = &snap->members[i];
        if (m->target == exclude)
            continue;
        int load = atomic_load_explicit(&m->target->in_flight, memory_order_relaxed);
        if (plain < 0 || load < plain_load) {
            plain = (int)i;
            plain_load = load;
        }
        if ((best < 0 || load < best_load) && balance_admit(slow, snap, m, st, now)) {
            best = (int)i;
            best_load = load;
        }
    }
    if (best < 0)
        best = plain;
    if (best >= 0)
        st->rr_next = (unsigned)best + 1;
    return best;
}

static int balance_weighted_random(const struct wh_tg_snapshot *snap, struct wh_balance_state *st,
                                   const struct wh_target *exclude, double now)
{
    size_t n = snap->n;
    uint64_t total = 0;
    int slow = snap->slow_start > 0;
    int ramping = 0, only = -1;
    for (size_t i = 0; i < n; i++) {
        const struct wh_tg_member *m = &snap->members[i];
        if (m->target == exclude || m->weight <= 0)
            continue;
        total += (uint64_t)m->weight;
        only = (int)i;
        if (slow && balance_ramping(snap, m, now))
            ramping = 1;
    }
    if (total == 0) /* nothing with a weight: weights are 1..999, so only exclude */
        return balance_round_robin(snap, st, exclude, now);
    if (!ramping) {
        /* total <= n * 999: the modulo bias is below 2^-40. */
        uint64_t r = wh_balance_rand(&st->rng) % total;
        for (size_t i = 0; i < n; i++) {
            const struct wh_tg_member *m = &snap->members[i];
            if (m->target == exclude || m->weight <= 0)
                continue;
            if (r < (uint64_t)m->weight)
                return (int)i;
            r -= (uint64_t)m->weight;
        }
        return only;
    }
    double ftotal = 0;
    for (size_t i = 0; i < n; i++) {
        const struct wh_tg_member *m = &snap->members[i];
        if (m->target != exclude && m->weight > 0)
            ftotal += m->weight * wh_slow_start_factor(snap, m, now);
    }
    double r = balance_unit(&st->rng) * ftotal;
    for (size_t i = 0; i < n; i++) {
        const struct wh_tg_member *m = &snap->members[i];
        if (m->target == exclude || m->weight <= 0)
            continue;
        double w = m->weight * wh_slow_start_factor(snap, m, now);
        if (r < w)
            return (int)i;
        r -= w;
    }
    return only; /* rounding left r just past the last share */
}

int wh_balance_pick(const struct wh_tg_snapshot *snap, struct wh_balance_state *st,
                    const struct wh_target *exclude, double now)
{
    if (!snap || snap->n == 0 || !snap->members)
        return -1;
    switch (snap->algorithm) {
    case WH_ALGO_LEAST_OUTSTANDING:
        return balance_least_outstanding(snap, st, exclude, now);
    case WH_ALGO_WEIGHTED_RANDOM:
        return balance_weighted_random(snap, st, exclude, now);
    case WH_ALGO_ROUND_ROBIN:
    default:
        return balance_round_robin(snap, st, exclude, now);
    }
}

int wh_forward_pick(const struct wh_action *a, uint64_t *rng)
{
    if (a->n_groups <= 1)
        return 0;
    uint64_t total = 0;
    int last = -1;
    for (size_t i = 0; i < a->n_groups; i++) {
        if (a->groups[i].weight > 0) {
            total += (uint64_t)a->groups[i].weight;
            last = (int)i;
        }
    }
    if (total == 0) /* validation forbids it; the first group then */
        return 0;
    uint64_t r = wh_balance_rand(rng) % total;
    for (size_t i = 0; i < a->n_groups; i++) {
        int w = a->groups[i].weight;
        if (w <= 0)
            continue;
        if (r < (uint64_t)w)
            return (int)i;
        r -= (uint64_t)w;
    }
    return last;
}

/* ---- a worker's group: its current snapshot ---- */

static double balance_monotonic_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct wh_target *wh_balance_group_pick(struct wh_group *g, const struct wh_target *exclude)
{
    const struct wh_tg_snapshot *snap = g->snap;
    if (!snap || snap->n == 0)
        return NULL;
    double now = snap->slow_start > 0 ? balance_monotonic_now() : 0;
    int i = wh_balance_pick(snap, &g->bal, exclude, now);
    if (i < 0)
        return NULL;
    if (snap->fail_open)
        atomic_fetch_add_explicit(&snap->counters->fail_open_requests, 1, memory_order_relaxed);
    return snap->members[i].target;
}

struct wh_target *wh_balance_group_find(struct wh_group *g, const char *addr, size_t len)
{
    const struct wh_tg_snapshot *snap = g->snap;
    if (!snap || snap->fail_open || len == 0)
        return NULL;
    for (size_t i = 0; i < snap->n; i++) {
        struct wh_target *t = snap->members[i].target;
        if (strlen(t->addr.text) == len && memcmp(t->addr.text, addr, len) == 0)
            return t;
    }
    return NULL;
}
