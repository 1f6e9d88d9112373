//! The README is the landing page: its table of contents lists every section, its links to
//! sections land on a heading, and no heading is written twice.

use std::collections::BTreeSet;

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
}

/// The anchor GitHub gives a heading: lower case, punctuation dropped (hyphens and
/// underscores kept), spaces made hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Headings as (level, text), outside code blocks.
fn headings(text: &str) -> Vec<(usize, String)> {
    let mut fenced = false;
    let mut found = Vec::new();
    for line in text.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
        }
        if fenced || line.starts_with("    ") {
            continue;
        }
        let level = line.chars().take_while(|c| *c == '#').count();
        if level > 0 && line[level..].starts_with(' ') {
            found.push((level, line[level..].trim().to_owned()));
        }
    }
    found
}

/// The targets of `](#anchor)` links in `text`.
fn anchor_links(text: &str) -> Vec<String> {
    text.split("](#")
        .skip(1)
        .filter_map(|rest| rest.split_once(')').map(|(anchor, _)| anchor.to_owned()))
        .collect()
}

#[test]
fn no_heading_is_written_twice() {
    let text = readme();
    let mut seen = BTreeSet::new();
    for (_, heading) in headings(&text) {
        assert!(
            seen.insert(slug(&heading)),
            "the heading {heading:?} stands twice in README.md"
        );
    }
}

#[test]
fn every_link_to_a_section_lands_on_a_heading() {
    let text = readme();
    let anchors: BTreeSet<String> = headings(&text).iter().map(|(_, h)| slug(h)).collect();
    let broken: Vec<String> = anchor_links(&text)
        .into_iter()
        .filter(|a| !anchors.contains(a))
        .collect();
    assert!(broken.is_empty(), "links to no heading in README.md: {broken:?}");
}

#[test]
fn the_table_of_contents_lists_every_section() {
    let text = readme();
    let contents = text
        .split("\n## Contents\n")
        .nth(1)
        .expect("a ## Contents section")
        .split("\n## ")
        .next()
        .unwrap();
    let listed: BTreeSet<String> = anchor_links(contents).into_iter().collect();
    let missing: Vec<String> = headings(&text)
        .into_iter()
        .filter(|(level, h)| *level == 2 && h != "Contents")
        .map(|(_, h)| slug(&h))
        .filter(|a| !listed.contains(a))
        .collect();
    assert!(
        missing.is_empty(),
        "sections missing from the Contents of README.md: {missing:?}"
    );
    let position = |needle: &str| text.find(needle).unwrap();
    assert!(
        position("\n## Contents\n") < position("\n## Quick start\n"),
        "the Contents come first"
    );
}
