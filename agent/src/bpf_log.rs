//! The kernel's refusal of a BPF program, said in one line.

/// An error as a comment line: a refused program's message carries the verifier's whole log
/// (thousands of lines); its first line, the verdict (the log's last lines but statistics) and
/// the system error that closes the message say why.
pub fn in_one_line(message: &str) -> String {
    let lines: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    let Some((first, rest)) = lines.split_first() else {
        return String::new();
    };
    if rest.is_empty() {
        return (*first).to_owned();
    }
    let statistics = ["processed ", "verification time", "stack depth"];
    let is_verdict =
        |line: &&&str| !line.starts_with(':') && !statistics.iter().any(|s| line.starts_with(s));
    let verdict: Vec<&str> = rest.iter().filter(is_verdict).copied().collect();
    let verdict = &verdict[verdict.len().saturating_sub(2)..];
    let error = rest.last().filter(|line| line.starts_with(':'));
    format!(
        "{first} … {}{}",
        verdict.join("; "),
        error.copied().unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verifier_log_comes_down_to_its_first_line_and_verdict() {
        let refused = "cannot load: the BPF_PROG_LOAD syscall failed. Verifier output: arg#0\n\
                       0: R1=ctx() R10=fp0\n\
                       434: (79) r4 = *(u64 *)(r2 -136)\n\
                       invalid access to map value, value_size=16384 off=16384 size=8\n\
                       R2 max value is outside of the allowed memory range\n\
                       verification time 613344 usec\n\
                       stack depth 272\n\
                       processed 92579 insns (limit 1000000)\n\
                       : Permission denied (os error 13)";
        assert_eq!(
            in_one_line(refused),
            "cannot load: the BPF_PROG_LOAD syscall failed. Verifier output: arg#0 … invalid \
             access to map value, value_size=16384 off=16384 size=8; R2 max value is outside of \
             the allowed memory range: Permission denied (os error 13)"
        );
        assert_eq!(in_one_line("no CAP_BPF"), "no CAP_BPF");
        assert_eq!(in_one_line(""), "");
    }
}
