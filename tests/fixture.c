#include "tests/fixture.h"

#include "tests/tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct gpt_config tap_byte_config(int n_positions, int n_embd, int n_layer, int n_head)
{
    struct gpt_config c;
    gpt_config_gpt2(&c);
    c.vocab_size = 257;
    c.n_positions = n_positions;
    c.n_embd = n_embd;
    c.n_layer = n_layer;
    c.n_head = n_head;
    c.bos_token_id = c.eos_token_id = 256;
    snprintf(c.tokenizer, sizeof c.tokenizer, "byte");
    return c;
}

static char dir[64];

const char *tap_tmpdir(const char *tag)
{
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/plumb-%s-XXXXXX", tag);
        if (!mkdtemp(dir))
            tap_skip_all("cannot make a temporary folder");
    }
    return dir;
}

const char *tap_tmp(const char *name)
{
    static char bufs[64][512];
    static int next;
    char *b = bufs[next++ % 64];
    snprintf(b, sizeof bufs[0], "%s/%s", dir, name);
    return b;
}

void tap_write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0)
        tap_diag("cannot write %s", path);
}
