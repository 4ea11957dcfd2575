/* canned.c: the ceiling for 1 KiB cache hits (scenario E of bench/run.sh).
 *
 * A single-threaded, edge-triggered epoll server that does no HTTP work: each request head on a
 * keep-alive connection (the bytes up to CRLFCRLF, not parsed further) gets the same prebuilt
 * response, shaped like a real hit (status line, Content-Length, Content-Type, Cache-Control,
 * 1 KiB body). What it spends per request is what the kernel spends on epoll + recv + send.
 *
 * usage: canned PORT      (listens on 127.0.0.1:PORT; runs until killed)
 * build: gcc -O2 -o canned canned.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_FDS 4096 /* connections on fds >= this are refused (closed at once) */
#define HEAD_MAX 2048 /* a request head that does not fit is an error: the connection is closed */
#define BODY 1024

static char head[MAX_FDS][HEAD_MAX]; /* per fd: bytes received but not yet answered */
static int head_len[MAX_FDS];
static char resp[BODY + 256];
static int resp_len;

/* Read what is available and answer every complete request head. Returns -1 to close. */
static int serve(int fd) {
    for (;;) {
        int room = HEAD_MAX - head_len[fd];
        ssize_t n = recv(fd, head[fd] + head_len[fd], room, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return errno == EAGAIN ? 0 : -1;
        if (n == 0) return -1; /* the client closed */
        head_len[fd] += n;
        char *end;
        while ((end = memmem(head[fd], head_len[fd], "\r\n\r\n", 4)) != NULL) {
            if (send(fd, resp, resp_len, MSG_NOSIGNAL) != resp_len) return -1; /* error or short */
            head_len[fd] -= end + 4 - head[fd];
            memmove(head[fd], end + 4, head_len[fd]);
        }
        if (head_len[fd] == HEAD_MAX) return -1;
        /* A short read drained the socket: the next arrival raises a new edge (as nginx does),
         * so skip the extra recv() that would only return EAGAIN. */
        if (n < room) return 0;
    }
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: %s PORT\n", argv[0]); return 2; }
    resp_len = snprintf(resp, sizeof resp, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n"
        "Content-Type: application/octet-stream\r\nCache-Control: public, max-age=3600\r\n\r\n", BODY);
    memset(resp + resp_len, 'x', BODY);
    resp_len += BODY;

    int one = 1, ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[1])),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 4096) < 0) {
        perror("canned: listen"); return 1;
    }
    int ep = epoll_create1(0);
    struct epoll_event ev = { .events = EPOLLIN | EPOLLET, .data.fd = ls }, evs[256];
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev) < 0) { perror("canned: epoll"); return 1; }
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd, c;
            if (fd != ls) {
                if (serve(fd) < 0) close(fd); /* close() also removes it from the epoll set */
                continue;
            }
            for (;;) { /* edge-triggered: accept until the backlog is empty */
                if ((c = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) < 0) {
                    if (errno == EINTR || errno == ECONNABORTED) continue;
                    break; /* EAGAIN: drained (or out of fds: give up until the next edge) */
                }
                struct epoll_event cev = { .events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.fd = c };
                if (c >= MAX_FDS || setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0
                    || epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev) < 0)
                    close(c);
                else
                    head_len[c] = 0;
            }
        }
    }
}
