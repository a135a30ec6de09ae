/*
 * The floor: the least work any MTA must do per message under smtp-source with Postfix's
 * durability, and nothing else. W worker processes accept() on one listener and speak just
 * enough SMTP (220, 250 to every command, 354 after DATA, 250 after ".", 221 after QUIT);
 * per message: create a file in incoming/ under a temporary name, rename it to its final
 * name, write the message, fchmod 0700, fsync, close, reply 250, then rename it to active/
 * and unlink it there (standing in for the whole delivery). No logging, no queue manager,
 * no delivery agent, no address parsing. bench/floor.sh runs it; an MTA cannot beat it.
 *
 * With a third argument D (> 0) the floor also delivers to a Maildir the way local(8) must
 * at least: after the 250 reply the worker hands the file to one of D delivery processes
 * (as local_destination_concurrency_limit allows 2 at a time to one user) over a pipe; a
 * delivery process renames it to active/, reads it, creates maildir/tmp/NAME, writes,
 * fsyncs, closes, renames it into maildir/new/ and unlinks the queue file.
 *
 * Usage: floor PORT WORKERS [D]   (run in a directory with incoming/, active/ and, with D,
 * maildir/tmp/ and maildir/new/)
 */
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define IN_MAX 65536
#define MSG_MAX (4 << 20)

struct conn {
    int fd;
    char in[IN_MAX];
    int start, end; /* unread bytes are in[start..end) */
};

/* Returns the length of the next line (with its LF) at c->in + c->start, or -1 at EOF. */
static int next_line(struct conn *c) {
    for (;;) {
        char *nl = memchr(c->in + c->start, '\n', c->end - c->start);
        if (nl)
            return (int)(nl - (c->in + c->start)) + 1;
        if (c->start > 0) {
            memmove(c->in, c->in + c->start, c->end - c->start);
            c->end -= c->start;
            c->start = 0;
        }
        if (c->end == IN_MAX) /* an overlong line: take it as it is */
            return c->end;
        ssize_t n = read(c->fd, c->in + c->end, IN_MAX - c->end);
        if (n <= 0)
            return -1;
        c->end += (int)n;
    }
}

static void say(int fd, const char *s) {
    if (write(fd, s, strlen(s)) < 0)
        return;
}

static int queue_message(const char *data, size_t len, unsigned long seq) {
    char tmp[64], name[64];
    snprintf(tmp, sizeof tmp, "incoming/%d.%lu.tmp", (int)getpid(), seq);
    snprintf(name, sizeof name, "incoming/%d.%lu", (int)getpid(), seq);
    int f = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (f < 0 || rename(tmp, name) < 0)
        return -1;
    int ok = write(f, data, len) == (ssize_t)len && fchmod(f, 0700) == 0 && fsync(f) == 0;
    return (close(f) == 0 && ok) ? 0 : -1;
}

static int handoff = -1; /* write end of the delivery pipe, or -1 */

struct job {
    int pid;
    unsigned long seq;
};

static void deliver(unsigned long seq) {
    char name[64], active[64];
    if (handoff >= 0) {
        struct job j = {(int)getpid(), seq};
        if (write(handoff, &j, sizeof j) != sizeof j)
            perror("floor: handoff");
        return;
    }
    snprintf(name, sizeof name, "incoming/%d.%lu", (int)getpid(), seq);
    snprintf(active, sizeof active, "active/%d.%lu", (int)getpid(), seq);
    if (rename(name, active) == 0)
        unlink(active);
}

/* A Maildir delivery process: takes jobs from the pipe until it closes. */
static void maildir_agent(int jobs, char *buf) {
    struct job j;
    while (read(jobs, &j, sizeof j) == sizeof j) {
        char name[64], active[64], tmp[96], fin[96];
        snprintf(name, sizeof name, "incoming/%d.%lu", j.pid, j.seq);
        snprintf(active, sizeof active, "active/%d.%lu", j.pid, j.seq);
        snprintf(tmp, sizeof tmp, "maildir/tmp/%d.%d.%lu", (int)getpid(), j.pid, j.seq);
        snprintf(fin, sizeof fin, "maildir/new/%d.%d.%lu", (int)getpid(), j.pid, j.seq);
        if (rename(name, active) < 0)
            continue;
        int q = open(active, O_RDONLY | O_CLOEXEC);
        ssize_t len = q < 0 ? -1 : read(q, buf, MSG_MAX);
        if (q >= 0)
            close(q);
        int f = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (len < 0 || f < 0 || write(f, buf, (size_t)len) != len || fsync(f) < 0 || close(f) < 0
            || rename(tmp, fin) < 0 || unlink(active) < 0)
            perror("floor: maildir delivery");
    }
}

static void session(struct conn *c, char *msg, unsigned long *seq) {
    c->start = c->end = 0;
    say(c->fd, "220 floor ESMTP\r\n");
    int n;
    while ((n = next_line(c)) >= 0) {
        char *line = c->in + c->start;
        c->start += n;
        if (n >= 4 && strncasecmp(line, "QUIT", 4) == 0) {
            say(c->fd, "221 Bye\r\n");
            return;
        }
        if (n >= 4 && strncasecmp(line, "DATA", 4) == 0) {
            say(c->fd, "354 go ahead\r\n");
            size_t len = 0;
            for (;;) {
                if ((n = next_line(c)) < 0)
                    return;
                line = c->in + c->start;
                c->start += n;
                if ((n == 3 && line[0] == '.' && line[1] == '\r') || (n == 2 && line[0] == '.'))
                    break;
                if (len + n <= MSG_MAX) {
                    memcpy(msg + len, line, n);
                    len += n;
                }
            }
            unsigned long id = (*seq)++;
            if (queue_message(msg, len, id) == 0) {
                say(c->fd, "250 queued\r\n");
                deliver(id);
            } else {
                say(c->fd, "451 write error\r\n");
            }
            continue;
        }
        say(c->fd, "250 ok\r\n");
    }
}

int main(int argc, char **argv) {
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: floor PORT WORKERS [D]\n");
        return 2;
    }
    int port = atoi(argv[1]), workers = atoi(argv[2]), agents = argc == 4 ? atoi(argv[3]) : 0;
    if (agents > 0) {
        int p[2];
        if (pipe(p) < 0) {
            perror("floor: pipe");
            return 1;
        }
        for (int d = 0; d < agents; d++) {
            if (fork() == 0) {
                close(p[1]);
                maildir_agent(p[0], malloc(MSG_MAX));
                _exit(0);
            }
        }
        close(p[0]);
        handoff = p[1];
    }
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)port);
    a.sin_addr.s_addr = htonl(0x7f000001);
    if (bind(s, (struct sockaddr *)&a, sizeof a) < 0 || listen(s, 128) < 0) {
        perror("floor: bind/listen");
        return 1;
    }
    for (int w = 0; w < workers; w++) {
        if (fork() == 0) {
            static struct conn c;
            char *msg = malloc(MSG_MAX);
            unsigned long seq = 0;
            for (;;) {
                c.fd = accept(s, NULL, NULL);
                if (c.fd < 0)
                    continue;
                session(&c, msg, &seq);
                close(c.fd);
            }
        }
    }
    while (wait(NULL) > 0)
        ;
    return 0;
}
