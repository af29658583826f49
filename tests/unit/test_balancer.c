/* Unit tests of target selection (src/proxy/balance.c: the algorithms and a
 * worker's group) and stickiness cookies (src/proxy/sticky.c).
 *
 * Snapshots, targets and actions are built by hand as plain structs (never
 * unref'd). Distribution tests use a fixed seed, so they are reproducible;
 * their tolerances are still set at about 5 standard deviations of the
 * count they check, so a different seed (or a different but correct
 * generator) passes too, while a wrong proportion fails. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "../../src/proxy/balance.h"
#include "../../src/proxy/proxy-int.h"
#include "../../src/proxy/rules.h"
#include "../../src/proxy/sticky.h"
#include "wharf/http.h"

#define MAXM 8
#define SEED 0x123456789abcdefULL

/* A hand-made group: targets, members and the snapshot over them. */
struct group {
    struct wh_target t[MAXM];
    struct wh_tg_member m[MAXM];
    struct wh_tg_snapshot s;
};

static void group_init(struct group *g, enum wh_algorithm algo, size_t n, const int *weights)
{
    memset(g, 0, sizeof(*g));
    for (size_t i = 0; i < n; i++) {
        g->t[i].magic = WH_TARGET_MAGIC;
        g->t[i].id = i + 1;
        g->t[i].weight = weights ? weights[i] : 1;
        atomic_init(&g->t[i].in_flight, 0);
        snprintf(g->t[i].addr.text, sizeof(g->t[i].addr.text), "10.0.0.%zu:80", i + 1);
        g->m[i].target = &g->t[i];
        g->m[i].weight = g->t[i].weight;
        g->m[i].healthy_since = 1;
    }
    g->s.magic = WH_SNAPSHOT_MAGIC;
    g->s.algorithm = algo;
    g->s.n = n;
    g->s.n_registered = n;
    g->s.members = g->m;
}

static struct wh_balance_state bal_state(void)
{
    struct wh_balance_state st = {.rr_next = 0, .rng = SEED};
    return st;
}

/* |count / total - p| within 5 sigma of a binomial(total, p) share, with
 * p = expected; sigma = sqrt(p (1 - p) / total). */
static void assert_share(size_t count, size_t total, double p)
{
    double share = (double)count / (double)total;
    double tol = 5 * sqrt(p * (1 - p) / (double)total);
    if (fabs(share - p) > tol)
        fail_msg("share %.5f, expected %.5f +- %.5f", share, p, tol);
}

/* cmocka's assert_float_equal works in float; these are doubles. */
static void assert_near(double got, double want, double eps)
{
    if (!(fabs(got - want) <= eps))
        fail_msg("got %.12f, expected %.12f", got, want);
}

/* ---- the generator ---- */

static void test_rand_is_xorshift64star_and_spreads(void **state)
{
    (void)state;
    /* xorshift64* (Vigna): shifts 12, 25, 27, multiplier 0x2545F4914F6CDD1D. */
    uint64_t s = 1, ref = 1;
    for (int i = 0; i < 1000; i++) {
        ref ^= ref >> 12;
        ref ^= ref << 25;
        ref ^= ref >> 27;
        uint64_t r = wh_balance_rand(&s);
        assert_true(s == ref && s != 0);
        assert_true(r == ref * 0x2545F4914F6CDD1DULL);
    }
    /* Top 4 bits over 160,000 draws: each of 16 values 1/16, 5 sigma. */
    size_t bucket[16] = {0};
    s = SEED;
    for (int i = 0; i < 160000; i++)
        bucket[wh_balance_rand(&s) >> 60]++;
    for (int i = 0; i < 16; i++)
        assert_share(bucket[i], 160000, 1.0 / 16);
    /* A zero state (never supposed to happen) does not get stuck at zero. */
    s = 0;
    wh_balance_rand(&s);
    assert_true(s != 0);
}

/* ---- round robin ---- */

static void test_round_robin_cycles_evenly_and_honours_exclude(void **state)
{
    (void)state;
    struct group g;
    group_init(&g, WH_ALGO_ROUND_ROBIN, 4, NULL);
    struct wh_balance_state st = bal_state();
    size_t count[4] = {0};
    for (int i = 0; i < 400; i++) {
        int k = wh_balance_pick(&g.s, &st, NULL, 0);
        assert_int_equal(k, i % 4); /* strictly in turn */
        count[k]++;
    }
    for (int i = 0; i < 4; i++)
        assert_int_equal(count[i], 100);

    /* exclude is skipped; the others still take turns evenly. */
    memset(count, 0, sizeof(count));
    for (int i = 0; i < 300; i++) {
        int k = wh_balance_pick(&g.s, &st, &g.t[2], 0);
        assert_int_not_equal(k, 2);
        count[k]++;
    }
    assert_int_equal(count[0], 100);
    assert_int_equal(count[1], 100);
    assert_int_equal(count[3], 100);

    /* A cursor left past the end (the snapshot shrank) wraps. */
    st.rr_next = 1000003;
    assert_int_equal(wh_balance_pick(&g.s, &st, NULL, 0), 1000003 % 4);
}

