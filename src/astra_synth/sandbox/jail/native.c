/* The per-call path of the sandbox in C: the fork-server worker's call loop and the child's confinement.
 *
 * Why C: a forked child shares the worker's memory copy-on-write. After a fork every page either process
 * writes costs a page fault, and a copy in the child (about 3 µs a page on our VMs). Confining the child
 * from Python touched some 120 pages; the worker's per-call Python (frames, JSON, pipe, pidfd, select,
 * wait, sweep) touched about 180 more, in the worker and again in the next child. Here a call's frame is
 * read, the child forked, confined, watched, reaped and answered for without the worker running any
 * Python, and the child enters Python only to run the tool.
 *
 * Loaded with ctypes by ``native.py``: no Python headers, so one build serves any interpreter version.
 * The child returns into Python only once fully confined; when a step fails it writes a "crashed" answer
 * naming the step and exits, so unconfined tool code can never run.
 *
 * Call frames (executor -> worker), after the 4-byte big-endian length of every frame:
 *     'C' 0 0 0 | u32 cpu_seconds | u64 timeout_ns | the call, marshalled   (native byte order)
 * Call replies: i32 how | i32 wait_status (errno for HOW_FORK_FAILED) | f64 cpu_ms | the child's answer
 * The child writes its answer to its pipe as a native u64 length, then the answer.
 * Any other frame is returned to the Python worker as it is.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_LIMITS 8

/* Mirrored field by field in native.py. */
struct astra_jail {
    unsigned long cpu_ceiling;       /* the hard RLIMIT_CPU the process has (RLIM_INFINITY: none) */
    int devnull;
    int ruleset_fd;                  /* Landlock ruleset, -1: none */
    int uid;                         /* drop to this uid and gid, -1: keep */
    int drop_caps;                   /* empty every capability set (root in a user namespace) */
    const char *scratch;             /* the child's working directory */
    const struct sock_fprog *filter; /* seccomp program, NULL: none (or inherited from the worker) */
    const struct sock_fprog *no_fork_filter; /* added after it, NULL: none */
    int n_limits;
    int limit_which[MAX_LIMITS];
    struct rlimit limits[MAX_LIMITS];
};

/* The worker's call loop: its pipes, buffers and, on return, what it hands to Python. */
struct astra_server {
    const struct astra_jail *jail;
    int in_fd, out_fd;
    int sweep_all;    /* PID 1 of its namespace: kill every other process after a call */
    int forks_denied; /* the seccomp filter denies fork: a call's child can make no other process */
    int last_pid_fd;  /* /proc/sys/kernel/ns_last_pid, opened on first use; -1 before, -2 if unreadable */
    long answer_cap;  /* an answer this long or longer is "too large" */
    long max_frame;   /* the longest request frame accepted */
    char *payload;    /* on return: the frame (SERVE_FRAME) or the marshalled call (SERVE_CHILD) */
    long payload_size;
    int answer_fd;    /* on SERVE_CHILD: where the child writes its answer */
    char *frame;      /* buffers, owned here */
    long frame_cap;
    char *answer;
};

enum { HOW_EOF, HOW_DONE, HOW_TIMEOUT, HOW_TOO_LARGE, HOW_FORK_FAILED }; /* protocol.HOW, in order */
enum { SERVE_EOF, SERVE_FRAME, SERVE_CHILD, SERVE_DIRTY };

struct call_header {
    char kind[4]; /* "C\0\0\0" */
    uint32_t cpu_seconds;
    uint64_t timeout_ns;
};

struct reply_header {
    int32_t how;
    int32_t wait_status;
    double cpu_ms;
};

/* Close fds [from, to]: close_range(2), or one by one where the kernel lacks it (before 5.9). */
static void close_fds(unsigned int from, unsigned int to) {
    if (from > to || syscall(SYS_close_range, from, to, 0) == 0) return;
    long open_max = sysconf(_SC_OPEN_MAX);
    unsigned int last = open_max > 0 && (unsigned long)open_max - 1 < to ? (unsigned int)open_max - 1 : to;
    for (unsigned int fd = from; fd <= last; fd++) close((int)fd);
}

