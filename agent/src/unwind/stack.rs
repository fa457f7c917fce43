//! The copy of a thread's stack that the unwinder reads instead of the target's memory.

/// Stack bytes copied from the target, starting at the stack pointer at the time of the copy.
#[derive(Debug, Clone, Copy)]
pub struct StackMemory<'a> {
    sp: u64,
    bytes: &'a [u8],
}

impl<'a> StackMemory<'a> {
    pub fn new(sp: u64, bytes: &'a [u8]) -> Self {
        StackMemory { sp, bytes }
    }

    /// Where the copy starts (the stack pointer).
    pub fn sp(&self) -> u64 {
        self.sp
    }

    /// The copied bytes.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Whether target address `addr` lies inside the copy.
    pub fn holds(&self, addr: u64) -> bool {
        addr.checked_sub(self.sp)
            .and_then(|offset| usize::try_from(offset).ok())
            .is_some_and(|offset| offset < self.bytes.len())
    }

    /// Reads the 8-byte little-endian word at target address `addr`, if it lies inside the copy.
    /// Anything outside it (below sp, past the copy, overflowing) is an error, which ends the
    /// unwind as truncated rather than inventing frames from stale memory.
    pub fn read_u64(&self, addr: u64) -> Option<u64> {
        let offset = usize::try_from(addr.checked_sub(self.sp)?).ok()?;
        let word = self.bytes.get(offset..offset.checked_add(8)?)?;
        Some(u64::from_le_bytes(word.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_only_inside_the_copy() {
        let bytes: Vec<u8> = (0u8..24).collect();
        let stack = StackMemory::new(0x1000, &bytes);
        assert_eq!(stack.read_u64(0x1000), Some(0x0706_0504_0302_0100));
        assert_eq!(stack.read_u64(0x1010), Some(0x1716_1514_1312_1110));
        assert_eq!(stack.read_u64(0x1011), None);
        assert_eq!(stack.read_u64(0x0ff8), None);
        assert_eq!(stack.read_u64(u64::MAX), None);
        assert!(stack.holds(0x1000) && stack.holds(0x1017));
        assert!(!stack.holds(0x1018) && !stack.holds(0x0fff) && !stack.holds(u64::MAX));
    }
}
