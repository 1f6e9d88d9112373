//! A table that fits a terminal's width: columns are dropped, least useful first, and one
//! column may be shortened in its middle, until every line fits. Columns marked `keep` are
//! never dropped nor shortened (a task id must never wrap). Columns are separated by two
//! spaces, numbers aligned right, like `docker ps` or `kubectl get`.

use unicode_width::UnicodeWidthStr;

/// A column of a fitted table.
pub struct Column {
    pub header: &'static str,
    /// Lower is dropped first.
    pub rank: u8,
    /// Never dropped nor shortened.
    pub keep: bool,
    /// May be shortened down to this many columns (with `…` in the middle) before others are
    /// dropped; 0: never shortened.
    pub shrink_to: usize,
    pub align_right: bool,
    /// One cell per row: the text, and an ANSI colour code to wrap it in (when colour is on).
    pub cells: Vec<(String, Option<&'static str>)>,
}

const GAP: usize = 2;

fn width(text: &str) -> usize {
    UnicodeWidthStr::width(text)
}

/// `text` in at most `max` columns, cut in the middle: `usage_2026…ember.csv`.
pub fn shorten(text: &str, max: usize) -> String {
    if width(text) <= max {
        return text.to_owned();
    }
    if max <= 1 {
        return "…".chars().take(max).collect();
    }
    let room = max - 1;
    let (head_room, tail_room) = (room - room / 2, room / 2);
    let mut head = String::new();
    for c in text.chars() {
        if width(&head) + width(c.encode_utf8(&mut [0; 4])) > head_room {
            break;
        }
        head.push(c);
    }
    let mut tail: Vec<char> = Vec::new();
    for c in text.chars().rev() {
        let w: usize = tail.iter().map(|c| width(c.encode_utf8(&mut [0; 4]))).sum();
        if w + width(c.encode_utf8(&mut [0; 4])) > tail_room {
            break;
        }
        tail.push(c);
    }
    tail.reverse();
    format!("{head}…{}", tail.into_iter().collect::<String>())
}

/// Renders `columns` in at most `max_width` columns (when given; else as wide as they are),
/// with colour when `color`. Returns the lines, without a trailing newline.
pub fn render(mut columns: Vec<Column>, max_width: Option<usize>, color: bool) -> String {
    let natural = |c: &Column| {
        c.cells
            .iter()
            .map(|(t, _)| width(t))
            .chain(std::iter::once(width(c.header)))
            .max()
            .unwrap_or(0)
    };
    let least = |c: &Column| {
        if c.shrink_to > 0 {
            natural(c).min(c.shrink_to.max(width(c.header)))
        } else {
            natural(c)
        }
    };
    let total = |cols: &[Column], size: &dyn Fn(&Column) -> usize| -> usize {
        cols.iter().map(size).sum::<usize>() + GAP * cols.len().saturating_sub(1)
    };
    let mut widths: Vec<usize> = columns.iter().map(natural).collect();
    if let Some(max) = max_width {
        // Drop the least useful columns until the rest fit with shortened cells.
        while total(&columns, &least) > max {
            let Some((drop, _)) = columns
                .iter()
                .enumerate()
                .filter(|(_, c)| !c.keep)
                .min_by_key(|(_, c)| c.rank)
            else {
                break;
            };
            columns.remove(drop);
        }
        widths = columns.iter().map(natural).collect();
        let over = total(&columns, &natural).saturating_sub(max);
        if over > 0 {
            // Shorten what may be shortened, the widest first, by what is needed.
            let mut over = over;
            let mut order: Vec<usize> = (0..columns.len()).filter(|&i| columns[i].shrink_to > 0).collect();
            order.sort_by_key(|&i| std::cmp::Reverse(widths[i]));
            for i in order {
                let can = widths[i] - least(&columns[i]);
                let by = can.min(over);
                widths[i] -= by;
                over -= by;
            }
        }
    }
    let mut out = String::new();
    let pad = |text: &str, w: usize, right: bool| {
        let fill = " ".repeat(w.saturating_sub(width(text)));
        if right {
            format!("{fill}{text}")
        } else {
            format!("{text}{fill}")
        }
    };
    let last = columns.len().saturating_sub(1);
    let line = |cells: Vec<(String, Option<&'static str>)>| -> String {
        let mut line = String::new();
        for (i, ((text, colour), column)) in cells.into_iter().zip(&columns).enumerate() {
            let text = shorten(&text, widths[i]);
            // The last column is not padded on the right: no trailing spaces.
            let padded = if i == last && !column.align_right {
                text
            } else {
                pad(&text, widths[i], column.align_right)
            };
            match (colour, color) {
                (Some(code), true) => line.push_str(&format!("\x1b[{code}m{padded}\x1b[0m")),
                _ => line.push_str(&padded),
            }
            if i < last {
                line.push_str(&" ".repeat(GAP));
            }
        }
        line
    };
    out.push_str(&line(columns.iter().map(|c| (c.header.to_owned(), None)).collect()));
    let rows = columns.first().map_or(0, |c| c.cells.len());
    for r in 0..rows {
        out.push('\n');
        out.push_str(&line(columns.iter().map(|c| c.cells[r].clone()).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(header: &'static str, rank: u8, keep: bool, shrink_to: usize, cells: &[&str]) -> Column {
        Column {
            header,
            rank,
            keep,
            shrink_to,
            align_right: false,
            cells: cells.iter().map(|c| (c.to_string(), None)).collect(),
        }
    }

    fn table() -> Vec<Column> {
        vec![
            column("ID", 0, true, 0, &["task_0123456789", "task_abcdefghij"]),
            column("FILE", 5, false, 8, &["usage_of_november_2026.csv", "a.csv"]),
            column("STATUS", 9, true, 0, &["COMPLETED", "FAILED"]),
            column("BY", 1, false, 0, &["someone", "cron"]),
        ]
    }

    #[test]
    fn a_wide_enough_table_is_kept_whole() {
        let text = render(table(), Some(200), false);
        let first = text.lines().next().unwrap();
        assert!(first.starts_with("ID               FILE"), "{text}");
        assert!(
            text.contains("usage_of_november_2026.csv  COMPLETED  someone"),
            "{text}"
        );
    }

    #[test]
    fn a_narrow_table_drops_then_shortens_and_never_touches_kept_columns() {
        let text = render(table(), Some(40), false);
        for line in text.lines() {
            assert!(width(line) <= 40, "{line:?} in\n{text}");
        }
        assert!(!text.contains("BY"), "the least useful column went first:\n{text}");
        assert!(text.contains("task_0123456789") && text.contains("task_abcdefghij"));
        assert!(text.contains('…') && text.contains("COMPLETED"), "{text}");
        // Narrower than the kept columns can be: they stay whole, the rest goes.
        let text = render(table(), Some(20), false);
        assert!(text.contains("task_0123456789") && !text.contains("FILE"), "{text}");
    }

    #[test]
    fn shortening_keeps_both_ends() {
        assert_eq!(shorten("usage_of_november_2026.csv", 12), "usage_…6.csv");
        assert_eq!(shorten("short.csv", 12), "short.csv");
        let wide = shorten("名前が長いファイル.csv", 10);
        assert!(width(&wide) <= 10 && wide.ends_with(".csv"), "{wide}");
    }
}
