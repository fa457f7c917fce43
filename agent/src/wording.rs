//! Counts in words, as a person writes them: "1 thread", "2 threads".

/// `count` and `noun`, the noun plural unless the count is one (nouns with a regular `-s`).
pub fn count(count: impl Into<u64>, noun: &str) -> String {
    let count = count.into();
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_is_singular_and_the_rest_plural() {
        assert_eq!(count(1u32, "thread"), "1 thread");
        assert_eq!(count(0u32, "thread"), "0 threads");
        assert_eq!(count(7u64, "sample"), "7 samples");
    }
}