static void close_all_except(int keep_a, int keep_b) {
    int keep[2] = {keep_a < keep_b ? keep_a : keep_b, keep_a < keep_b ? keep_b : keep_a};
    int from = 3;
    for (int i = 0; i < 2; i++) {
        if (keep[i] < from) continue;
        close_fds((unsigned int)from, (unsigned int)keep[i] - 1);
        from = keep[i] + 1;
    }
    close_fds((unsigned int)from, ~0U);
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
static const char *confine(const struct astra_jail *j, int answer_fd, unsigned long cpu_seconds) {
    if (setsid() < 0 && getsid(0) != getpid()) return "setsid"; /* fails only for a session leader */
    for (int fd = 0; fd < 3; fd++)
        if (dup2(j->devnull, fd) < 0) return "dup2";
    close_all_except(answer_fd, j->ruleset_fd);
    if (chdir(j->scratch) != 0) return "chdir";
    for (int i = 0; i < j->n_limits && i < MAX_LIMITS; i++)
        if (setrlimit(j->limit_which[i], &j->limits[i]) != 0) return "setrlimit";
    struct rlimit cpu = {cpu_seconds, cpu_seconds + 1}; /* SIGXCPU, then SIGKILL a second later */
    if (cpu.rlim_max > j->cpu_ceiling) cpu.rlim_max = j->cpu_ceiling; /* raising it needs a capability */
    if (cpu.rlim_cur > cpu.rlim_max) cpu.rlim_cur = cpu.rlim_max;
    if (setrlimit(RLIMIT_CPU, &cpu) != 0) return "setrlimit cpu";
    if (j->uid >= 0) {
        if (setgroups(0, NULL) != 0) return "setgroups";
        if (setresgid(j->uid, j->uid, j->uid) != 0) return "setresgid";
        if (setresuid(j->uid, j->uid, j->uid) != 0) return "setresuid";
    } else if (j->drop_caps && drop_capabilities() != 0) {
        return "capset";
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return "no_new_privs"; /* Landlock and seccomp need it */
    if (j->ruleset_fd >= 0) {
        if (syscall(SYS_landlock_restrict_self, j->ruleset_fd, 0) != 0) return "landlock_restrict_self";
        close(j->ruleset_fd);
    }
    if (j->filter && prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, j->filter, 0, 0) != 0) return "seccomp";
    if (j->no_fork_filter && prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, j->no_fork_filter, 0, 0) != 0)
        return "seccomp no_fork";
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

/* Put this process under a seccomp program for good; 0, or -1 with errno. */
int astra_install_filter(const struct sock_fprog *filter) {
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -1;
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, filter, 0, 0);
}

/* Confine this process for good (the one-shot interpreter); NULL on success, else the failed step. */
const char *astra_confine(const struct astra_jail *j, int answer_fd, unsigned long cpu_seconds) {
    return confine(j, answer_fd, cpu_seconds);
}

/* Fork a confined child with a pipe for its answer: the parent gets the child's pid and the read end,
 * the child 0 and the write end, already confined. -1 (errno set) if nothing was forked. */
