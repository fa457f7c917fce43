//! The allocation functions probed, what their arguments mean, and how to name an allocator.

/// What a probed function does with its arguments (`a`, `b`, `c`: the first three integer
/// arguments, as the x86-64 calling convention passes them in rdi, rsi, rdx).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Call {
    /// `malloc(size)`, `valloc(size)`, `operator new(size, ...)`, `mallocx(size, flags)`.
    Malloc,
    /// `calloc(n, size)`.
    Calloc,
    /// `realloc(ptr, size)`, `rallocx(ptr, size, flags)`.
    Realloc,
    /// `memalign(align, size)`, `aligned_alloc(align, size)`.
    Aligned,
    /// `posix_memalign(&ptr, align, size)`: the pointer is stored through its first argument.
    PosixMemalign,
    /// `free(ptr)`, `operator delete(ptr, ...)`, `sdallocx(ptr, size, flags)`.
    Free,
}

impl Call {
    /// The bytes asked for, from the arguments.
    pub fn size(self, [a, b, c]: [u64; 3]) -> u64 {
        match self {
            Call::Malloc => a,
            Call::Calloc => a.saturating_mul(b),
            Call::Realloc | Call::Aligned => b,
            Call::PosixMemalign => c,
            Call::Free => 0,
        }
    }

    /// The registers (x86-64 numbers) holding the arguments the call's figures need: rdi 7,
    /// rsi 6, rdx 2.
    pub fn argument_registers(self) -> &'static [u8] {
        match self {
            Call::Malloc | Call::Free => &[7],
            Call::Calloc | Call::Realloc | Call::Aligned => &[7, 6],
            Call::PosixMemalign => &[7, 6, 2],
        }
    }

    /// Whether the call returns new memory (and gets a return probe).
    pub fn allocates(self) -> bool {
        self != Call::Free
    }
}

/// The functions probed in a file that defines `malloc` (an allocator: libc, jemalloc,
/// tcmalloc, mimalloc, or a static executable with one of them). C++'s operators are probed
/// only where an allocator defines them: libstdc++'s call `malloc`, which is probed already.
pub const FUNCTIONS: &[(&str, Call)] = &[
    ("malloc", Call::Malloc),
    ("calloc", Call::Calloc),
    ("realloc", Call::Realloc),
    ("free", Call::Free),
    ("posix_memalign", Call::PosixMemalign),
    ("aligned_alloc", Call::Aligned),
    ("memalign", Call::Aligned),
    ("valloc", Call::Malloc),
    ("pvalloc", Call::Malloc),
    // jemalloc's own API.
    ("mallocx", Call::Malloc),
    ("rallocx", Call::Realloc),
    ("dallocx", Call::Free),
    ("sdallocx", Call::Free),
    // operator new / new[], plain, nothrow and aligned.
    ("_Znwm", Call::Malloc),
    ("_Znam", Call::Malloc),
    ("_ZnwmRKSt9nothrow_t", Call::Malloc),
    ("_ZnamRKSt9nothrow_t", Call::Malloc),
    ("_ZnwmSt11align_val_t", Call::Malloc),
    ("_ZnamSt11align_val_t", Call::Malloc),
    ("_ZnwmSt11align_val_tRKSt9nothrow_t", Call::Malloc),
    ("_ZnamSt11align_val_tRKSt9nothrow_t", Call::Malloc),
    // operator delete / delete[], plain, sized, aligned.
    ("_ZdlPv", Call::Free),
    ("_ZdaPv", Call::Free),
    ("_ZdlPvm", Call::Free),
    ("_ZdaPvm", Call::Free),
    ("_ZdlPvSt11align_val_t", Call::Free),
    ("_ZdaPvSt11align_val_t", Call::Free),
    ("_ZdlPvmSt11align_val_t", Call::Free),
    ("_ZdaPvmSt11align_val_t", Call::Free),
];

/// The call `name` makes, if it is one of [`FUNCTIONS`].
pub fn call_of(name: &str) -> Option<Call> {
    FUNCTIONS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, call)| call)
}

/// Which allocator a file that defines `malloc` is, from the other symbols it defines.
pub fn allocator_name(defined: &[&str]) -> &'static str {
    let has = |name: &str| defined.contains(&name);
    if has("mallocx") {
        "jemalloc"
    } else if has("tc_malloc") {
        "tcmalloc"
    } else if has("mi_malloc") {
        "mimalloc"
    } else if has("__libc_malloc") {
        "glibc"
    } else {
        "malloc"
    }
}

/// The symbols that tell allocators apart (see [`allocator_name`]).
pub const MARKERS: &[&str] = &["mallocx", "tc_malloc", "mi_malloc", "__libc_malloc"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_come_from_the_right_arguments() {
        assert_eq!(Call::Malloc.size([100, 7, 9]), 100);
        assert_eq!(Call::Calloc.size([10, 24, 9]), 240);
        assert_eq!(Call::Calloc.size([u64::MAX, 2, 0]), u64::MAX, "saturates");
        assert_eq!(Call::Realloc.size([0x1000, 64, 9]), 64);
        assert_eq!(Call::Aligned.size([64, 4096, 9]), 4096);
        assert_eq!(Call::PosixMemalign.size([0x7ff0, 64, 512]), 512);
        assert!(!Call::Free.allocates() && Call::Realloc.allocates());
        assert_eq!(call_of("_ZdlPvm"), Some(Call::Free));
        assert_eq!(call_of("strdup"), None);
    }

    #[test]
    fn allocators_are_told_apart_by_their_own_symbols() {
        assert_eq!(allocator_name(&["malloc", "__libc_malloc"]), "glibc");
        assert_eq!(allocator_name(&["malloc", "mallocx"]), "jemalloc");
        assert_eq!(allocator_name(&["malloc"]), "malloc");
    }
}
