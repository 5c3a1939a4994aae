/* The lab's FreeBSD commands (ifconfig, sysctl, kldload...): one small client for all of them.
 *
 * It asks this host's emulator daemon (lab/freebsd/zygote.py, listening on SOCKET inside the host's own /etc) to
 * run the command named by argv[0]: the daemon forks a copy of itself that has the emulator already loaded,
 * hands it this process's stdin, stdout and stderr (SCM_RIGHTS), its arguments, environment, working directory
 * and user (the socket's peer credentials), and sends back the exit status. Starting Python and importing the
 * emulator for every command cost ~55 ms of CPU; this costs a fork. Without a daemon (at boot, or after a crash)
 * it runs the emulator directly, as before. Built by lab/files.py with -DEMU_RUN="<lab>/emu/run.py".
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define SOCKET "/etc/carplab/emu.sock"
#ifndef EMU_RUN
#error "build with -DEMU_RUN=\"/path/to/emu/run.py\""
#endif
#ifndef PYTHON
#define PYTHON "/usr/bin/python3"
#endif

extern char **environ;

static void run_directly(const char *name, int argc, char **argv) {
    char **args = calloc((size_t)argc + 4, sizeof *args);
    if (args == NULL) _exit(71);
    args[0] = "python3";
    args[1] = "-IS";
    args[2] = EMU_RUN;
    args[3] = (char *)name;
    for (int i = 1; i < argc; i++) args[i + 3] = argv[i];
    execv(PYTHON, args);
    fprintf(stderr, "%s: cannot start the lab's emulator: %s\n", name, strerror(errno));
    _exit(127);
}

/* name, cwd, the number of arguments, the arguments, then the environment: NUL-terminated strings. */
static char *request(const char *name, int argc, char **argv, size_t *size) {
    char cwd[4096], count[16];
    if (getcwd(cwd, sizeof cwd) == NULL) strcpy(cwd, "/");
    snprintf(count, sizeof count, "%d", argc - 1);
    const char *head[] = {name, cwd, count};
    size_t n = 4;
    for (int i = 0; i < 3; i++) n += strlen(head[i]) + 1;
    for (int i = 1; i < argc; i++) n += strlen(argv[i]) + 1;
    for (char **e = environ; *e; e++) n += strlen(*e) + 1;
    char *buf = malloc(n), *p = buf + 4;
    if (buf == NULL) return NULL;
    uint32_t len = htonl((uint32_t)(n - 4));
    memcpy(buf, &len, 4);
    for (int i = 0; i < 3; i++) p = stpcpy(p, head[i]) + 1;
    for (int i = 1; i < argc; i++) p = stpcpy(p, argv[i]) + 1;
    for (char **e = environ; *e; e++) p = stpcpy(p, *e) + 1;
    *size = n;
    return buf;
}

static int send_request(int s, char *buf, size_t size) {
    int fds[3] = {0, 1, 2};
    char control[CMSG_SPACE(sizeof fds)];
    memset(control, 0, sizeof control);
    struct iovec iov = {.iov_base = buf, .iov_len = size};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
                         .msg_controllen = sizeof control};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof fds);
    memcpy(CMSG_DATA(c), fds, sizeof fds);
    ssize_t sent = sendmsg(s, &msg, MSG_NOSIGNAL);
    if (sent < 0) return -1;
    for (size_t done = (size_t)sent; done < size;) {
        ssize_t more = send(s, buf + done, size - done, MSG_NOSIGNAL);
        if (more < 0 && errno == EINTR) continue;
        if (more <= 0) return -1;
        done += (size_t)more;
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *name = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    strncpy(addr.sun_path, SOCKET, sizeof addr.sun_path - 1);
    if (s < 0 || connect(s, (struct sockaddr *)&addr, sizeof addr) < 0) run_directly(name, argc, argv);
    size_t size = 0;
    char *buf = request(name, argc, argv, &size);
    if (buf == NULL || send_request(s, buf, size) < 0) run_directly(name, argc, argv);
    unsigned char status[4];
    size_t got = 0;
    while (got < sizeof status) {
        ssize_t n = read(s, status + got, sizeof status - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            fprintf(stderr, "%s: the lab's emulator went away\n", name);
            return 255;
        }
        got += (size_t)n;
    }
    return (int)(((uint32_t)status[0] << 24 | (uint32_t)status[1] << 16 | (uint32_t)status[2] << 8 | status[3]) & 0xff);
}