static void test_exclude_of_only_member_and_empty_snapshot_give_minus_one(void **state)
{
    (void)state;
    enum wh_algorithm algos[] = {WH_ALGO_ROUND_ROBIN, WH_ALGO_LEAST_OUTSTANDING,
                                 WH_ALGO_WEIGHTED_RANDOM};
    for (size_t a = 0; a < 3; a++) {
        struct group g;
        struct wh_balance_state st = bal_state();
        group_init(&g, algos[a], 1, NULL);
        assert_int_equal(wh_balance_pick(&g.s, &st, NULL, 0), 0);
        assert_int_equal(wh_balance_pick(&g.s, &st, &g.t[0], 0), -1);
        /* with slow start on and the member ramping: still -1, still 0 without exclude */
        g.s.slow_start = 30;
        g.m[0].slow_start_begin = 100;
        assert_int_equal(wh_balance_pick(&g.s, &st, &g.t[0], 101), -1);
        for (int i = 0; i < 50; i++)
            assert_int_equal(wh_balance_pick(&g.s, &st, NULL, 101), 0); /* never refused */
        group_init(&g, algos[a], 0, NULL);
        assert_int_equal(wh_balance_pick(&g.s, &st, NULL, 0), -1);
        assert_int_equal(wh_balance_pick(NULL, &st, NULL, 0), -1);
    }
}

/* ---- least outstanding requests ---- */

static void test_least_outstanding_picks_fewest_in_flight(void **state)
{
    (void)state;
    struct group g;
    group_init(&g, WH_ALGO_LEAST_OUTSTANDING, 3, NULL);
    struct wh_balance_state st = bal_state();
    atomic_store(&g.t[0].in_flight, 5);
    atomic_store(&g.t[1].in_flight, 2);
    atomic_store(&g.t[2].in_flight, 9);
    for (int i = 0; i < 10; i++)
        assert_int_equal(wh_balance_pick(&g.s, &st, NULL, 0), 1);
    /* excluding the least loaded gives the next least loaded */
    assert_int_equal(wh_balance_pick(&g.s, &st, &g.t[1], 0), 0);
    /* a change of in_flight between picks changes the choice */
    atomic_store(&g.t[2].in_flight, 0);
    assert_int_equal(wh_balance_pick(&g.s, &st, NULL, 0), 2);
    atomic_store(&g.t[0].in_flight, 0);
    atomic_store(&g.t[2].in_flight, 1);
    assert_int_equal(wh_balance_pick(&g.s, &st, NULL, 0), 0);
    /* requests that start on the pick spread the load as they would live */
    for (int i = 0; i < 3; i++)
        atomic_store(&g.t[i].in_flight, 0);
    for (int i = 0; i < 30; i++)
        wh_target_begin(&g.t[wh_balance_pick(&g.s, &st, NULL, 0)]);
    for (int i = 0; i < 3; i++)
        assert_int_equal(atomic_load(&g.t[i].in_flight), 10);
}

static void test_least_outstanding_ties_take_turns(void **state)
{
    (void)state;
    struct group g;
    group_init(&g, WH_ALGO_LEAST_OUTSTANDING, 3, NULL);
    struct wh_balance_state st = bal_state();
    size_t count[3] = {0};
    for (int i = 0; i < 300; i++)
        count[wh_balance_pick(&g.s, &st, NULL, 0)]++;
    assert_int_equal(count[0], 100);
    assert_int_equal(count[1], 100);
    assert_int_equal(count[2], 100);
    /* two tied at the minimum, one busier: the two alternate */
    atomic_store(&g.t[1].in_flight, 3);
    int prev = -1;
    for (int i = 0; i < 20; i++) {
        int k = wh_balance_pick(&g.s, &st, NULL, 0);
        assert_true(k == 0 || k == 2);
        assert_int_not_equal(k, prev);
        prev = k;
    }
}

/* ---- weighted random ---- */

static void test_weighted_random_follows_weights_1_2_7(void **state)
{
    (void)state;
    const int w[] = {1, 2, 7};
    struct group g;
    group_init(&g, WH_ALGO_WEIGHTED_RANDOM, 3, w);
    struct wh_balance_state st = bal_state();
    enum { N = 100000 };
    size_t count[3] = {0};
    for (int i = 0; i < N; i++)
        count[wh_balance_pick(&g.s, &st, NULL, 0)]++;
    /* 5 sigma: 0.095, 0.126 and 0.145 percentage points for 10%, 20%, 70% */
    assert_share(count[0], N, 0.1);
    assert_share(count[1], N, 0.2);
    assert_share(count[2], N, 0.7);

    /* Excluding the heaviest leaves 1:2 between the others. */
    memset(count, 0, sizeof(count));
    for (int i = 0; i < N; i++)
        count[wh_balance_pick(&g.s, &st, &g.t[2], 0)]++;
    assert_int_equal(count[2], 0);
    assert_share(count[0], N, 1.0 / 3);
}

