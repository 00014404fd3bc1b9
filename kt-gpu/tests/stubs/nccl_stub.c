/* A stand-in for NCCL (libnccl.so.2), for kt-gpu's tests on machines without one.
 * -DSTUB_VERSION=<code> sets what ncclGetVersion reports (default 23004, 2.30.4).
 * -DSTUB_COMM adds communicator functions whose behaviour the world size selects:
 *   1: init completes after 3 polls of ncclCommGetAsyncError (finalize likewise);
 *   2: init never completes (a member that never joins);
 *   3: init fails with ncclRemoteError after 2 polls (a member that died).
 * stub_aborts() and stub_destroys() count ncclCommAbort and ncclCommDestroy calls. */
#include <stdlib.h>
#include <string.h>

#ifndef STUB_VERSION
#define STUB_VERSION 23004
#endif

typedef struct { char internal[128]; } ncclUniqueId;

int ncclGetVersion(int *version) {
    *version = STUB_VERSION;
    return 0;
}

int ncclGetUniqueId(ncclUniqueId *id) {
    for (int i = 0; i < 128; i++) id->internal[i] = (char)(i ^ 0x5a);
    return 0;
}

const char *ncclGetErrorString(int result) {
    switch (result) {
    case 4: return "invalid argument (run with NCCL_DEBUG=WARN for details)";
    case 6: return "remote process exited or there was a network error";
    default: return "stub error";
    }
}

const char *ncclGetLastError(void *comm) {
    (void)comm;
    return "stub: last error";
}

#ifdef STUB_COMM
struct comm { int mode, polls; };
typedef struct { size_t size; unsigned magic, version; int blocking; } config;
static int aborts, destroys;

int stub_aborts(void) { return aborts; }
int stub_destroys(void) { return destroys; }

int ncclCommInitRankConfig(struct comm **out, int nranks, ncclUniqueId id, int rank,
                           config *cfg) {
    /* The config must be a non-blocking one and the id must arrive intact, by value. */
    if (cfg->magic != 0xcafebeef || cfg->blocking != 0 || cfg->size < 20 ||
        cfg->version < 21400 || id.internal[1] != (char)(1 ^ 0x5a) || rank >= nranks)
        return 4;
    struct comm *c = calloc(1, sizeof *c);
    c->mode = nranks;
    *out = c;
    return 7; /* ncclInProgress */
}

int ncclCommGetAsyncError(struct comm *c, int *state) {
    c->polls++;
    if (c->mode == 2) *state = 7;
    else if (c->mode == 3) *state = c->polls > 2 ? 6 : 7;
    else *state = c->polls > 3 ? 0 : 7;
    return 0;
}

int ncclCommAbort(struct comm *c) { aborts++; free(c); return 0; }
int ncclCommFinalize(struct comm *c) { c->polls = 0; return 7; }
int ncclCommDestroy(struct comm *c) { destroys++; free(c); return 0; }
int ncclAllReduce(const void *s, void *r, size_t n, int t, int op, void *c, void *st) {
    (void)s; (void)r; (void)n; (void)t; (void)op; (void)c; (void)st;
    return 0;
}
int ncclBroadcast(const void *s, void *r, size_t n, int t, int root, void *c, void *st) {
    (void)s; (void)r; (void)n; (void)t; (void)root; (void)c; (void)st;
    return 0;
}
#endif
