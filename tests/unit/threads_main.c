/*
 * Runs the multi-threaded scenarios without Criterion, so that ThreadSanitizer can watch them
 * (Criterion's runner cannot start under TSan). Prints one line per scenario and a summary.
 */
#include "thread_scenarios.h"

#include <stdio.h>

int
main(void)
{
    struct {
        const char *name;
        const char *err;
    } r[] = {
        {"ring: two threads move every item once, in order",
         scenario_ring_stress(scenario_count("PETREL_RING_STRESS_ITEMS", 20 * 1000 * 1000))},
        {"ring: no wakeup is lost",
         scenario_ring_wakeup(scenario_count("PETREL_WAKEUP_ROUNDS", 100000))},
        {"ring: a mesh of workers delivers every message once, in order",
         scenario_ring_mesh(scenario_count("PETREL_MESH_ITEMS", 300000))},
    };
    unsigned passed = 0, failed = 0;
    for (size_t i = 0; i < sizeof(r) / sizeof(r[0]); i++) {
        printf("%s %s%s%s\n", r[i].err ? "FAIL" : "ok  ", r[i].name, r[i].err ? ": " : "",
               r[i].err ? r[i].err : "");
        r[i].err ? failed++ : passed++;
    }
    printf("%u passed, %u failed\n", passed, failed);
    return failed ? 1 : 0;
}
