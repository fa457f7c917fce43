/*
 * inline_cpp: hot work in an always-inlined C++ method.
 *
 * Claim under test: the profile shows inlined functions as inline frames,
 * with demangled names. rprof_test::Hot::step is forced inline into
 * rprof_test::run_hot, so its instructions live in run_hot's symbol and
 * only DWARF's inline records can name it: a Location whose line[] is
 * step (callee) then run_hot (physical function), Function.name demangled
 * ("rprof_test::Hot::step(unsigned long)"), system_name mangled ("_Z...").
 * Built with g++ -O2 -g.
 */
#include <cstdio>
#include <cstdlib>

namespace rprof_test {

class Hot {
public:
    explicit Hot(unsigned long seed) : state_(seed | 1) {}

    /* xorshift64 rounds: cheap, serial and impossible to fold away. */
    __attribute__((always_inline)) inline unsigned long step(unsigned long rounds)
    {
        for (unsigned long i = 0; i < rounds; i++) {
            state_ ^= state_ << 13;
            state_ ^= state_ >> 7;
            state_ ^= state_ << 17;
        }
        return state_;
    }

private:
    unsigned long state_;
};

/* noipa: a real call with a real symbol, not a clone or a constant-propagated
 * copy, so that the physical frame is exactly rprof_test::run_hot(unsigned long). */
__attribute__((noipa)) unsigned long run_hot(unsigned long seed)
{
    Hot hot(seed);
    unsigned long acc = 0;
    for (int i = 0; i < 100; i++)
        acc += hot.step(10000);
    return acc;
}

} // namespace rprof_test

static volatile unsigned long sink;

int main()
{
    std::printf("ready\n");
    std::fflush(stdout);
    for (unsigned long seed = 1;; seed++)
        sink += rprof_test::run_hot(seed);
}