static pid_t fork_confined(const struct astra_jail *j, unsigned long cpu_seconds, int *answer_fd) {
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
    const char *failed = confine(j, fds[1], cpu_seconds);
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

static pid_t wait_child(pid_t pid, int *status, struct rusage *usage, int flags) {
    pid_t got;
    while ((got = wait4(pid, status, flags, usage)) < 0 && errno == EINTR) {
    }
    return got;
}

static int write_reply(int fd, const struct reply_header *header, const char *answer, long size) {
    uint32_t length = (uint32_t)(sizeof *header + (size_t)size);
    unsigned char prefix[4] = {length >> 24, length >> 16 & 0xff, length >> 8 & 0xff, length & 0xff};
    struct iovec parts[3] = {{prefix, 4}, {(void *)header, sizeof *header}, {(void *)answer, (size_t)size}};
    int count = 3;
    struct iovec *part = parts;
    while (count > 0) {
        ssize_t n = writev(fd, part, count);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -1;
        while (count > 0 && (size_t)n >= part->iov_len) {
            n -= (ssize_t)part->iov_len;
            part++;
            count--;
        }
        if (count > 0) {
            part->iov_base = (char *)part->iov_base + n;
            part->iov_len -= (size_t)n;
        }
    }
    return 0;
}

/* The child's answer is an 8-byte length, then that many bytes; complete once all of them are here. */
static int answer_complete(const char *buf, long size) {
    uint64_t declared;
    if (size < 8) return 0;
    memcpy(&declared, buf, 8);
    return (uint64_t)(size - 8) == declared;
}

/* The CPU time a live (or zombie) process has used so far, every thread of it; -1 if it cannot be read. */
static double process_cpu_ms(pid_t pid) {
    clockid_t clock;
    struct timespec t;
    if (clock_getcpuclockid(pid, &clock) != 0 || clock_gettime(clock, &t) != 0) return -1;
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* Whether a call's child is the only process the call made, asked once the child is killed (and so can
 * no longer fork): fork is denied, or, the worker being PID 1 of its namespace, no pid was allocated
 * there after the child's (threads take pids too, so a call that made any is not "alone"). */
static int alone(struct astra_server *s, pid_t pid) {
    if (s->forks_denied) return 1;
    if (!s->sweep_all) return 0;
    if (s->last_pid_fd == -1) {
        s->last_pid_fd = open("/proc/sys/kernel/ns_last_pid", O_RDONLY | O_CLOEXEC);
        if (s->last_pid_fd < 0) s->last_pid_fd = -2;
    }
    char text[24];
    ssize_t n = s->last_pid_fd >= 0 ? pread(s->last_pid_fd, text, sizeof text - 1, 0) : -1;
    if (n <= 0) return 0;
    text[n] = 0;
    return atol(text) == pid;
}

/* Watch a call's child: read its answer (at most cap bytes) until the answer is complete, the child is
 * gone or the deadline passes; reply to the executor; kill the child if it overran and reap it; then kill
 * and reap everything the call left behind: with sweep_all (PID 1 of its namespace) every other process
 * there, else the orphans a subreaper inherited. Closes answer_fd.
 *
 * Once the answer is complete the child is killed (it has nothing left to do), and when it is the only
 * process of the call the reply goes out at once, with the child's CPU time so far: its exit tears down
 * its address space (~0.4 ms here), and the caller need not wait for that. Anything else is replied to
 * after the reaping, with the wait status and every reaped process's CPU time, so nothing a call started
 * outlives its reply. Returns 0, or -1 when the reply could not be written. */
static int watch(struct astra_server *s, pid_t pid, int answer_fd, long timeout_ns) {
    char *buf = s->answer;
    long cap = s->answer_cap;
    /* Polled to notice the child's exit even when a grandchild holds the pipe open; without a pidfd
     * (ENOSYS) poll skips the negative fd and the deadline still holds. Signals go by pid: the child is
     * not reaped yet, so its pid cannot have been reused. */
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    long deadline = now_ns() + timeout_ns, size = 0;
    struct pollfd fds[2] = {{answer_fd, POLLIN, 0}, {pidfd, POLLIN, 0}};
    struct reply_header reply = {HOW_TIMEOUT, 0, 0};
    int replied = 0, kill_child = 1; /* unless it is known to be gone, or cannot be watched */
    for (;;) {
        long left = deadline - now_ns();
        if (left <= 0) break;
        struct timespec wait = {left / 1000000000L, left % 1000000000L};
        int ready = ppoll(fds, 2, &wait, NULL);
        if (ready < 0 && errno == EINTR) continue;
        if (ready <= 0) break;
        if (fds[0].fd >= 0 && fds[0].revents) {
            ssize_t n = read(answer_fd, buf + size, (size_t)(cap - size));
            if (n < 0 && errno == EINTR) continue;
            if (n > 0) size += n;
            if (size >= cap) {
                reply.how = HOW_TOO_LARGE;
                break;
            }
            if (n > 0 && answer_complete(buf, size)) {
                kill(pid, SIGKILL);
                reply.how = HOW_EOF;
                if (alone(s, pid) && (reply.cpu_ms = process_cpu_ms(pid)) >= 0) {
                    if (write_reply(s->out_fd, &reply, buf + 8, size - 8) != 0) return -1;
                    replied = 1;
                }
            } else if (n > 0) {
                continue;
            } else if (!replied) {
                reply.how = HOW_EOF; /* every write end is closed */
            }
            fds[0].fd = -1; /* from now on only the child's exit, or the deadline */
            if (pidfd < 0) {
                kill_child = 0; /* no way to see it exit: wait for it */
                break;
            }
        } else if (fds[1].revents) {
            kill_child = 0;
            if (!replied && reply.how != HOW_EOF) { /* a grandchild may hold the pipe: take what is there */
                fcntl(answer_fd, F_SETFL, O_NONBLOCK);
                ssize_t n;
                while (size < cap && (n = read(answer_fd, buf + size, (size_t)(cap - size))) > 0) size += n;
                reply.how = size >= cap ? HOW_TOO_LARGE : HOW_DONE;
            }
            break;
        }
    }
    close(answer_fd);
    if (pidfd >= 0) close(pidfd);
    if (kill_child) kill(pid, SIGKILL);
    if (kill_child && !replied && reply.how == HOW_EOF) reply.how = HOW_TIMEOUT; /* closed its pipe, then hung */
    struct rusage usage;
    double reaped_ms = 0;
    if (wait_child(pid, &reply.wait_status, &usage, 0) == pid) reaped_ms += cpu_ms(&usage);
    if (s->sweep_all) kill(-1, SIGKILL);
    int status;
    while (wait_child(-1, &status, &usage, s->sweep_all ? 0 : WNOHANG) > 0) reaped_ms += cpu_ms(&usage);
    if (replied) return 0;
    reply.cpu_ms = reaped_ms;
    long answer = reply.how == HOW_TOO_LARGE || size < 8 ? 0 : size - 8;
    return write_reply(s->out_fd, &reply, buf + 8, answer);
}

/* Exactly size bytes: 1, 0 on EOF before the first byte, -1 on an error or EOF midway. */
static int read_exact(int fd, char *buf, long size) {
    long done = 0;
    while (done < size) {
        ssize_t n = read(fd, buf + done, (size_t)(size - done));
        if (n < 0 && errno == EINTR) continue;
        if (n == 0 && done == 0) return 0;
        if (n <= 0) return -1;
        done += n;
    }
    return 1;
}

static int read_frame(struct astra_server *s, long *size) {
    unsigned char length[4];
    int got = read_exact(s->in_fd, (char *)length, 4);
    if (got <= 0) return got;
    *size = (long)length[0] << 24 | (long)length[1] << 16 | (long)length[2] << 8 | (long)length[3];
    if (*size > s->max_frame) {
        errno = EMSGSIZE;
        return -1;
    }
    if (*size > s->frame_cap) {
        char *grown = realloc(s->frame, (size_t)*size);
        if (!grown) return -1;
        s->frame = grown;
        s->frame_cap = *size;
    }
    return read_exact(s->in_fd, s->frame, *size) > 0 ? 1 : -1;
}

/* Whether the scratch directory holds anything (or cannot be read); its mode is reset first, since the
 * call's uid owns it and may have changed it. */
static int scratch_dirty(const char *path) {
    if (chmod(path, 0700) != 0) return 1;
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return 1;
    char entries[1024];
    long n;
    int dirty = 0;
    while (!dirty && (n = syscall(SYS_getdents64, fd, entries, sizeof entries)) > 0) {
        for (long at = 0; at < n;) {
            unsigned short length = *(unsigned short *)(entries + at + 16); /* d_reclen */
            const char *name = entries + at + 19;                           /* d_name */
            if (strcmp(name, ".") != 0 && strcmp(name, "..") != 0) dirty = 1;
            at += length;
        }
    }
    close(fd);
    return dirty || n < 0;
}

/* Serve call frames until something needs Python. Returns SERVE_FRAME (a non-call frame, in payload),
 * SERVE_CHILD (in a forked, confined child: the marshalled call in payload, answer_fd open), SERVE_DIRTY
 * (the last call left files in scratch: wipe it, then call again), SERVE_EOF (the executor closed the
 * pipe), or -1 with errno (a broken pipe or malformed frame: the worker should end). */
int astra_serve(struct astra_server *s) {
    if (!s->answer && !(s->answer = malloc((size_t)s->answer_cap))) return -1;
    for (;;) {
        long size;
        int got = read_frame(s, &size);
        if (got <= 0) return got == 0 ? SERVE_EOF : -1;
        struct call_header call;
        if (size < (long)sizeof call || s->frame[0] != 'C') {
            s->payload = s->frame;
            s->payload_size = size;
            return SERVE_FRAME;
        }
        memcpy(&call, s->frame, sizeof call);
        int answer_fd;
        pid_t pid = fork_confined(s->jail, call.cpu_seconds, &answer_fd);
        if (pid == 0) {
            s->payload = s->frame + sizeof call;
            s->payload_size = size - (long)sizeof call;
            s->answer_fd = answer_fd;
            return SERVE_CHILD;
        }
        if (pid < 0) {
            struct reply_header reply = {HOW_FORK_FAILED, errno, 0};
            if (write_reply(s->out_fd, &reply, NULL, 0) != 0) return -1;
        } else if (watch(s, pid, answer_fd, (long)call.timeout_ns) != 0) {
            return -1;
        }
        if (scratch_dirty(s->jail->scratch)) return SERVE_DIRTY;
    }
}