static void test_forward_pick_follows_group_weights(void **state)
{
    (void)state;
    enum { N = 100000 };
    struct wh_action a;
    memset(&a, 0, sizeof(a));
    a.type = WH_ACTION_FORWARD;
    a.n_groups = 2;
    a.groups[0] = (struct wh_forward_group){.name = "blue", .group_index = 0, .weight = 90};
    a.groups[1] = (struct wh_forward_group){.name = "green", .group_index = 1, .weight = 10};
    a.total_weight = 100;
    uint64_t rng = SEED;
    size_t count[2] = {0};
    for (int i = 0; i < N; i++)
        count[wh_forward_pick(&a, &rng)]++;
    assert_share(count[0], N, 0.9); /* 5 sigma = 0.095 percentage points */

    /* weight 0 is never chosen */
    a.groups[0].weight = 0;
    a.groups[1].weight = 100;
    memset(count, 0, sizeof(count));
    for (int i = 0; i < N; i++)
        count[wh_forward_pick(&a, &rng)]++;
    assert_int_equal(count[0], 0);
    assert_int_equal(count[1], N);

    /* three groups 0/50/50: the zero one never, the others half each */
    a.n_groups = 3;
    a.groups[1].weight = 50;
    a.groups[2] = (struct wh_forward_group){.name = "red", .group_index = 2, .weight = 50};
    size_t c3[3] = {0};
    for (int i = 0; i < N; i++)
        c3[wh_forward_pick(&a, &rng)]++;
    assert_int_equal(c3[0], 0);
    assert_share(c3[1], N, 0.5);

    /* one group: 0 without drawing */
    a.n_groups = 1;
    uint64_t before = rng;
    assert_int_equal(wh_forward_pick(&a, &rng), 0);
    assert_true(rng == before);
}

/* ---- slow start ---- */

static void test_slow_start_factor_ramps_linearly(void **state)
{
    (void)state;
    struct group g;
    group_init(&g, WH_ALGO_ROUND_ROBIN, 1, NULL);
    g.s.slow_start = 30;
    struct wh_tg_member *m = &g.m[0];
    m->slow_start_begin = 1000;
    const double eps = 1e-9;
    assert_near(wh_slow_start_factor(&g.s, m, 1000), WH_SLOW_START_FLOOR, eps);
    assert_near(wh_slow_start_factor(&g.s, m, 1007.5), 0.1 + 0.9 * 0.25, eps);
    assert_near(wh_slow_start_factor(&g.s, m, 1015), 0.55, eps);
    assert_near(wh_slow_start_factor(&g.s, m, 1029.999), 0.1 + 0.9 * 29.999 / 30, eps);
    assert_true(wh_slow_start_factor(&g.s, m, 1029.999) < 1);
    assert_near(wh_slow_start_factor(&g.s, m, 1030), 1, 0); /* the window is over */
    assert_near(wh_slow_start_factor(&g.s, m, 5000), 1, 0);
    /* a clock reading from before the ramp began: the floor, not below */
    assert_near(wh_slow_start_factor(&g.s, m, 999), WH_SLOW_START_FLOOR, eps);
    /* not ramping: slow_start_begin 0 (full share), or slow start off */
    m->slow_start_begin = 0;
    assert_near(wh_slow_start_factor(&g.s, m, 1015), 1, 0);
    m->slow_start_begin = 1000;
    g.s.slow_start = 0;
    assert_near(wh_slow_start_factor(&g.s, m, 1015), 1, 0);
}

static void test_weighted_random_slow_start_share_at_half_window(void **state)
{
    (void)state;
    enum { N = 100000 };
    const int w[] = {1, 1, 2};
    struct group g;
    group_init(&g, WH_ALGO_WEIGHTED_RANDOM, 3, w);
    g.s.slow_start = 30;
    g.m[1].slow_start_begin = 1000; /* ramping: factor 0.55 at 1015 */
    struct wh_balance_state st = bal_state();
    size_t count[3] = {0};
    for (int i = 0; i < N; i++)
        count[wh_balance_pick(&g.s, &st, NULL, 1015)]++;
    /* weights x factors 1 : 0.55 : 2, total 3.55 */
    assert_share(count[1], N, 0.55 / 3.55);
    assert_share(count[2], N, 2 / 3.55);
    assert_share(count[0], N, 1 / 3.55);

    /* At the floor: 0.1 : 1 against a full-share peer of equal weight. */
    g.m[2].weight = 1;
    memset(count, 0, sizeof(count));
    for (int i = 0; i < N; i++)
        count[wh_balance_pick(&g.s, &st, NULL, 1000)]++;
    assert_share(count[1], N, 0.1 / 2.1);

    /* After the window, and with slow start off, the same member is a peer. */
    memset(count, 0, sizeof(count));
    for (int i = 0; i < N; i++)
        count[wh_balance_pick(&g.s, &st, NULL, 1030)]++;
    assert_share(count[1], N, 1.0 / 3);
    g.s.slow_start = 0;
    memset(count, 0, sizeof(count));
    for (int i = 0; i < N; i++)
        count[wh_balance_pick(&g.s, &st, NULL, 1015)]++;
    assert_share(count[1], N, 1.0 / 3);
}

