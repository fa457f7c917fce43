//! Where `record` writes each profile.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::cli::RecordFormat;
use crate::profile::{directory_of, Output};

/// The extensions that name a profile's format: the profile's name goes before them.
const KNOWN_EXTENSIONS: [&str; 4] = [".pb.gz", ".pprof", ".svg", ".gz"];

/// The file for the profile named `kind`: `output` as given when it is the only profile,
/// `output` with the profile's name before the extension when there are several (`prof.pb.gz`
/// → `prof.cpu.pb.gz`), else `rprof-<kind>-<pid>-<stamp>.<ext>` in the working directory.
pub fn path(
    output: Option<&Path>,
    kind: &str,
    several: bool,
    format: RecordFormat,
    pid: u32,
    stamp: &str,
) -> PathBuf {
    match output {
        Some(path) if several => with_profile_name(path, kind),
        Some(path) => path.to_path_buf(),
        None => {
            let extension = match format {
                RecordFormat::Pprof => "pb.gz",
                RecordFormat::Flamegraph => "svg",
            };
            PathBuf::from(format!("rprof-{kind}-{pid}-{stamp}.{extension}"))
        }
    }
}

/// Fails early, before anything is attached, when the profile could not be written at the end:
/// a recording that runs for minutes and then fails on its output path helps nobody.
/// `several` profiles need file names (each gets its own); a stream (`-`, a device, a FIFO)
/// takes one, and not standard output when a `launched` command writes there too.
pub fn check_writable(output: Option<&Path>, several: bool, launched: bool) -> anyhow::Result<()> {
    use anyhow::{anyhow, bail};
    let Some(path) = output else {
        return check_directory(Path::new("."), "to the working directory");
    };
    let what = path.display().to_string();
    let output = Output::of(path).map_err(|err| anyhow!("cannot write {what}: {err}"))?;
    match output {
        _ if several && output.is_stream() => bail!(
            "cannot write several profiles to {what}: it is not a regular file (give -o a file \
             name: each profile is written beside it under its own name)"
        ),
        _ if launched && output.shares_stdout() => bail!(
            "cannot write the profile to {what}: it is standard output, where the launched \
             command writes too (give -o a file name)"
        ),
        Output::Stdout => Ok(()),
        Output::Stream(stream) => access(&stream, &what),
        // Several profiles are named after the path given, a single one replaces the file
        // the path leads to.
        Output::File(_) if several => check_directory(directory_of(path), &what),
        Output::File(file) => check_directory(directory_of(&file), &what),
    }
}

/// Fails unless profiles can be created in `dir`.
fn check_directory(dir: &Path, what: &str) -> anyhow::Result<()> {
    if !dir.is_dir() {
        anyhow::bail!("cannot write {what}: no such directory {}", dir.display());
    }
    access(dir, what).map_err(|err| anyhow::anyhow!("{err} in {}", dir.display()))
}

/// Fails unless this process may write `path`.
fn access(path: &Path, what: &str) -> anyhow::Result<()> {
    use nix::unistd::AccessFlags;
    nix::unistd::access(path, AccessFlags::W_OK).map_err(|err| {
        let err = std::io::Error::from(err);
        anyhow::anyhow!("cannot write {what}: {err}")
    })
}

/// `path` with `.<kind>` inserted before its extension (or appended when it has none).
fn with_profile_name(path: &Path, kind: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let split = KNOWN_EXTENSIONS
        .iter()
        .find_map(|ext| name.strip_suffix(ext).filter(|stem| !stem.is_empty()))
        .or_else(|| name.rsplit_once('.').map(|(stem, _)| stem))
        .filter(|stem| !stem.is_empty())
        .unwrap_or(&name);
    let mut renamed = OsString::from(split);
    renamed.push(".");
    renamed.push(kind);
    renamed.push(&name[split.len()..]);
    path.with_file_name(renamed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn several(output: &str, kind: &str) -> PathBuf {
        path(
            Some(Path::new(output)),
            kind,
            true,
            RecordFormat::Pprof,
            7,
            "x",
        )
    }

    #[test]
    fn several_profiles_get_their_name_before_the_extension() {
        assert_eq!(
            several("out/prof.pb.gz", "cpu"),
            Path::new("out/prof.cpu.pb.gz")
        );
        assert_eq!(
            several("prof.pb.gz", "threadcreate"),
            Path::new("prof.threadcreate.pb.gz")
        );
        assert_eq!(several("flame.svg", "cpu"), Path::new("flame.cpu.svg"));
        assert_eq!(several("a.b.data", "cpu"), Path::new("a.b.cpu.data"));
        assert_eq!(several("prof", "cpu"), Path::new("prof.cpu"));
        assert_eq!(several(".hidden", "cpu"), Path::new(".hidden.cpu"));
    }

    #[test]
    fn one_profile_is_written_where_asked_or_under_a_default_name() {
        let given = path(
            Some(Path::new("cpu.pb.gz")),
            "threadcreate",
            false,
            RecordFormat::Pprof,
            7,
            "x",
        );
        assert_eq!(given, Path::new("cpu.pb.gz"));
        let default = path(
            None,
            "threadcreate",
            true,
            RecordFormat::Pprof,
            42,
            "20240229-123456",
        );
        assert_eq!(
            default,
            Path::new("rprof-threadcreate-42-20240229-123456.pb.gz")
        );
        let svg = path(None, "cpu", false, RecordFormat::Flamegraph, 1, "t");
        assert_eq!(svg, Path::new("rprof-cpu-1-t.svg"));
    }
}
