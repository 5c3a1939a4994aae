/* The lab's SSH session wrapper (sshd's ForceCommand): log the command, then run it as sshd runs an exec request,
 * with the user's login shell from the host's passwd (`shell -c command`): /bin/csh for root up to FreeBSD 13.x.
 * One line per command in LOG: `<UTC time with ms> <user> <command, newlines as spaces>`.
 * It replaced a shell script whose date and tr cost three processes per command.
 *     session LOG
 */
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    const char *command = getenv("SSH_ORIGINAL_COMMAND");
    const char *user = getenv("USER");
    if (argc > 1) {
        struct timespec now;
        struct tm tm;
        char stamp[40];
        clock_gettime(CLOCK_REALTIME, &now);
        gmtime_r(&now.tv_sec, &tm);
        size_t n = strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(stamp + n, sizeof stamp - n, ".%03ldZ", now.tv_nsec / 1000000);
        const char *shown = command && *command ? command : "<interactive shell>";
        size_t size = strlen(stamp) + strlen(user ? user : "") + strlen(shown) + 4;
        char *line = malloc(size);
        if (line != NULL) {
            int len = snprintf(line, size, "%s %s %s\n", stamp, user ? user : "", shown);
            for (int i = 0; i < len - 1; i++)
                if (line[i] == '\n') line[i] = ' ';
            int fd = open(argv[1], O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
            if (fd >= 0) {
                (void)!write(fd, line, (size_t)len);  /* one write: lines of parallel sessions never mix */
                close(fd);
            }
            free(line);
        }
    }
    struct passwd *pw = user ? getpwnam(user) : NULL;
    const char *shell = pw && pw->pw_shell && *pw->pw_shell ? pw->pw_shell : "/bin/sh";
    if (command && *command) execl(shell, shell, "-c", command, (char *)NULL);
    else execl(shell, shell, "-i", (char *)NULL);
    perror(shell);
    return 127;
}
