/* Built twice (VARIANT 1 and 2) for the dwz test. */
#include <stdio.h>
#include "shared.h"

__attribute__((noipa)) long measure(const struct shape *s) { return shape_area(s) * VARIANT + s->kind; } /* MARK_MEASURE */

int main(int argc, char **argv) { struct shape s = {{{argc, 2, 3}, {5, 7, 11}, {13, 17, 19}, {23, 29, 31}}, argv[0], argc}; printf("%ld\n", measure(&s)); return 0; }