/* Round robin with one ramping member R beside full-share members: the
 * cursor reaches R once per cycle and R takes it with probability f, so R
 * serves f requests for every one a peer serves. */
static void test_round_robin_slow_start_gets_factor_share(void **state)
{
    (void)state;
    enum { N = 100000 };
    struct group g;
    group_init(&g, WH_ALGO_ROUND_ROBIN, 3, NULL);
    g.s.slow_start = 30;
    g.m[1].slow_start_begin = 1000;
    const double at[] = {1000, 1007.5, 1015, 1022.5};
    for (size_t k = 0; k < sizeof(at) / sizeof(at[0]); k++) {
        double f = wh_slow_start_factor(&g.s, &g.m[1], at[k]);
        struct wh_balance_state st = bal_state();
        size_t count[3] = {0};
        for (int i = 0; i < N; i++)
            count[wh_balance_pick(&g.s, &st, NULL, at[k])]++;
        /* Expected share f / (2 + f). The picks are a Markov chain, not
         * independent draws, but R's count is a sum of independent
         * Bernoulli(f) trials (one per cycle), whose spread is smaller than
         * the binomial's assert_share allows. */
        assert_share(count[1], N, f / (2 + f));
        /* the two peers stay exactly in step: one each per cycle */
        long skew = (long)count[0] - (long)count[2];
        assert_true(skew >= -1 && skew <= 1);
    }
    /* Every member ramping and declining: the plain choice, never -1. */
    for (int i = 0; i < 3; i++)
        g.m[i].slow_start_begin = 1000;
    struct wh_balance_state st = bal_state();
    size_t count[3] = {0};
    for (int i = 0; i < 30000; i++) {
        int k = wh_balance_pick(&g.s, &st, NULL, 1000);
        assert_true(k >= 0);
        count[k]++;
    }
    for (int i = 0; i < 3; i++)
        assert_share(count[i], 30000, 1.0 / 3);
}

static void test_least_outstanding_slow_start_admits_with_factor(void **state)
{
    (void)state;
    enum { N = 100000 };
    struct group g;
    group_init(&g, WH_ALGO_LEAST_OUTSTANDING, 2, NULL);
    g.s.slow_start = 30;
    g.m[1].slow_start_begin = 1000;
    atomic_store(&g.t[0].in_flight, 5);
    struct wh_balance_state st = bal_state();
    size_t count[2] = {0};
    /* The idle member ramps: it wins with probability 0.55, else the busy one. */
    for (int i = 0; i < N; i++)
        count[wh_balance_pick(&g.s, &st, NULL, 1015)]++;
    assert_share(count[1], N, 0.55);
    /* Over the window it always wins. */
    for (int i = 0; i < 100; i++)
        assert_int_equal(wh_balance_pick(&g.s, &st, NULL, 1030), 1);
}

/* ---- stickiness cookies ---- */

static void test_sticky_round_trip(void **state)
{
    (void)state;
    struct wh_sticky_key k;
    wh_sticky_key_init(&k, "wharf-test-secret");
    char v[WH_STICKY_VALUE_MAX], out[WH_STICKY_PAYLOAD_MAX + 1];
    const char *p = "web\n10.0.0.1:80";
    int n = wh_sticky_encode(&k, p, strlen(p), 1700000000, v, sizeof(v));
    /* The format of sticky.h, computed independently (Python hmac/base64). */
    assert_string_equal(v, "AAAAAGVT8QB3ZWIKMTAuMC4wLjE6ODAfiEx1ig1Vsft_tqx1-7nm");
    assert_int_equal(n, (int)strlen(v));
    assert_int_equal(wh_sticky_decode(&k, v, (size_t)n, 1600000000, out, sizeof(out)),
                     (int)strlen(p));
    assert_string_equal(out, p);

    /* Every payload length 0..max, with any bytes, comes back; values are cookie-safe. */
    char payload[WH_STICKY_PAYLOAD_MAX];
    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (char)(i * 37 + 1);
    for (size_t len = 0; len <= WH_STICKY_PAYLOAD_MAX; len++) {
        n = wh_sticky_encode(&k, payload, len, 2000, v, sizeof(v));
        assert_true(n > 0 && n < WH_STICKY_VALUE_MAX);
        assert_int_equal(strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                   "0123456789-_"),
                         (size_t)n);
        assert_int_equal(wh_sticky_decode(&k, v, (size_t)n, 1999, out, sizeof(out)), (int)len);
        assert_memory_equal(out, payload, len);
        assert_int_equal(out[len], '\0');
    }
    /* Too long a payload, too small an output: -1. */
    assert_int_equal(wh_sticky_encode(&k, payload, WH_STICKY_PAYLOAD_MAX + 1, 2000, v, sizeof(v)),
                     -1);
    assert_int_equal(wh_sticky_encode(&k, p, strlen(p), 2000, v, 10), -1);
    n = wh_sticky_encode(&k, p, strlen(p), 2000, v, sizeof(v));
    assert_int_equal(wh_sticky_decode(&k, v, (size_t)n, 1000, out, strlen(p)), -1);
    assert_int_equal(wh_sticky_decode(&k, v, (size_t)n, 1000, out, strlen(p) + 1), (int)strlen(p));
}

