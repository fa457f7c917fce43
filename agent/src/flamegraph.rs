//! SVG flamegraphs (inferno) from any pprof profile.

use std::collections::HashMap;

use anyhow::{Context, Result};
use rprof_proto::Profile;

/// Renders `profile` (first sample value) as an SVG flamegraph titled `title`.
pub fn svg(profile: &Profile, title: &str) -> Result<Vec<u8>> {
    let lines = collapsed(profile);
    if lines.is_empty() {
        // inferno refuses an empty graph; an idle target still deserves a file that says so.
        return Ok(empty_svg(title).into_bytes());
    }
    let mut options = inferno::flamegraph::Options::default();
    options.title = title.to_string();
    options.count_name = "samples".to_string();
    let mut svg = Vec::new();
    inferno::flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), &mut svg)
        .context("cannot render the flamegraph")?;
    Ok(svg)
}

/// Folded stacks, root first, one line per distinct stack: `root;caller;leaf count`.
fn collapsed(profile: &Profile) -> Vec<String> {
    let locations: HashMap<u64, &rprof_proto::Location> =
        profile.location.iter().map(|l| (l.id, l)).collect();
    let functions: HashMap<u64, &str> = profile
        .function
        .iter()
        .map(|f| (f.id, profile.string(f.name)))
        .collect();
    let mut folded: HashMap<String, i64> = HashMap::new();
    for sample in &profile.sample {
        let mut frames: Vec<String> = Vec::new();
        for id in &sample.location_id {
            let Some(location) = locations.get(id) else {
                continue;
            };
            if location.line.is_empty() {
                frames.push(format!("{:#x}", location.address));
            }
            // Lines are innermost first; the stack is leaf first: pushing in order keeps it so.
            for line in &location.line {
                let name = functions.get(&line.function_id).copied().unwrap_or("?");
                frames.push(name.replace(';', ":"));
            }
        }
        frames.reverse();
        let value = sample.value.first().copied().unwrap_or(0);
        *folded.entry(frames.join(";")).or_insert(0) += value;
    }
    folded
        .into_iter()
        .filter(|(_, v)| *v > 0)
        .map(|(stack, v)| format!("{stack} {v}"))
        .collect()
}

/// A valid SVG stating that nothing was sampled.
fn empty_svg(title: &str) -> String {
    let title = title
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    format!(
        "<?xml version=\"1.0\" standalone=\"no\"?>\n\
         <svg version=\"1.1\" width=\"1200\" height=\"80\" xmlns=\"http://www.w3.org/2000/svg\">\n\
         <text x=\"600\" y=\"30\" text-anchor=\"middle\" font-size=\"17\">{title}</text>\n\
         <text x=\"600\" y=\"60\" text-anchor=\"middle\" font-size=\"14\">no samples: the target used no CPU during the window</text>\n\
         </svg>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_profile_gives_a_valid_svg() {
        let svg =
            String::from_utf8(svg(&Profile::default(), "PID <1>").expect("svg")).expect("utf-8");
        assert!(
            svg.contains("<svg") && svg.contains("no samples") && svg.contains("PID &lt;1&gt;")
        );
    }
}
