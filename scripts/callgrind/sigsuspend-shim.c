/*
 * Preloaded into sidecast under valgrind 3.19 (Debian 12). The Swift runtime's main thread
 * ends in libdispatch's signal thread, which calls sigsuspend() with a mask in read-only
 * memory; valgrind writes to that mask while handling the call and dies of SIGSEGV. This
 * passes a writable copy instead. Used only by scripts/callgrind-bench.sh.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

int sigsuspend(const sigset_t *mask) {
    sigset_t copy = *mask;
    return (int)syscall(SYS_rt_sigsuspend, &copy, _NSIG / 8);
}