static void test_sticky_rejects_tampered_wrong_key_expired(void **state)
{
    (void)state;
    struct wh_sticky_key k, other, random_key;
    wh_sticky_key_init(&k, "wharf-test-secret");
    wh_sticky_key_init(&other, "another-secret");
    wh_sticky_key_init(&random_key, NULL);
    char v[WH_STICKY_VALUE_MAX], t[WH_STICKY_VALUE_MAX], out[WH_STICKY_PAYLOAD_MAX + 1];
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    /* payload lengths 0, 1, 2: all three ends of base64 (0, 2 and 4 spare bits) */
    for (size_t len = 0; len < 3; len++) {
        int n = wh_sticky_encode(&k, "abc", len, 2000, v, sizeof(v));
        assert_true(n > 0);
        /* Any one character changed, to any other base64url character: forged. */
        for (int i = 0; i < n; i++) {
            for (const char *c = alphabet; *c; c++) {
                if (*c == v[i])
                    continue;
                memcpy(t, v, (size_t)n + 1);
                t[i] = *c;
                assert_int_equal(wh_sticky_decode(&k, t, (size_t)n, 1000, out, sizeof(out)), -1);
            }
        }
        assert_int_equal(wh_sticky_decode(&other, v, (size_t)n, 1000, out, sizeof(out)), -1);
        assert_int_equal(wh_sticky_decode(&random_key, v, (size_t)n, 1000, out, sizeof(out)), -1);
        /* Expired: valid strictly before expires. */
        assert_int_equal(wh_sticky_decode(&k, v, (size_t)n, 1999, out, sizeof(out)), (int)len);
        assert_int_equal(wh_sticky_decode(&k, v, (size_t)n, 2000, out, sizeof(out)), -1);
        assert_int_equal(wh_sticky_decode(&k, v, (size_t)n, 999999, out, sizeof(out)), -1);
    }
}

static void test_sticky_rejects_truncated_garbage_overlong(void **state)
{
    (void)state;
    struct wh_sticky_key k;
    wh_sticky_key_init(&k, "wharf-test-secret");
    char v[WH_STICKY_VALUE_MAX], out[WH_STICKY_PAYLOAD_MAX + 1];
    int n = wh_sticky_encode(&k, "web\n10.0.0.1:80", 15, 2000, v, sizeof(v));
    /* every truncation, and a character appended */
    for (int len = 0; len < n; len++)
        assert_int_equal(wh_sticky_decode(&k, v, (size_t)len, 1000, out, sizeof(out)), -1);
    char longer[WH_STICKY_VALUE_MAX + 1];
    memcpy(longer, v, (size_t)n);
    longer[n] = 'A';
    assert_int_equal(wh_sticky_decode(&k, longer, (size_t)n + 1, 1000, out, sizeof(out)), -1);
    /* padding, other alphabets, whitespace, NUL, plain garbage */
    const char *garbage[] = {
        "",
        "!!!!",
        "not a cookie at all, not even close",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "AAAAAGVT8QB3ZWIKMTAuMC4wLjE6ODAfiEx1ig1Vsft/tqx1+7nm",
        "AAAAAGVT8QB3ZWIKMTAuMC4wLjE6ODAfiEx1ig1Vsft_tqx1-7nm==",
        " AAAAAGVT8QB3ZWIKMTAuMC4wLjE6ODAfiEx1ig1Vsft_tqx1-7nm",
        "AAAAAGVT8QB3ZWIKMTAuMC4wLjE6ODAfiEx1ig1Vsft_tqx1-7n\x01",
    };
    for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++)
        assert_int_equal(
            wh_sticky_decode(&k, garbage[i], strlen(garbage[i]), 1000, out, sizeof(out)), -1);
    /* the valid value with a NUL inside */
    char nul[64];
    memcpy(nul, v, (size_t)n);
    nul[10] = '\0';
    assert_int_equal(wh_sticky_decode(&k, nul, (size_t)n, 1000, out, sizeof(out)), -1);
    /* over-long: past what the longest payload encodes to, and far past it */
    static char big[10000];
    memset(big, 'A', sizeof(big));
    assert_int_equal(wh_sticky_decode(&k, big, WH_STICKY_VALUE_MAX, 1000, out, sizeof(out)), -1);
    assert_int_equal(wh_sticky_decode(&k, big, sizeof(big), 1000, out, sizeof(out)), -1);
}

