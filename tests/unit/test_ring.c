/* The SPSC ring, its outbox and the wakeup protocol. */
#include "petrel/ring.h"
#include "thread_scenarios.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define ITEM(i) ((void *)(uintptr_t)((i) + 1))
#define NUM(p)  ((uintptr_t)(p)-1)

Test(ring, starts_empty)
{
    struct ring *r;
    cr_assert_eq(ring_create(&r, 8), 0);
    cr_assert_null(ring_pop(r));
    cr_assert_not(ring_pending(r));
    ring_destroy(&r);
    cr_assert_null(r);
}

Test(ring, capacity_rounds_up_to_a_power_of_two)
{
    struct ring *r;
    cr_assert_eq(ring_create(&r, 100), 0);
    cr_assert_eq(ring_capacity(r), 128);
    ring_destroy(&r);
}

Test(ring, staged_items_are_invisible_until_published)
{
    struct ring *r;
    ring_create(&r, 8);
    cr_assert(ring_push(r, ITEM(1)));
    cr_assert_null(ring_pop(r));
    cr_assert(ring_publish(r));
    cr_assert_eq(ring_pop(r), ITEM(1));
    ring_destroy(&r);
}

Test(ring, publish_without_staged_items_reports_nothing)
{
    struct ring *r;
    ring_create(&r, 8);
    cr_assert_not(ring_publish(r));
    ring_destroy(&r);
}

Test(ring, items_come_out_in_order)
{
    struct ring *r;
    ring_create(&r, 16);
    for (uintptr_t i = 0; i < 10; i++) {
        cr_assert(ring_push(r, ITEM(i)));
    }
    ring_publish(r);
    for (uintptr_t i = 0; i < 10; i++) {
        cr_assert_eq(NUM(ring_pop(r)), i);
    }
    cr_assert_null(ring_pop(r));
    ring_destroy(&r);
}

Test(ring, full_ring_refuses_a_push)
{
    struct ring *r;
    ring_create(&r, 4);
    for (uintptr_t i = 0; i < 4; i++) {
        cr_assert(ring_push(r, ITEM(i)));
    }
    cr_assert_not(ring_push(r, ITEM(4)));
    ring_destroy(&r);
}

Test(ring, space_returns_only_after_release)
{
    struct ring *r;
    ring_create(&r, 4);
    for (uintptr_t i = 0; i < 4; i++) {
        ring_push(r, ITEM(i));
    }
    ring_publish(r);
    cr_assert_eq(ring_pop(r), ITEM(0));
    cr_assert_not(ring_push(r, ITEM(4)), "a popped slot is still reserved before release");
    ring_release(r);
    cr_assert(ring_push(r, ITEM(4)));
    ring_destroy(&r);
}

Test(ring, indices_wrap_around_many_times)
{
    struct ring *r;
    ring_create(&r, 4);
    for (uintptr_t i = 0; i < 1000; i++) {
        cr_assert(ring_push(r, ITEM(i)));
        ring_publish(r);
        cr_assert_eq(NUM(ring_pop(r)), i);
        ring_release(r);
    }
    ring_destroy(&r);
}

Test(outbox, overflow_keeps_order_and_drains_on_flush)
{
    struct ring *r;
    ring_create(&r, 4);
    struct ring_outbox o;
    ring_outbox_init(&o, r);
    for (uintptr_t i = 0; i < 10; i++) {
        cr_assert_eq(ring_outbox_push(&o, ITEM(i)), 0);
    }
    cr_assert_eq(ring_outbox_backlog(&o), 6);
    cr_assert(ring_outbox_flush(&o));
    uintptr_t next = 0;
    while (next < 10) {
        void *p;
        while ((p = ring_pop(r)) != NULL) {
            cr_assert_eq(NUM(p), next);
            next++;
        }
        ring_release(r);
        ring_outbox_flush(&o);
    }
    cr_assert_eq(ring_outbox_backlog(&o), 0);
    cr_assert_eq(o.overflowed, 6);
    ring_outbox_fini(&o);
    ring_destroy(&r);
}

