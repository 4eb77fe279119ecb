/* The benchmark's sendmail: reads the message to EOF and accepts it.
 *
 * bench/run.py compiles it into bench/.cache/ so that the fan-out figures
 * measure mlmpipe, not a sendmail.  When $BENCH_STANDIN_LOG names a file,
 * each call appends one line to it: the number of recipients after "--".
 * The benchmark adds them up to check that every member was handed over.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    char buf[65536];
    ssize_t got;
    const char *log;
    int i, fd, len, recipients = 0;

    while ((got = read(0, buf, sizeof buf)) != 0) {
        if (got < 0 && errno != EINTR)
            return 75;
    }
    log = getenv("BENCH_STANDIN_LOG");
    if (log == NULL || *log == '\0')
        return 0;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            recipients = argc - i - 1;
            break;
        }
    }
    fd = open(log, O_WRONLY | O_APPEND | O_CREAT, 0600);
    if (fd < 0)
        return 75;
    len = snprintf(buf, sizeof buf, "%d\n", recipients);
    if (write(fd, buf, len) != len)
        return 75;
    return close(fd) == 0 ? 0 : 75;
}