static void test_sticky_keys_same_secret_agree_and_process_key_is_stable(void **state)
{
    (void)state;
    struct wh_sticky_key a, b, r1, r2;
    wh_sticky_key_init(&a, "abc");
    wh_sticky_key_init(&b, "abc");
    assert_memory_equal(a.bytes, b.bytes, WH_STICKY_KEY_LEN);
    /* SHA-256("abc"), FIPS 180-2 */
    static const unsigned char sha_abc[32] = {0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea,
                                              0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
                                              0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c,
                                              0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};
    assert_memory_equal(a.bytes, sha_abc, 32);
    char v[WH_STICKY_VALUE_MAX], out[WH_STICKY_PAYLOAD_MAX + 1];
    int n = wh_sticky_encode(&a, "web", 3, 2000, v, sizeof(v));
    assert_int_equal(wh_sticky_decode(&b, v, (size_t)n, 1000, out, sizeof(out)), 3);

    wh_sticky_key_init(&r1, NULL);
    wh_sticky_key_init(&r2, NULL);
    assert_memory_equal(r1.bytes, r2.bytes, WH_STICKY_KEY_LEN);
    static const unsigned char zero[WH_STICKY_KEY_LEN];
    assert_memory_not_equal(r1.bytes, zero, WH_STICKY_KEY_LEN);
    assert_memory_not_equal(r1.bytes, a.bytes, WH_STICKY_KEY_LEN);
    n = wh_sticky_encode(&r1, "web", 3, 2000, v, sizeof(v));
    assert_int_equal(wh_sticky_decode(&r2, v, (size_t)n, 1000, out, sizeof(out)), 3);
}

/* ---- the Cookie header ---- */

struct parsed {
    const char *buf;
    struct wh_http_parser p;
    struct wh_http_msg m;
};

static void parse(struct parsed *r, const char *buf)
{
    r->buf = buf;
    wh_http_parser_init(&r->p, WH_HTTP_REQUEST, 0);
    wh_http_msg_init(&r->m, WH_HTTP_REQUEST);
    assert_int_equal(wh_http_parse_head(&r->p, buf, strlen(buf), &r->m), WH_HTTP_DONE);
}

/* 1 and the value as a string, or 0 and "" */
static int find(struct parsed *r, const char *name, char *val, size_t vlen)
{
    const char *v = NULL;
    size_t len = 0;
    int found = wh_cookie_find(r->buf, &r->m, name, strlen(name), &v, &len);
    snprintf(val, vlen, "%.*s", found ? (int)len : 0, found ? v : "");
    return found;
}

