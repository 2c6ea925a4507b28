/* sock: the listen list as memcached's -l reads it (sock_endpoint_next), and the listeners and
 * counts made from it. */
#include "petrel/sock.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

/* The only address of list; fails the test unless list holds exactly one good address. */
static struct sock_endpoint
only(const char *list)
{
    const char *c = list;
    struct sock_endpoint ep;
    char why[256] = "";
    cr_assert_eq(sock_endpoint_next(&c, &ep, why, sizeof(why)), 1, "%s: %s", list, why);
    struct sock_endpoint rest;
    cr_assert_eq(sock_endpoint_next(&c, &rest, why, sizeof(why)), 0, "%s", list);
    return ep;
}

/* Fails the test unless the first address of list is refused with a message that says says. */
static void
refused(const char *list, const char *says)
{
    const char *c = list;
    struct sock_endpoint ep;
    char why[256] = "";
    cr_assert_eq(sock_endpoint_next(&c, &ep, why, sizeof(why)), -EINVAL, "%s", list);
    cr_assert(strstr(why, says) != NULL, "%s: '%s' lacks '%s'", list, why, says);
}

Test(sock, a_host_alone_has_no_port_of_its_own)
{
    struct sock_endpoint ep = only("127.0.0.1");
    cr_assert_str_eq(ep.host, "127.0.0.1");
    cr_assert_eq(ep.port, -1);
}

Test(sock, host_colon_port_gives_the_port)
{
    struct sock_endpoint ep = only("localhost:22199");
    cr_assert_str_eq(ep.host, "localhost");
    cr_assert_eq(ep.port, 22199);
}

Test(sock, bracketed_ipv6_with_and_without_port)
{
    struct sock_endpoint ep = only("[::1]:11211");
    cr_assert_str_eq(ep.host, "::1");
    cr_assert_eq(ep.port, 11211);
    ep = only("[fe80::1]");
    cr_assert_str_eq(ep.host, "fe80::1");
    cr_assert_eq(ep.port, -1);
}

Test(sock, an_ipv6_address_without_brackets_has_no_port)
{
    struct sock_endpoint ep = only("::1");
    cr_assert_str_eq(ep.host, "::1");
    cr_assert_eq(ep.port, -1);
}

Test(sock, star_is_every_interface)
{
    cr_assert_str_eq(only("*").host, "");
    struct sock_endpoint ep = only("*:11211");
    cr_assert_str_eq(ep.host, "");
    cr_assert_eq(ep.port, 11211);
}

Test(sock, ports_0_and_65535_are_the_bounds)
{
    cr_assert_eq(only("a:0").port, 0);
    cr_assert_eq(only("a:65535").port, 65535);
    refused("a:65536", "out of range");
}

Test(sock, commas_and_semicolons_separate_and_empty_addresses_are_skipped)
{
    const char *c = ",a:1;;b,";
    struct sock_endpoint ep;
    cr_assert_eq(sock_endpoint_next(&c, &ep, NULL, 0), 1);
    cr_assert_str_eq(ep.host, "a");
    cr_assert_eq(sock_endpoint_next(&c, &ep, NULL, 0), 1);
    cr_assert_str_eq(ep.host, "b");
    cr_assert_eq(sock_endpoint_next(&c, &ep, NULL, 0), 0);
}

Test(sock, bad_forms_are_refused_quoting_the_address)
{
    refused("[::1", "'[::1': no ']'");
    refused("host:", "'host:': no port");
    refused("host:99999", "port 99999 is out of range");
    refused("host:abc", "'abc' is not a port number");
    refused("host:-1", "'-1' is not a port number");
    refused(":11211", "no host");
    refused("[]:1", "no address");
    refused("[::1]x", "only ':PORT'");
    refused("[::1]:", "no port");
}

Test(sock, memcacheds_per_address_prefixes_are_refused)
{
    refused("notls:127.0.0.1:1", "prefixes");
    refused("mtls:127.0.0.1:1", "prefixes");
    refused("proto[ascii]:127.0.0.1:1", "prefixes");
    refused("tag[x]:127.0.0.1:1", "prefixes");
}

Test(sock, a_host_longer_than_a_name_can_be_is_refused)
{
    char list[SOCK_HOST_MAX + 3];
    memset(list, 'a', SOCK_HOST_MAX + 1);
    list[SOCK_HOST_MAX + 1] = '\0';
    refused(list, "longer than");
}

Test(sock, an_address_own_port_replaces_the_given_one_once_each)
{
    size_t n = 0;
    char err[256] = "";
    /* The second 127.0.0.1:1 is the first again; 127.0.0.1 takes port 1 too. */
    cr_assert_eq(sock_listen_count("127.0.0.1:1,127.0.0.1:2,127.0.0.1:1,127.0.0.1", 1,
                                   SOCK_PORT_OWN, &n, err, sizeof(err)),
                 0, "%s", err);
    cr_assert_eq(n, 2);
    n = 0;
    cr_assert_eq(
        sock_listen_count("127.0.0.1:1,127.0.0.1:2", 9, SOCK_PORT_HOST, &n, err, sizeof(err)), 0,
        "%s", err);
    cr_assert_eq(n, 1, "a second port opens once per host");
}

Test(sock, a_host_that_does_not_resolve_is_named)
{
    size_t n = 0;
    char err[256] = "";
    cr_assert_eq(
        sock_listen_count("no-such-host.invalid:1", 0, SOCK_PORT_OWN, &n, err, sizeof(err)),
        -EINVAL);
    cr_assert(strstr(err, "'no-such-host.invalid'") != NULL, "%s", err);
}

Test(sock, listens_on_the_address_own_port)
{
    int fds[4];
    size_t n = 0;
    char err[256] = "";
    /* Port 0 for the address: an ephemeral port, not the given 1 (which root alone could take). */
    cr_assert_eq(sock_listen_tcp("127.0.0.1:0", 1, SOCK_PORT_OWN, 4, fds, 4, &n, err, sizeof(err)),
                 0, "%s", err);
    cr_assert_eq(n, 1);
    char name[64];
    sock_name(fds[0], name, sizeof(name));
    cr_assert(strncmp(name, "127.0.0.1:", 10) == 0 && strcmp(name, "127.0.0.1:1") != 0, "%s", name);
    close(fds[0]);
}
