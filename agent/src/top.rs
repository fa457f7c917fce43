//! `rprof-agent top FILE...`, and the table `record` prints when it finishes.

use std::fmt::Write;

use anyhow::{bail, Context, Result};
use rprof_proto::Profile;

use crate::cli::TopArgs;

pub fn run(args: &TopArgs) -> Result<()> {
    let several = args.files.len() > 1;
    for (n, file) in args.files.iter().enumerate() {
        let bytes = read_bounded(file)?;
        let profile = rprof_proto::decode(&bytes)
            .with_context(|| format!("{} is not a pprof profile", file.display()))?;
        let index = sample_index(&profile, args.sample_index.as_deref())?;
        if several {
            // head(1)'s way of telling files apart.
            let gap = if n == 0 { "" } else { "\n" };
            println!("{gap}==> {} <==", file.display());
        }
        print!("{}", table(&profile, index, args.n));
    }
    Ok(())
}

/// The largest profile file `top` reads (256 MiB): a path like /dev/zero must not eat memory.
const MAX_FILE_BYTES: u64 = 256 << 20;

fn read_bounded(path: &std::path::Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        bail!(
            "{} is larger than {} MiB: not a pprof profile",
            path.display(),
            MAX_FILE_BYTES >> 20
        );
    }
    Ok(bytes)
}

/// Resolves `--sample_index`: a number, or a sample type name; default: the profile's default
/// sample type, else the last one (pprof's rule).
pub fn sample_index(profile: &Profile, wanted: Option<&str>) -> Result<usize> {
    let types: Vec<&str> = profile
        .sample_type
        .iter()
        .map(|t| profile.string(t.r#type))
        .collect();
    if types.is_empty() {
        bail!("the profile has no sample types");
    }
    let wanted = wanted
        .or_else(|| Some(profile.string(profile.default_sample_type)).filter(|s| !s.is_empty()));
    match wanted {
        None => Ok(types.len() - 1),
        Some(w) => match w.parse::<usize>() {
            Ok(i) if i < types.len() => Ok(i),
            _ => types.iter().position(|t| *t == w).with_context(|| {
                format!("no sample type {w:?}; the profile has {}", types.join(", "))
            }),
        },
    }
}

/// The top `n` functions by flat value, formatted like `go tool pprof -top`.
pub fn table(profile: &Profile, sample_index: usize, n: usize) -> String {
    let (kind, unit) = profile.sample_type.get(sample_index).map_or(("", ""), |t| {
        (profile.string(t.r#type), profile.string(t.unit))
    });
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>10} {:>7} {:>10} {:>7}  function ({kind}/{unit})",
        "flat", "flat%", "cum", "cum%"
    );
    for row in rprof_proto::pprof_top(profile, sample_index, n) {
        let _ = writeln!(
            out,
            "{:>10} {:>6.2}% {:>10} {:>6.2}%  {}",
            format_value(row.flat, unit),
            row.flat_pct,
            format_value(row.cum, unit),
            row.cum_pct,
            row.name
        );
    }
    out
}

/// Values in the profile's unit, nanoseconds shown as seconds or milliseconds like pprof does.
fn format_value(value: i64, unit: &str) -> String {
    if unit != "nanoseconds" {
        return value.to_string();
    }
    let secs = value as f64 / 1e9;
    if secs.abs() >= 1.0 {
        format!("{secs:.2}s")
    } else {
        format!("{:.0}ms", secs * 1e3)
    }
}
