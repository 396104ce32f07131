/*
 * zerocell.h — the Zerocell "ready" trap for native x86-64 programs (runtime = "x86").
 *
 * A CGI program initialises (parses config, builds tables, warms caches), then calls
 * zerocell_ready(). Zerocell snapshots the process there; every request resumes from that
 * snapshot with zerocell_ready() returning 0 and `environ` pointing at the request's CGI
 * meta-variables (so getenv("PATH_INFO") etc. see the request), the request body on stdin,
 * the response expected on stdout. The program then answers and exits, or calls
 * zerocell_ready() again: the request is complete and the process waits for the next one (a
 * daemon-mode instance resumes it there; a snapshot-mode one is reset to the first call). In that
 * loop style, fflush(stdout) and clearerr(stdin) before calling it again:
 *
 *     init();
 *     for (;;) { zerocell_ready(); handle(getenv("PATH_INFO")); fflush(stdout); clearerr(stdin); }
 *
 * Anything computed before the call is shared by every request: draw randomness (getrandom)
 * after it, not before. Outside Zerocell the system call fails with ENOSYS and nothing changes,
 * so the same binary still runs as an ordinary CGI program.
 *
 * The trap is system call number 0x5a0ce11 with rdi = &environ.
 */
#ifndef ZEROCELL_H
#define ZEROCELL_H

#define ZEROCELL_SYS_READY 0x5a0ce11L

extern char **environ;

static inline long zerocell_ready(void)
{
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(ZEROCELL_SYS_READY), "D"(&environ)
                     : "rcx", "r11", "memory");
    return ret;
}

#endif
