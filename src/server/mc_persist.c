/* mc_persist: the server's memory file (include/petrel/mc_persist.h). */
#include "petrel/mc_persist.h"

#include "petrel/log.h"
#include "petrel/mc_exec.h"
#include "petrel/seg_file.h"

#include <pthread.h>
#include <string.h>
#include <time.h>

/*
 * Opened once by the first worker, under the lock; the other workers wait for it. The file stays
 * open for the life of the process: its lock (flock) tells another Petrel that it is in use.
 */
static pthread_mutex_t file_lock = PTHREAD_MUTEX_INITIALIZER;
static struct seg_file *file;
static bool file_tried;
static int file_rc;

static unsigned
shard_of(uint64_t hash, unsigned n)
{
    return mc_shard_of(hash, n);
}

static int
attach(unsigned id, unsigned n, const char *path, struct seg_options *o)
{
    pthread_mutex_lock(&file_lock);
    if (!file_tried) {
        file_tried = true;
        struct seg_file_info info;
        file_rc = seg_file_open(&file, path, o, n, shard_of, &info);
        if (file_rc < 0) {
            log_error("--memory-file: %s", info.note);
        } else if (info.reset || info.dropped_items > 0) {
            /* Starting empty, or re-sharded into less memory: items were lost, say it louder. */
            log_warn("--memory-file: %s", info.note);
        } else {
            log_info("--memory-file: %s", info.note);
        }
    }
    int rc = file_rc;
    if (rc == 0) {
        seg_file_shard(file, id, o);
    }
    pthread_mutex_unlock(&file_lock);
    return rc;
}

static double
mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int
mc_persist_create(unsigned id, unsigned n, const struct config *cfg, struct seg_options *o,
                  struct seg **out)
{
    const char *path = config_str(cfg, "memory-file");
    if (path[0] == '\0') {
        return seg_create(out, o);
    }
    int rc = attach(id, n, path, o);
    if (rc < 0) {
        return rc;
    }
    double t0 = mono_ms();
    rc = seg_create(out, o);
    if (rc < 0) {
        return rc;
    }
    struct seg_stats st;
    seg_stats_get(*out, &st);
    if (st.recovery_reset) {
        log_warn("worker %u: its region of the memory file had another layout: starting empty", id);
    }
    log_info("worker %u: recovered %llu items (%llu bytes) from the memory file in %.1f ms; "
             "dropped %llu damaged or torn, %llu expired, %llu bad segments",
             id, (unsigned long long)st.recovered_items, (unsigned long long)st.bytes,
             mono_ms() - t0, (unsigned long long)st.recovery_damaged,
             (unsigned long long)st.recovery_expired, (unsigned long long)st.recovery_bad_segs);
    return 0;
}
