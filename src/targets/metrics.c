/* The registry's Prometheus text (wh_targets_write_metrics): per group, the
 * targets by state, state changes, fail-open episodes and requests,
 * responses by class and health checks by result; the health check
 * duration histogram over every group. */
#include <stdio.h>

#include <event2/buffer.h>

#include "targets/targets-int.h"

static void group_metrics(struct evbuffer *out, const struct wh_tg_group *g)
{
    size_t by_state[5] = {0};
    const struct wh_tg_target *t;
    TAILQ_FOREACH(t, &g->targets, link)
    by_state[t->pub.state]++;
    for (int s = 0; s < 5; s++)
        evbuffer_add_printf(out, "wharf_targets{group=\"%s\",state=\"%s\"} %zu\n", g->name,
                            wh_target_state_name((enum wh_target_state)s), by_state[s]);
    evbuffer_add_printf(out, "wharf_target_state_changes_total{group=\"%s\"} %llu\n", g->name,
                        (unsigned long long)g->state_changes);
    evbuffer_add_printf(out, "wharf_target_fail_open_total{group=\"%s\"} %llu\n", g->name,
                        (unsigned long long)g->fail_open_total);
    evbuffer_add_printf(out, "wharf_target_fail_open_requests_total{group=\"%s\"} %llu\n", g->name,
                        atomic_load(&g->counters.fail_open_requests));
    static const char *const classes[6] = {"none", "1xx", "2xx", "3xx", "4xx", "5xx"};
    for (int c = 0; c < 6; c++)
        evbuffer_add_printf(out,
                            "wharf_target_group_responses_total{group=\"%s\",class=\"%s\"} "
                            "%llu\n",
                            g->name, classes[c], atomic_load(&g->counters.responses[c]));
    for (int r = 0; r < WH_HC_N_RESULTS; r++)
        evbuffer_add_printf(out, "wharf_health_checks_total{group=\"%s\",result=\"%s\"} %llu\n",
                            g->name, wh_hc_result_name((enum wh_hc_result)r),
                            (unsigned long long)g->checks[r]);
}

void wh_targets_write_metrics(struct wh_targets *reg, struct evbuffer *out)
{
    const struct wh_tg_group *g;
    evbuffer_add_printf(out, "# TYPE wharf_targets gauge\n"
                             "# TYPE wharf_target_state_changes_total counter\n"
                             "# TYPE wharf_target_fail_open_total counter\n"
                             "# TYPE wharf_target_fail_open_requests_total counter\n"
                             "# TYPE wharf_target_group_responses_total counter\n"
                             "# TYPE wharf_health_checks_total counter\n");
    TAILQ_FOREACH(g, &reg->groups, link)
    if (g->in_config || g->n_targets)
        group_metrics(out, g);
    evbuffer_add_printf(out, "# TYPE wharf_health_check_duration_seconds histogram\n");
    uint64_t cum = 0;
    for (int b = 0; b < WH_HC_DURATION_BUCKETS; b++) {
        cum += reg->hc_buckets[b];
        evbuffer_add_printf(out, "wharf_health_check_duration_seconds_bucket{le=\"%g\"} %llu\n",
                            wh_hc_duration_bounds[b], (unsigned long long)cum);
    }
    evbuffer_add_printf(out,
                        "wharf_health_check_duration_seconds_bucket{le=\"+Inf\"} %llu\n"
                        "wharf_health_check_duration_seconds_sum %.6f\n"
                        "wharf_health_check_duration_seconds_count %llu\n",
                        (unsigned long long)reg->hc_count, reg->hc_sum,
                        (unsigned long long)reg->hc_count);
}
