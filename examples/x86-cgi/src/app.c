/*
 * A native CGI program for Zerocell (runtime = "x86"): built with `musl-gcc -static` by
 * scripts/build-examples.mjs into bin/app. It initialises, calls zerocell_ready() (the snapshot is
 * taken there), then answers one request per resume: CGI meta-variables in the environment, the
 * body on stdin, a CGI response on stdout.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "zerocell.h"

static unsigned long squares[1000];

int main(void)
{
    for (unsigned long i = 0; i < 1000; i++) squares[i] = i * i; /* init, kept in the snapshot */
    zerocell_ready();
    const char *method = getenv("REQUEST_METHOD");
    const char *path = getenv("PATH_INFO");
    const char *query = getenv("QUERY_STRING");
    unsigned long n = query != NULL ? strtoul(query, NULL, 10) % 1000 : 7;
    printf("Status: 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nX-Powered-By: x86-64\r\n\r\n");
    printf("Hello from native x86-64 on Zerocell\n");
    printf("method=%s path=%s n=%lu n^2=%lu\n", method ? method : "-", path ? path : "-", n, squares[n]);
    return 0;
}
