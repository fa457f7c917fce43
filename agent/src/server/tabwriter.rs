//! Go's `text/tabwriter`, in the one configuration runtime/pprof prints its `debug=1` profiles
//! with (minwidth 1, tabwidth 8, padding 1, padchar '\t', no flags), so that the columns line up
//! exactly as a Go service's do.
//!
//! Text is cut into cells by tabs; the cells of one column are padded with tabs to a common
//! width within each block of consecutive lines that have that column. A line without tabs
//! ends every block.

const TAB_WIDTH: usize = 8;
const MIN_WIDTH: usize = 1;
const PADDING: usize = 1;

/// One line: its tab-terminated cells, then the text after the last tab.
type Line<'a> = Vec<&'a str>;

/// `text` with its tab-separated columns aligned.
pub fn align(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    let mut block: Vec<Line<'_>> = Vec::new();
    for line in text.split_inclusive('\n') {
        let (body, newline) = match line.strip_suffix('\n') {
            Some(body) => (body, true),
            None => (line, false),
        };
        let cells: Line<'_> = body.split('\t').collect();
        let ends_block = cells.len() == 1;
        block.push(cells);
        if ends_block || !newline {
            write_block(&mut out, &block, newline);
            block.clear();
        }
    }
    write_block(&mut out, &block, true);
    out
}

fn write_block(out: &mut String, lines: &[Line<'_>], last_newline: bool) {
    let mut widths = Vec::new();
    format(out, lines, &mut widths, 0, lines.len());
    if !last_newline && out.ends_with('\n') && !lines.is_empty() {
        out.pop();
    }
}

/// Go's `Writer.format`: finds the blocks of column `widths.len()` in `lines[start..end]`, sizes
/// each, and recurses into the next column; lines outside any block are written as they are.
fn format(out: &mut String, lines: &[Line<'_>], widths: &mut Vec<usize>, start: usize, end: usize) {
    let column = widths.len();
    let mut written = start;
    let mut this = start;
    while this < end {
        if column + 1 >= lines[this].len() {
            this += 1;
            continue;
        }
        write_lines(out, &lines[written..this], widths);
        let block_start = this;
        let mut width = MIN_WIDTH;
        while this < end && column + 1 < lines[this].len() {
            width = width.max(cell_width(lines[this][column]) + PADDING);
            this += 1;
        }
        widths.push(width);
        format(out, lines, widths, block_start, this);
        widths.pop();
        written = this;
    }
    write_lines(out, &lines[written..end], widths);
}

fn write_lines(out: &mut String, lines: &[Line<'_>], widths: &[usize]) {
    for line in lines {
        for (j, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if let Some(&width) = widths.get(j) {
                pad(out, cell_width(cell), width);
            }
        }
        out.push('\n');
    }
}

/// Tabs that take a cell of `text_width` to `cell_width` rounded up to a tab stop.
fn pad(out: &mut String, text_width: usize, cell_width: usize) {
    let cell_width = cell_width.div_ceil(TAB_WIDTH) * TAB_WIDTH;
    let tabs = (cell_width - text_width).div_ceil(TAB_WIDTH);
    out.extend(std::iter::repeat_n('\t', tabs));
}

fn cell_width(cell: &str) -> usize {
    cell.chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Output of Go 1.19's tabwriter.NewWriter(w, 1, 8, 1, '\t', 0) on the same input.
    #[test]
    fn aligns_like_go() {
        let input = "goroutine profile: total 3\n\
                     2 @ 0x1 0x2\n\
                     #\t0x43b9c5\truntime.gopark+0xe5\t/usr/lib/go/src/runtime/proc.go:363\n\
                     #\t0x46a4f4\ttime.Sleep+0x134\t/usr/lib/go/src/runtime/time.go:195\n\
                     #\t0x4\n\
                     #\t0x6f3b34\tmain.aVeryLongFunctionNameIndeed+0x14\t/src/main.go:10\n\
                     \n\
                     1 @ 0x3\n";
        // Every cell already ends short of its tab stop: one tab each, as in the input.
        assert_eq!(align(input), input);

        let uneven = "#\t0x1\tshort+0x1\ta.c:1\n#\t0x2\ta_much_longer_name+0x2\tb.c:2\n\n";
        assert_eq!(
            align(uneven),
            "#\t0x1\tshort+0x1\t\ta.c:1\n#\t0x2\ta_much_longer_name+0x2\tb.c:2\n\n"
        );

        // A line without column 1 splits that column's blocks; widths count characters.
        let nested = "#\t0x1\tf\tfile\n#\t0x22\n#\t0x333\tgggggggggg\th\n#\t0x4444\tg\tx\n";
        assert_eq!(
            align(nested),
            "#\t0x1\tf\tfile\n#\t0x22\n#\t0x333\tgggggggggg\th\n#\t0x4444\tg\t\tx\n"
        );
        assert_eq!(
            align("ab\tc\nabcdefghij\td\n\u{e9}\u{e9}\u{e9}\te\n"),
            "ab\t\tc\nabcdefghij\td\n\u{e9}\u{e9}\u{e9}\t\te\n"
        );
    }

    #[test]
    fn text_without_tabs_is_unchanged() {
        assert_eq!(align("a\nb\n"), "a\nb\n");
        assert_eq!(align(""), "");
    }
}