Test(outbox, new_items_queue_behind_the_overflow_even_when_the_ring_has_room)
{
    struct ring *r;
    ring_create(&r, 2);
    struct ring_outbox o;
    ring_outbox_init(&o, r);
    ring_outbox_push(&o, ITEM(0));
    ring_outbox_push(&o, ITEM(1));
    ring_outbox_push(&o, ITEM(2)); /* overflows */
    ring_publish(r);
    ring_pop(r);
    ring_pop(r);
    ring_release(r); /* the ring has room again, but item 2 is older than item 3 */
    ring_outbox_push(&o, ITEM(3));
    ring_outbox_flush(&o);
    cr_assert_eq(NUM(ring_pop(r)), 2);
    cr_assert_eq(NUM(ring_pop(r)), 3);
    ring_outbox_fini(&o);
    ring_destroy(&r);
}

Test(outbox, take_gives_back_the_overflow_oldest_first_and_then_null)
{
    struct ring *r;
    ring_create(&r, 2);
    struct ring_outbox o;
    ring_outbox_init(&o, r);
    for (uintptr_t i = 0; i < 5; i++) {
        ring_outbox_push(&o, ITEM(i)); /* 0 and 1 in the ring, 2..4 in the overflow */
    }
    cr_assert_eq(NUM(ring_outbox_take(&o)), 2);
    cr_assert_eq(NUM(ring_outbox_take(&o)), 3);
    cr_assert_eq(NUM(ring_outbox_take(&o)), 4);
    cr_assert_null(ring_outbox_take(&o));
    cr_assert_eq(ring_outbox_backlog(&o), 0);
    ring_outbox_fini(&o);
    ring_destroy(&r);
}

/* The two orders of the wakeup handshake, played out step by step on one thread. */
Test(waker, publish_after_the_consumer_announced_sleep_writes_the_eventfd)
{
    struct ring *r;
    struct waker w;
    ring_create(&r, 4);
    cr_assert_eq(waker_init(&w), 0);
    waker_sleep_begin(&w);          /* consumer: about to block */
    cr_assert_not(ring_pending(r)); /* consumer: re-check finds nothing */
    ring_push(r, ITEM(1));          /* producer */
    ring_publish(r);
    cr_assert(waker_notify(&w)); /* producer sees the sleeper */
    eventfd_t v = 0;
    cr_assert_eq(eventfd_read(w.efd, &v), 0, "the blocked consumer's epoll would fire");
    cr_assert_eq(v, 1);
    cr_assert_not(waker_notify(&w), "one wakeup per sleep: the flag was taken");
    waker_fini(&w);
    ring_destroy(&r);
}

Test(waker, publish_before_the_consumer_announced_sleep_is_seen_by_its_recheck)
{
    struct ring *r;
    struct waker w;
    ring_create(&r, 4);
    waker_init(&w);
    ring_push(r, ITEM(1)); /* producer publishes while the consumer is awake */
    ring_publish(r);
    cr_assert_not(waker_notify(&w), "an awake consumer costs no eventfd write");
    waker_sleep_begin(&w);
    cr_assert(ring_pending(r), "the consumer's re-check must see the item and not block");
    waker_sleep_end(&w);
    waker_fini(&w);
    ring_destroy(&r);
}

/* ---- two threads and more: the scenarios also run under TSan through threads_main.c ---- */

Test(ring_threads, two_threads_move_every_item_once_in_order, .timeout = 120)
{
    const char *err =
        scenario_ring_stress(scenario_count("PETREL_RING_STRESS_ITEMS", 20 * 1000 * 1000));
    cr_assert_null(err, "%s", err);
}

Test(ring_threads, no_wakeup_is_lost, .timeout = 60)
{
    const char *err = scenario_ring_wakeup(scenario_count("PETREL_WAKEUP_ROUNDS", 100000));
    cr_assert_null(err, "%s", err);
}

Test(ring_threads, mesh_of_workers_delivers_every_message_once_in_order, .timeout = 120)
{
    const char *err = scenario_ring_mesh(scenario_count("PETREL_MESH_ITEMS", 300000));
    cr_assert_null(err, "%s", err);
}
