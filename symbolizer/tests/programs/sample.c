/* A small C program whose functions the symbolizer tests look up by name and by the line of
 * their marker comment. noipa keeps gcc from inlining, cloning or renaming them at -O2. Each
 * function sits on one line: at -O2 the line-table rows at a function's entry name several
 * lines (signature, first statement, loop condition), and this makes the answer unambiguous. */
#include <stdio.h>

__attribute__((noipa)) int compute_sum(int n) { int total = 0; for (int i = 0; i < n; i++) total += i * i; return total; } /* MARK_COMPUTE_SUM */

__attribute__((noipa)) static long scramble(long seed) { for (int i = 0; i < 10; i++) seed = seed * 6364136223846793005L + 1442695040888963407L; return seed; } /* MARK_SCRAMBLE */

int main(int argc, char **argv) { (void)argv; printf("%d %ld\n", compute_sum(argc * 100), scramble(argc)); return 0; } /* MARK_MAIN */
