/* The growable byte buffer. */
#include "petrel/buf.h"

#include <criterion/criterion.h>
#include <errno.h>

Test(buf, starts_empty_without_allocating)
{
    struct buf b;
    buf_init(&b, 64, 1024);
    cr_assert_eq(buf_len(&b), 0);
    cr_assert_null(b.data);
    buf_free(&b);
}

Test(buf, appended_bytes_read_back)
{
    struct buf b;
    buf_init(&b, 64, 1024);
    cr_assert_eq(buf_append(&b, "hello", 5), 0);
    cr_assert_eq(buf_len(&b), 5);
    cr_assert_arr_eq(buf_rptr(&b), "hello", 5);
    buf_free(&b);
}

Test(buf, grows_on_demand)
{
    struct buf b;
    buf_init(&b, 16, 1024);
    char data[100];
    memset(data, 'x', sizeof(data));
    cr_assert_eq(buf_append(&b, data, sizeof(data)), 0);
    cr_assert_geq(b.cap, 100);
    cr_assert_arr_eq(buf_rptr(&b), data, sizeof(data));
    buf_free(&b);
}

Test(buf, refuses_to_grow_past_its_cap)
{
    struct buf b;
    buf_init(&b, 16, 64);
    char data[65] = {0};
    cr_assert_eq(buf_append(&b, data, 65), -ENOBUFS);
    cr_assert_eq(buf_len(&b), 0, "a refused append leaves nothing behind");
    cr_assert_eq(buf_append(&b, data, 64), 0, "exactly the cap fits");
    buf_free(&b);
}

Test(buf, consuming_everything_rewinds_to_the_start)
{
    struct buf b;
    buf_init(&b, 16, 64);
    buf_append(&b, "abcdef", 6);
    buf_consume(&b, 6);
    cr_assert_eq(b.rpos, 0);
    cr_assert_eq(b.wpos, 0);
    buf_free(&b);
}

Test(buf, reserve_compacts_before_growing)
{
    struct buf b;
    buf_init(&b, 16, 16);
    buf_append(&b, "0123456789abcdef", 16);
    buf_consume(&b, 10);
    /* 6 bytes left at offset 10: room for 10 more only if the tail moves to the front. */
    cr_assert_eq(buf_reserve(&b, 10), 0);
    cr_assert_eq(b.rpos, 0);
    cr_assert_arr_eq(buf_rptr(&b), "abcdef", 6);
    buf_free(&b);
}

Test(buf, shrink_returns_a_grown_empty_buffer)
{
    struct buf b;
    buf_init(&b, 16, 4096);
    char data[1000] = {0};
    buf_append(&b, data, sizeof(data));
    buf_consume(&b, sizeof(data));
    buf_shrink(&b);
    cr_assert_eq(b.cap, 0);
    cr_assert_null(b.data);
    cr_assert_eq(buf_append(&b, "x", 1), 0, "usable after a shrink");
    buf_free(&b);
}

Test(buf, shrink_keeps_unread_bytes)
{
    struct buf b;
    buf_init(&b, 16, 4096);
    char data[1000] = {0};
    buf_append(&b, data, sizeof(data));
    buf_shrink(&b);
    cr_assert_eq(buf_len(&b), 1000);
    buf_free(&b);
}

Test(buf, printf_formats_short_and_long_text)
{
    struct buf b;
    buf_init(&b, 16, 1 << 20);
    cr_assert_eq(buf_printf(&b, "STAT %s %d\r\n", "pid", 42), 0);
    cr_assert_eq(buf_len(&b), 13);
    cr_assert_arr_eq(buf_rptr(&b), "STAT pid 42\r\n", 13);
    char big[3000];
    memset(big, 'y', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    cr_assert_eq(buf_printf(&b, "%s", big), 0);
    cr_assert_eq(buf_len(&b), 13 + 2999);
    cr_assert_eq(buf_rptr(&b)[13 + 2998], 'y');
    buf_free(&b);
}

Test(buf, reserve_cap_predicts_what_reserve_allocates)
{
    struct buf b;
    buf_init(&b, 16, 1024);
    cr_assert_eq(buf_reserve_cap(&b, 10), 16, "the first allocation is init");
    cr_assert_eq(buf_reserve_cap(&b, 100), 128, "doubled until it fits");
    cr_assert_eq(buf_reserve(&b, 100), 0);
    cr_assert_eq(b.cap, 128);
    cr_assert_eq(buf_reserve_cap(&b, 100), 128, "no growth needed");
    b.wpos = 120;
    b.rpos = 100;
    cr_assert_eq(buf_reserve_cap(&b, 100), 128, "moving 20 unread bytes to the front is enough");
    cr_assert_eq(buf_reserve_cap(&b, 1100), 128, "past the cap: reserve would fail, not grow");
    cr_assert_eq(buf_reserve(&b, 1100), -ENOBUFS);
    cr_assert_eq(buf_reserve_cap(&b, 900), 1024, "clamped to the cap");
    buf_free(&b);
}

Test(buf_pool, an_emptied_buffer_gives_its_allocation_back_and_the_next_one_reuses_it)
{
    struct buf_pool p;
    cr_assert_eq(buf_pool_init(&p, 64, 2), 0);
    struct buf a, b;
    buf_init(&a, 64, 1024);
    buf_init(&b, 64, 1024);
    cr_assert_eq(buf_pool_take(&p, &a), 0);
    cr_assert_eq(a.cap, 64);
    char *mem = a.data;
    cr_assert_eq(buf_append(&a, "hello", 5), 0);
    buf_pool_give(&p, &a);
    cr_assert_eq(a.data, mem, "a buffer holding bytes keeps its allocation");
    buf_consume(&a, 5);
    buf_pool_give(&p, &a);
    cr_assert_null(a.data, "an empty buffer holds nothing");
    cr_assert_eq(a.cap, 0);
    cr_assert_eq(p.n, 1);
    cr_assert_eq(buf_pool_take(&p, &b), 0);
    cr_assert_eq(b.data, mem, "the pool's allocation is reused");
    cr_assert_eq(p.n, 0);
    buf_pool_give(&p, &b);
    buf_pool_fini(&p);
}

Test(buf_pool, a_grown_buffer_goes_back_to_the_allocator_and_the_pool_keeps_at_most_cap)
{
    struct buf_pool p;
    cr_assert_eq(buf_pool_init(&p, 64, 1), 0);
    struct buf a, b;
    buf_init(&a, 64, 1024);
    buf_init(&b, 64, 1024);
    cr_assert_eq(buf_pool_take(&p, &a), 0);
    cr_assert_eq(buf_reserve(&a, 500), 0);
    cr_assert_gt(a.cap, 64);
    buf_pool_give(&p, &a);
    cr_assert_null(a.data);
    cr_assert_eq(p.n, 0, "only allocations of the pool's size are kept");
    cr_assert_eq(buf_pool_take(&p, &a), 0);
    cr_assert_eq(buf_pool_take(&p, &b), 0);
    buf_pool_give(&p, &a);
    buf_pool_give(&p, &b);
    cr_assert_eq(p.n, 1, "the rest goes back to the allocator");
    buf_pool_fini(&p);
    cr_assert_eq(p.n, 0);
}