static void test_cookie_find(void **state)
{
    (void)state;
    struct parsed r;
    char val[64];

    parse(&r, "GET / HTTP/1.1\r\nHost: x\r\nCookie: a=1; wharf-lb-web=XYZ; b=2\r\n\r\n");
    assert_int_equal(find(&r, "wharf-lb-web", val, sizeof(val)), 1);
    assert_string_equal(val, "XYZ");
    assert_int_equal(find(&r, "a", val, sizeof(val)), 1);
    assert_string_equal(val, "1");
    assert_int_equal(find(&r, "b", val, sizeof(val)), 1);
    assert_string_equal(val, "2");
    assert_int_equal(find(&r, "wharf-lb-api", val, sizeof(val)), 0);
    assert_int_equal(find(&r, "wharf-lb", val, sizeof(val)), 0);
    wh_http_msg_free(&r.m);

    /* across two Cookie lines, any case of the header name */
    parse(&r,
          "GET / HTTP/1.1\r\nHost: x\r\nCookie: a=1; b=2\r\ncookie: c=3;wharf-lb-web=XYZ\r\n\r\n");
    assert_int_equal(find(&r, "wharf-lb-web", val, sizeof(val)), 1);
    assert_string_equal(val, "XYZ");
    assert_int_equal(find(&r, "c", val, sizeof(val)), 1);
    assert_string_equal(val, "3");
    wh_http_msg_free(&r.m);

    /* names that only contain it (prefix, suffix) do not match */
    parse(&r, "GET / HTTP/1.1\r\nHost: x\r\n"
              "Cookie: xwharf-lb-web=1; wharf-lb-webx=2; wharf-lb-web-old=3\r\n\r\n");
    assert_int_equal(find(&r, "wharf-lb-web", val, sizeof(val)), 0);
    wh_http_msg_free(&r.m);
    parse(&r, "GET / HTTP/1.1\r\nHost: x\r\n"
              "Cookie: xwharf-lb-web=1; wharf-lb-web=right\r\n\r\n");
    assert_int_equal(find(&r, "wharf-lb-web", val, sizeof(val)), 1);
    assert_string_equal(val, "right");
    wh_http_msg_free(&r.m);

    /* a value that merely contains the name does not match either */
    parse(&r, "GET / HTTP/1.1\r\nHost: x\r\nCookie: a=wharf-lb-web=1\r\nX-Cookie: "
              "wharf-lb-web=2\r\n\r\n");
    assert_int_equal(find(&r, "wharf-lb-web", val, sizeof(val)), 0);
    wh_http_msg_free(&r.m);

    /* absent: no Cookie header at all */
    parse(&r, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(find(&r, "wharf-lb-web", val, sizeof(val)), 0);
    wh_http_msg_free(&r.m);

    /* the quoted form of RFC 6265, and an empty value */
    parse(&r, "GET / HTTP/1.1\r\nHost: x\r\nCookie: wharf-lb-web=\"XYZ\"; e=\r\n\r\n");
    assert_int_equal(find(&r, "wharf-lb-web", val, sizeof(val)), 1);
    assert_string_equal(val, "XYZ");
    assert_int_equal(find(&r, "e", val, sizeof(val)), 1);
    assert_string_equal(val, "");
    wh_http_msg_free(&r.m);
}

/* ---- a worker's group (wh_balance_group_pick, wh_balance_group_find) ---- */

static void test_group_pick_and_find_read_the_current_snapshot(void **state)
{
    (void)state;
    struct group g;
    group_init(&g, WH_ALGO_ROUND_ROBIN, 3, NULL);
    struct wh_tg_counters counters;
    memset(&counters, 0, sizeof(counters));
    atomic_init(&counters.fail_open_requests, 0);
    g.s.counters = &counters;
    struct wh_group wg = {.bal = bal_state()};

    /* no snapshot yet, then an empty one: nothing to pick or find */
    assert_null(wh_balance_group_pick(&wg, NULL));
    assert_null(wh_balance_group_find(&wg, "10.0.0.1:80", 11));
    wg.snap = &g.s;
    g.s.n = 0;
    assert_null(wh_balance_group_pick(&wg, NULL));
    g.s.n = 3;

    /* the snapshot's algorithm, in turn, never the excluded target */
    assert_ptr_equal(wh_balance_group_pick(&wg, NULL), &g.t[0]);
    assert_ptr_equal(wh_balance_group_pick(&wg, NULL), &g.t[1]);
    for (int i = 0; i < 10; i++)
        assert_ptr_not_equal(wh_balance_group_pick(&wg, &g.t[2]), &g.t[2]);
    assert_int_equal(atomic_load(&counters.fail_open_requests), 0);

    /* find: by the exact address text (a prefix is not enough) */
    assert_ptr_equal(wh_balance_group_find(&wg, "10.0.0.2:80", 11), &g.t[1]);
    assert_null(wh_balance_group_find(&wg, "10.0.0.2:8", 10));
    assert_null(wh_balance_group_find(&wg, "10.0.0.9:80", 11));
    assert_null(wh_balance_group_find(&wg, "", 0));

    /* fail-open: picks still come and are counted; stickiness finds none */
    g.s.fail_open = 1;
    assert_non_null(wh_balance_group_pick(&wg, NULL));
    assert_non_null(wh_balance_group_pick(&wg, NULL));
    assert_int_equal(atomic_load(&counters.fail_open_requests), 2);
    assert_null(wh_balance_group_find(&wg, "10.0.0.2:80", 11));
}

/* ---- sticky.c: the cookies a response sets pin the next request ---- */

/* A request head carrying the value of each Set-Cookie line in `set`. */
static void request_with_cookies(const char *set, char *out, size_t outlen)
{
    size_t used = (size_t)snprintf(out, outlen, "GET / HTTP/1.1\r\nHost: x\r\nCookie: a=1");
    for (const char *p = set; (p = strstr(p, "Set-Cookie: ")) != NULL;) {
        p += 12;
        size_t n = strcspn(p, ";");
        used += (size_t)snprintf(out + used, outlen - used, "; %.*s", (int)n, p);
    }
    snprintf(out + used, outlen - used, "\r\n\r\n");
}

static void test_sticky_cookies_pin_target_and_group(void **state)
{
    (void)state;
    struct group g;
    group_init(&g, WH_ALGO_ROUND_ROBIN, 3, NULL);
    struct wh_group wg = {.snap = &g.s};
    snprintf(wg.name, sizeof(wg.name), "web");
    struct wh_listener_prep lp = {0};
    wh_sticky_key_init(&lp.key, "route test secret");
    snprintf(lp.tg_cookie, sizeof(lp.tg_cookie), "wharf-tg-http");
    struct wh_cfg_target_group tg = {.stickiness_enabled = 1, .stickiness_duration = 60};
    snprintf(tg.name, sizeof(tg.name), "web");

    char set[1024], head[2048];
    assert_ptr_equal(wh_sticky_set_cookies(&lp, &tg, &g.t[1], 30, set, sizeof(set)), set);
    assert_non_null(strstr(set, "Set-Cookie: wharf-lb-web="));
    assert_non_null(strstr(set, "; Path=/; Max-Age=60; HttpOnly\r\n"));
    assert_non_null(strstr(set, "Set-Cookie: wharf-tg-http="));
    assert_non_null(strstr(set, "; Path=/; Max-Age=30; HttpOnly\r\n"));
    request_with_cookies(set, head, sizeof(head));
    struct parsed r;
    parse(&r, head);
    assert_ptr_equal(wh_sticky_pinned_target(&lp, &tg, &wg, r.buf, &r.m), &g.t[1]);

    /* the group cookie: "web" wins while it has weight, whatever the draw */
    struct wh_action a = {.type = WH_ACTION_FORWARD, .n_groups = 2, .stickiness = 30};
    a.groups[0] = (struct wh_forward_group){.name = "other", .group_index = 1, .weight = 999};
    a.groups[1] = (struct wh_forward_group){.name = "web", .group_index = 0, .weight = 1};
    a.total_weight = 1000;
    uint64_t rng = SEED;
    for (int i = 0; i < 100; i++)
        assert_int_equal(wh_sticky_forward_index(&lp, &a, r.buf, &r.m, &rng), 1);
    a.groups[1].weight = 0; /* weight 0: the cookie no longer holds */
    a.total_weight = 999;
    assert_int_equal(wh_sticky_forward_index(&lp, &a, r.buf, &r.m, &rng), 0);

    /* unhealthy (fail-open snapshot) or gone: not honoured */
    g.s.fail_open = 1;
    assert_null(wh_sticky_pinned_target(&lp, &tg, &wg, r.buf, &r.m));
    g.s.fail_open = 0;
    g.s.n = 1; /* only 10.0.0.1 left */
    assert_null(wh_sticky_pinned_target(&lp, &tg, &wg, r.buf, &r.m));
    g.s.n = 3;
    wh_http_msg_free(&r.m);

    /* web's value under api's name (signed, but naming another group) and
     * a cookie signed with another key pin nothing */
    struct wh_cfg_target_group api = tg;
    snprintf(api.name, sizeof(api.name), "api");
    char renamed[2048];
    const char *v = strstr(head, "wharf-lb-web=");
    assert_non_null(v);
    snprintf(renamed, sizeof(renamed),
             "GET / HTTP/1.1\r\nHost: x\r\nCookie: wharf-lb-api=%.*s\r\n\r\n",
             (int)strcspn(v + 13, ";\r"), v + 13);
    parse(&r, renamed);
    assert_null(wh_sticky_pinned_target(&lp, &api, &wg, r.buf, &r.m));
    wh_http_msg_free(&r.m);
    struct wh_listener_prep other = lp;
    wh_sticky_key_init(&other.key, "another secret");
    parse(&r, head);
    assert_null(wh_sticky_pinned_target(&other, &tg, &wg, r.buf, &r.m));
    wh_http_msg_free(&r.m);

    /* nothing to set */
    assert_null(wh_sticky_set_cookies(&lp, &tg, NULL, 0, set, sizeof(set)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rand_is_xorshift64star_and_spreads),
        cmocka_unit_test(test_round_robin_cycles_evenly_and_honours_exclude),
        cmocka_unit_test(test_exclude_of_only_member_and_empty_snapshot_give_minus_one),
        cmocka_unit_test(test_least_outstanding_picks_fewest_in_flight),
        cmocka_unit_test(test_least_outstanding_ties_take_turns),
        cmocka_unit_test(test_weighted_random_follows_weights_1_2_7),
        cmocka_unit_test(test_forward_pick_follows_group_weights),
        cmocka_unit_test(test_slow_start_factor_ramps_linearly),
        cmocka_unit_test(test_weighted_random_slow_start_share_at_half_window),
        cmocka_unit_test(test_round_robin_slow_start_gets_factor_share),
        cmocka_unit_test(test_least_outstanding_slow_start_admits_with_factor),
        cmocka_unit_test(test_sticky_round_trip),
        cmocka_unit_test(test_sticky_rejects_tampered_wrong_key_expired),
        cmocka_unit_test(test_sticky_rejects_truncated_garbage_overlong),
        cmocka_unit_test(test_sticky_keys_same_secret_agree_and_process_key_is_stable),
        cmocka_unit_test(test_cookie_find),
        cmocka_unit_test(test_group_pick_and_find_read_the_current_snapshot),
        cmocka_unit_test(test_sticky_cookies_pin_target_and_group),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
