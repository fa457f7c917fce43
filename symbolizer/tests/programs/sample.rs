// A Rust program for the demangling tests: its functions must come back as `sample::...`
// without the hash.
#[inline(never)]
pub fn compute_checksum(data: &[u8]) -> u64 {
    data.iter()
        .fold(0xcbf29ce484222325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100000001b3))
}

pub mod nested {
    pub struct Accumulator(pub u64);

    impl Accumulator {
        #[inline(never)]
        pub fn absorb(&mut self, value: u64) {
            self.0 = self.0.rotate_left(7) ^ value;
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mut acc = nested::Accumulator(1);
    for arg in &args {
        acc.absorb(compute_checksum(arg.as_bytes()));
    }
    println!("{}", std::hint::black_box(acc.0));
}
