/* Prints the address of wait_for_stdin, then waits until its stdin closes. Built static so
 * that it runs alone in an otherwise empty root directory (a stand-in for a container). */
#include <stdio.h>
#include <unistd.h>

__attribute__((noipa)) int wait_for_stdin(void) { char buf[16]; return (int)read(0, buf, sizeof buf); } /* MARK_WAIT */

int main(void) { printf("%p\n", (void *)&wait_for_stdin); fflush(stdout); return wait_for_stdin() < 0; }
