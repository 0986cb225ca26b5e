/*
 * valgrind_uring_wait.c: lets the engine's io_uring executors run under valgrind 3.19
 * (Debian bookworm's). Linked only into the copy of smoke.c that runs under valgrind.
 *
 * Why: valgrind runs one client thread at a time and releases its lock only around system
 * calls it knows may block. Valgrind 3.19 does not count io_uring_enter among them, so a
 * glommio executor that parks in io_uring_enter(IORING_ENTER_GETEVENTS, min_complete >= 1)
 * keeps the lock, and every other thread of the process (the C caller, the other executors)
 * stops until that executor gets a completion, which may never come. A 30-line C program
 * with one thread parked in io_uring_enter and another printing reproduces it: natively it
 * prints, under valgrind 3.19 it hangs. glommio reaches io_uring_enter through the C
 * library's syscall(), as liburing does.
 *
 * What: this file defines syscall(), which the executable exports and so takes the place of
 * the C library's for every shared object, libengine_ffi.so included. An io_uring_enter that
 * would wait for completions first submits (without waiting), then waits in poll() on the ring
 * descriptor, which is readable once a completion is queued and which valgrind knows may
 * block, and then reaps with the original arguments, which no longer waits. Every other call
 * goes to the C library unchanged. The engine's behaviour is the same; only where the thread
 * sleeps moves, so memcheck still sees every allocation, read and write of the engine.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <linux/io_uring.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>

typedef long (*syscall_fn)(long number, ...);

static syscall_fn real_syscall;

__attribute__((constructor)) static void find_real_syscall(void) {
    void *sym = dlsym(RTLD_NEXT, "syscall");
    if (sym == NULL) {
        fprintf(stderr, "valgrind_uring_wait.c: no syscall() in the C library\n");
        abort();
    }
    memcpy(&real_syscall, &sym, sizeof real_syscall);
}

long syscall(long number, ...) {
    /* Like the C library's own syscall(), take six register-sized arguments whatever the
     * call needs; the kernel ignores the ones it does not use. */
    va_list ap;
    va_start(ap, number);
    long a[6];
    for (int i = 0; i < 6; i++) {
        a[i] = va_arg(ap, long);
    }
    va_end(ap);

    long flags = a[3];
    int waits = number == __NR_io_uring_enter && (flags & IORING_ENTER_GETEVENTS) && a[2] > 0 &&
                !(flags & IORING_ENTER_EXT_ARG);
    if (!waits) {
        return real_syscall(number, a[0], a[1], a[2], a[3], a[4], a[5]);
    }
    long submitted = 0;
    if (a[1] > 0) {
        submitted = real_syscall(number, a[0], a[1], 0L, flags & ~(long)IORING_ENTER_GETEVENTS,
                                 a[4], a[5]);
        if (submitted < 0) {
            return submitted;
        }
    }
    struct pollfd ring = {.fd = (int)a[0], .events = POLLIN, .revents = 0};
    if (poll(&ring, 1, -1) < 0) {
        /* EINTR and the like: report what was submitted, as io_uring_enter would. */
        return submitted > 0 ? submitted : -1;
    }
    long reaped = real_syscall(number, a[0], 0L, a[2], flags, a[4], a[5]);
    return reaped < 0 ? reaped : submitted;
}
