/* Types and an inline function shared by two programs, so that dwz moves their DWARF into a
 * common supplementary file. */
struct point { long x, y, z; };
struct shape { struct point corners[4]; const char *name; int kind; };

__attribute__((always_inline)) static inline long shape_area(const struct shape *s) {
    return (s->corners[1].x - s->corners[0].x) * (s->corners[2].y - s->corners[0].y); /* MARK_SHARED_INLINE */
}
