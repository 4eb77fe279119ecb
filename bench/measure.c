/* Run a command and report its wall time and peak memory: the benchmark's
 * stopwatch.
 *
 *   measure RESULT-FILE PROGRAM ARGS...
 *
 * forks, execs PROGRAM (stdin, stdout, stderr and the environment are
 * inherited), waits for it with wait4(2), and writes one line to RESULT-FILE:
 * "EXIT-STATUS WALL-NANOSECONDS MAXRSS-KB".  Exits 0 when it measured.
 *
 * Why not wait4 from Python directly: on exec, Linux records the high-water
 * RSS of the memory the process had before, and a child forked (or vforked)
 * from the benchmark starts with the benchmark's memory, so ru_maxrss would
 * be at least the benchmark's own size.  This program is about 1 MB.
 */
#include <stdio.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    struct timespec start, end;
    struct rusage usage;
    int status;
    pid_t pid;
    FILE *out;

    if (argc < 3) {
        fputs("usage: measure RESULT-FILE PROGRAM ARGS...\n", stderr);
        return 64;
    }
    clock_gettime(CLOCK_MONOTONIC, &start);
    pid = fork();
    if (pid < 0) {
        perror("measure: fork");
        return 71;
    }
    if (pid == 0) {
        execv(argv[2], argv + 2);
        perror("measure: exec");
        _exit(127);
    }
    if (wait4(pid, &status, 0, &usage) < 0) {
        perror("measure: wait4");
        return 71;
    }
    clock_gettime(CLOCK_MONOTONIC, &end);
    out = fopen(argv[1], "w");
    if (out == NULL) {
        perror("measure: result file");
        return 73;
    }
    fprintf(out, "%d %lld %ld\n", status,
            (long long)(end.tv_sec - start.tv_sec) * 1000000000LL + (end.tv_nsec - start.tv_nsec),
            usage.ru_maxrss);
    return fclose(out) == 0 ? 0 : 74;
}
