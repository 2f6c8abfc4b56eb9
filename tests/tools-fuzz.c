/* Replays every input under tests/fuzz/<target>/ (the seed corpora and the crashes the fuzzers
 * found, named crash-*) through its target of tests/fuzz/targets.h, so that a parser bug once
 * found stays fixed under `make test` and `make check-asan`. A finding aborts the program (the
 * target's message is on stderr); a folder without a target or a target without inputs fails. */
#include "tests/fuzz/targets.h"
#include "model/pl.h"
#include "tests/fixture.h"
#include "tests/tap.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define FUZZ_ROOT "tests/fuzz"

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Replay the regular files of FUZZ_ROOT/name in name order; the number replayed, or -1 when
 * one cannot be read. */
static int replay(const struct fuzz_target *t)
{
    char dir[256], path[512];
    snprintf(dir, sizeof dir, "%s/%s", FUZZ_ROOT, t->name);
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    char *names[512];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 512)
        if (e->d_name[0] != '.')
            names[n++] = strdup(e->d_name);
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, by_name);
    int done = 0;
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        size_t size;
        uint8_t *data = (uint8_t *)tap_read_whole(path, &size);
        if (!data) {
            tap_diag("cannot read %s", path);
            done = -1;
        } else {
            t->fn(data, size);
            free(data);
            if (done >= 0)
                done++;
        }
        free(names[i]);
    }
    return done;
}

int main(void)
{
    for (int i = 0; i < fuzz_n_targets; i++) {
        const struct fuzz_target *t = &fuzz_targets[i];
        int n = replay(t);
        tap_ok(n > 0, "%s: %d inputs replayed (%s)", t->name, n, t->what);
    }
    /* A seed folder whose name is no target's would never be replayed. */
    DIR *d = opendir(FUZZ_ROOT);
    struct dirent *e;
    int stray = 0;
    while (d && (e = readdir(d))) {
        char path[512];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", FUZZ_ROOT, e->d_name);
        if (e->d_name[0] != '.' && stat(path, &st) == 0 && S_ISDIR(st.st_mode) &&
            !fuzz_find(e->d_name)) {
            tap_diag("%s is not a fuzz target's folder", path);
            stray++;
        }
    }
    if (d)
        closedir(d);
    tap_ok(d && stray == 0, "every folder under %s belongs to a target", FUZZ_ROOT);
    return tap_done();
}
