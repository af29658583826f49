/* Target selection, pure over an immutable snapshot (no sockets, no events):
 * the target group algorithms, slow start, and the weighted choice between
 * the groups of a forward action. Unit tested without a proxy.
 *
 * Algorithms (wh_tg_snapshot.algorithm):
 *  - round_robin: members in turn, from the caller's cursor.
 *  - least_outstanding_requests: the member with the fewest requests in
 *    flight (wh_target.in_flight, shared by every worker thread); ties are
 *    broken round robin from the cursor, so equal targets take turns.
 *  - weighted_random: a member with probability proportional to
 *    weight x slow-start factor.
 * Slow start: while a member is in slow start (snapshot->slow_start > 0 and
 * now - member->slow_start_begin < snapshot->slow_start, with
 * slow_start_begin > 0), its factor ramps linearly from WH_SLOW_START_FLOOR
 * to 1 over snapshot->slow_start seconds. weighted_random multiplies the
 * weight by it; round_robin and least_outstanding_requests admit such a
 * member with probability = factor (else move on to the next candidate), so
 * its share ramps the same way.
 *
 * balance.c also picks from a worker's view of a group (its current
 * snapshot): wh_balance_group_pick and wh_balance_group_find, declared in
 * proxy-int.h with the worker's types.
 */
#ifndef WHARF_PROXY_BALANCE_H
#define WHARF_PROXY_BALANCE_H

#include <stdint.h>

#include "wharf/targets.h"

#define WH_SLOW_START_FLOOR 0.1

struct wh_action;

/* Per worker and group: the round-robin cursor and the random state. */
struct wh_balance_state {
    unsigned rr_next;
    uint64_t rng; /* never 0 */
};

/* Fast xorshift64*; state must be non-zero. */
uint64_t wh_balance_rand(uint64_t *state);

/* The slow-start factor of m at monotonic time now: 1 when not in slow
 * start, else in [WH_SLOW_START_FLOOR, 1). */
double wh_slow_start_factor(const struct wh_tg_snapshot *snap, const struct wh_tg_member *m,
                            double now);

/* Index of the member of snap to send the next request to, never the one
 * whose target is exclude (may be NULL); -1 when snap offers no other
 * member. now is CLOCK_MONOTONIC seconds (only read when slow start is on).
 * Never allocates. */
int wh_balance_pick(const struct wh_tg_snapshot *snap, struct wh_balance_state *st,
                    const struct wh_target *exclude, double now);

/* Index in a->groups of the group a forward action sends this request to,
 * with probability weight / total_weight (weight 0: never). */
int wh_forward_pick(const struct wh_action *a, uint64_t *rng);

#endif
