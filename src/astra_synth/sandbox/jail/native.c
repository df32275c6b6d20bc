/* The per-call path of the sandbox in C: fork a child and confine it, then supervise it from the worker.
 *
 * Why C: a forked child shares the worker's memory copy-on-write, and every page either side writes
 * afterwards is copied (about 3 µs per page on our VMs). Confining the child from Python touched some
 * 120 pages, and the worker's own per-call Python (pipe, pidfd, select, wait, sweep) a hundred more. Here
 * the child writes little besides its C stack and the worker none of its Python heap.
 *
 * Loaded with ctypes by ``native.py``: no Python headers, so one build serves any interpreter version.
 * The child returns into Python only once fully confined; when a step fails it writes a "crashed" answer
 * naming the step and exits, so unconfined tool code can never run.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_LIMITS 8

/* Mirrored field by field in native.py. */
struct astra_jail {
    int devnull;
    int ruleset_fd;                  /* Landlock ruleset, -1: none */
    int uid;                         /* drop to this uid and gid, -1: keep */
    int drop_caps;                   /* empty every capability set (root in a user namespace) */
    const char *scratch;             /* the child's working directory */
    const struct sock_fprog *filter; /* seccomp program, NULL: none */
    int n_limits;
    int limit_which[MAX_LIMITS];
    struct rlimit limits[MAX_LIMITS];
};

/* How a child's call ended, filled by astra_wait. */
struct astra_outcome {
    int how; /* 0 answer complete (EOF), 1 child gone, 2 wall clock, 3 answer too large */
    int wait_status;
    long size;     /* bytes of answer in the buffer */
    double cpu_ms; /* the child and everything the sweep reaped */
};

enum { HOW_EOF, HOW_DONE, HOW_TIMEOUT, HOW_TOO_LARGE };

static void close_all_except(int keep_a, int keep_b) {
    int low = keep_a < keep_b ? keep_a : keep_b, high = keep_a < keep_b ? keep_b : keep_a;
    int from = 3;
    int keep[2] = {low, high};
    for (int i = 0; i < 2; i++) {
        if (keep[i] < from) continue;
        if (keep[i] > from) syscall(SYS_close_range, from, keep[i] - 1, 0);
        from = keep[i] + 1;
    }
    syscall(SYS_close_range, from, ~0U, 0);
}

static int drop_capabilities(void) {
    for (int cap = 0; cap <= 63; cap++)
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno == EINVAL) break; /* past the last cap */
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    return (int)syscall(SYS_capset, &header, data);
}

/* Confine the calling process for good; NULL on success, else the step that failed (errno set). */
static const char *confine(const struct astra_jail *j, int answer_fd, long cpu_soft, long cpu_hard) {
    if (setsid() < 0 && getsid(0) != getpid()) return "setsid"; /* fails only for a session leader */
    for (int fd = 0; fd < 3; fd++)
        if (dup2(j->devnull, fd) < 0) return "dup2";
    close_all_except(answer_fd, j->ruleset_fd);
    if (chdir(j->scratch) != 0) return "chdir";
    for (int i = 0; i < j->n_limits && i < MAX_LIMITS; i++)
        if (setrlimit(j->limit_which[i], &j->limits[i]) != 0) return "setrlimit";
    struct rlimit cpu = {(rlim_t)cpu_soft, (rlim_t)cpu_hard}; /* SIGXCPU, then SIGKILL */
    if (setrlimit(RLIMIT_CPU, &cpu) != 0) return "setrlimit cpu";
    if (j->uid >= 0) {
        if (setgroups(0, NULL) != 0) return "setgroups";
        if (setresgid(j->uid, j->uid, j->uid) != 0) return "setresgid";
        if (setresuid(j->uid, j->uid, j->uid) != 0) return "setresuid";
    } else if (j->drop_caps && drop_capabilities() != 0) {
        return "capset";
    }
    if ((j->ruleset_fd >= 0 || j->filter) && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return "no_new_privs";
    if (j->ruleset_fd >= 0) {
        if (syscall(SYS_landlock_restrict_self, j->ruleset_fd, 0) != 0) return "landlock_restrict_self";
        close(j->ruleset_fd);
    }
    if (j->filter && prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, j->filter, 0, 0) != 0) return "seccomp";
    return NULL;
}

static void write_all(int fd, const char *data, size_t size) {
    while (size > 0) {
        ssize_t n = write(fd, data, size);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
        data += n;
        size -= (size_t)n;
    }
}

