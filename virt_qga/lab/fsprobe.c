/*
 * fsprobe FILE SECONDS
 *
 * For SECONDS, append one line holding CLOCK_MONOTONIC nanoseconds to FILE with
 * write(2) about every millisecond. While the filesystem under FILE is frozen, the
 * write blocks; the largest gap between consecutive lines is then the real frozen
 * window as the guest's applications saw it. Built static so the guest needs no libc.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: fsprobe FILE SECONDS\n");
        return 2;
    }
    double seconds = atof(argv[2]);
    int fd = open(argv[1], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "fsprobe: %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    long long end = now_ns() + (long long)(seconds * 1e9);
    struct timespec tick = {0, 1000000};
    char line[32];
    long long count = 0;
    for (;;) {
        long long t = now_ns();
        if (t >= end)
            break;
        int n = snprintf(line, sizeof line, "%lld\n", t);
        if (write(fd, line, (size_t)n) != n) {
            fprintf(stderr, "fsprobe: write: %s\n", strerror(errno));
            close(fd);
            return 1;
        }
        count++;
        nanosleep(&tick, NULL);
    }
    close(fd);
    printf("%lld\n", count);
    return 0;
}
