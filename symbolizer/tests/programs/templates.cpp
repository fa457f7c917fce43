// Names C++ users expect: a class template instantiated with an empty parameter pack, and a
// function GCC splits into a hot part and a `.cold` clone.
#include <cstdio>
#include <cstdlib>

struct Function {
  int value;
};

template <typename IR, typename... Extra>
struct AnalysisManager {
  __attribute__((noinline)) int run(IR *ir, Extra... extra) {
    return ir->value * 3 + static_cast<int>(sizeof...(extra));
  }
};

__attribute__((noinline)) int checked(int x) {
  if (__builtin_expect(x < 0, 0)) {
    fprintf(stderr, "negative: %d\n", x);
    abort();
  }
  return x * 2;
}

int main(int argc, char **) {
  Function function{argc};
  AnalysisManager<Function> manager;
  return manager.run(&function) + checked(argc);
}
