// A C++ program with an always_inline member function in a namespace, inlined into a
// non-inlined caller: the symbolizer must report both frames.
#include <cstdio>

namespace ns {
struct Widget {
    int factor;
    __attribute__((always_inline)) inline int compute(int x) {
        return x * factor + (x >> 3) * (x ^ factor); // MARK_INLINE_BODY
    }
};
} // namespace ns

__attribute__((noipa)) int caller(ns::Widget *widget, int count) {
    int acc = 0;
    for (int i = 0; i < count; i++)
        acc += widget->compute(i) ^ acc; // MARK_CALL_SITE
    return acc;
}

int main(int argc, char **) {
    ns::Widget widget{argc + 2};
    std::printf("%d\n", caller(&widget, argc * 1000));
    return 0;
}