/* Confine this process (the one-shot interpreter); NULL on success, else the failed step. */
const char *astra_confine(const struct astra_jail *j, int answer_fd, long cpu_soft, long cpu_hard) {
    return confine(j, answer_fd, cpu_soft, cpu_hard);
}

/* Fork a confined child with a pipe for its answer. The parent gets the child's pid and the read end in
 * *answer_fd; the child gets 0 and the write end, already confined. -1 (errno set) if nothing was forked.
 * The caller must be single-threaded: Python's own at-fork work does not run (see libc.fork). */
int astra_fork(const struct astra_jail *j, long cpu_soft, long cpu_hard, int *answer_fd) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return -1;
    pid_t pid = fork();
    if (pid < 0) {
        int err = errno;
        close(fds[0]);
        close(fds[1]);
        errno = err;
        return -1;
    }
    if (pid > 0) {
        close(fds[1]);
        *answer_fd = fds[0];
        return pid;
    }
    close(fds[0]);
    const char *failed = confine(j, fds[1], cpu_soft, cpu_hard);
    if (failed) {
        char message[256];
        int n = snprintf(message, sizeof message,
                         "{\"status\":\"crashed\",\"result\":null,\"error\":\"sandbox set-up failed: %s: %s\"}",
                         failed, strerror(errno));
        write_all(fds[1], message, n > 0 && (size_t)n < sizeof message ? (size_t)n : 0);
        _exit(0);
    }
    *answer_fd = fds[1];
    return 0;
}

static long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000L + t.tv_nsec;
}

static double cpu_ms(const struct rusage *u) {
    return (u->ru_utime.tv_sec + u->ru_stime.tv_sec) * 1e3 + (u->ru_utime.tv_usec + u->ru_stime.tv_usec) / 1e3;
}

static int wait_child(pid_t pid, int *status, struct rusage *usage, int flags) {
    int got;
    while ((got = wait4(pid, status, flags, usage)) < 0 && errno == EINTR) {
    }
    return got;
}

/* Read the child's answer into buf (at most cap bytes) until EOF, the child's exit or the deadline, kill
 * it when it overran, reap it, then kill and reap everything the call left behind: with sweep_all (the
 * worker is PID 1 of its namespace) every other process there, else the orphans a subreaper inherited.
 * Closes answer_fd. Returns 0, or -1 with errno when the child could not be watched. */
int astra_wait(int pid, int answer_fd, long timeout_ns, char *buf, long cap, int sweep_all,
               struct astra_outcome *out) {
    memset(out, 0, sizeof *out);
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd < 0) {
        int err = errno;
        close(answer_fd);
        errno = err;
        return -1;
    }
    long deadline = now_ns() + timeout_ns;
    struct pollfd fds[2] = {{answer_fd, POLLIN, 0}, {pidfd, POLLIN, 0}};
    out->how = HOW_TIMEOUT;
    for (;;) {
        long left = deadline - now_ns();
        if (left <= 0) break;
        struct timespec wait = {left / 1000000000L, left % 1000000000L};
        int ready = ppoll(fds, 2, &wait, NULL);
        if (ready < 0 && errno == EINTR) continue;
        if (ready <= 0) break;
        if (fds[0].revents) {
            ssize_t n = read(answer_fd, buf + out->size, (size_t)(cap - out->size));
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                out->how = HOW_EOF;
                break;
            }
            out->size += n;
            if (out->size >= cap) {
                out->how = HOW_TOO_LARGE;
                out->size = 0;
                break;
            }
        } else if (fds[1].revents) { /* gone, but a grandchild may hold the pipe open: take what is there */
            fcntl(answer_fd, F_SETFL, O_NONBLOCK);
            ssize_t n;
            while (out->size < cap && (n = read(answer_fd, buf + out->size, (size_t)(cap - out->size))) > 0)
                out->size += n;
            out->how = out->size >= cap ? HOW_TOO_LARGE : HOW_DONE;
            if (out->how == HOW_TOO_LARGE) out->size = 0;
            break;
        }
    }
    close(answer_fd);
    if (out->how == HOW_TIMEOUT || out->how == HOW_TOO_LARGE) syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
    close(pidfd);
    struct rusage usage;
    if (wait_child(pid, &out->wait_status, &usage, 0) == pid) out->cpu_ms += cpu_ms(&usage);
    if (sweep_all) kill(-1, SIGKILL);
    int status;
    while (wait_child(-1, &status, &usage, sweep_all ? 0 : WNOHANG) > 0) out->cpu_ms += cpu_ms(&usage);
    return 0;
}
