//! `man`: the manual pages, generated from the clap definitions (clap_mangen) like the
//! completion scripts: `flexprice-import.1` for the tool, `flexprice-import-<command>.1` for
//! each command, and `flexprice-import-<command>-<subcommand>.1` for a command's own commands
//! (`catalog import`). The sections of a help's `after_help` (`Examples:`, `Exit codes:`) become
//! sections of the page, kept as written.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_mangen::Man;
use roff::{roman, Roff};

use crate::cli::{Cli, ManArgs};
use crate::exit::{usage, ExitStatus};

pub fn run(args: &ManArgs) -> Result<ExitStatus> {
    if let Some(dir) = &args.dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for (name, page) in pages() {
            write_page(&dir.join(&name), &page)?;
            println!("{}", dir.join(name).display());
        }
        return Ok(ExitStatus::Success);
    }
    let wanted = match &args.command {
        None => "flexprice-import.1".to_owned(),
        Some(command) => format!("flexprice-import-{command}.1"),
    };
    let Some((_, page)) = pages().into_iter().find(|(name, _)| *name == wanted) else {
        return Err(usage(format!(
            "no manual page for {:?}: name a command (run, list, …) or none",
            args.command.as_deref().unwrap_or_default()
        )));
    };
    std::io::stdout().lock().write_all(&page)?;
    Ok(ExitStatus::Success)
}

fn write_page(path: &Path, page: &[u8]) -> Result<()> {
    std::fs::write(path, page).with_context(|| format!("writing {}", path.display()))
}

/// Every page as (file name, roff): the tool's first, then one per command in the order of
/// `--help`.
pub fn pages() -> Vec<(String, Vec<u8>)> {
    let mut cli = Cli::command().disable_help_subcommand(true);
    cli.build();
    let mut pages = vec![("flexprice-import.1".to_owned(), page(&cli, None))];
    for sub in cli.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("flexprice-import-{}.1", sub.get_name());
        pages.push((name, page(sub, Some("flexprice-import(1)"))));
        // A command with commands of its own (`catalog import`): a page each, named
        // flexprice-import-catalog-import.1 (`man catalog-import`).
        let parent = format!("flexprice-import-{}(1)", sub.get_name());
        for nested in sub
            .get_subcommands()
            .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        {
            let name = format!("flexprice-import-{}-{}.1", sub.get_name(), nested.get_name());
            pages.push((name, page(nested, Some(&parent))));
        }
    }
    pages
}

/// A section clap_mangen renders.
type Section = fn(&Man, &mut dyn Write) -> std::io::Result<()>;

/// One page: clap_mangen's title, name, synopsis, description, options and commands, then the
/// help's own sections, a SEE ALSO for a command's page, and on the tool's page the version.
fn page(cmd: &clap::Command, see_also: Option<&str>) -> Vec<u8> {
    // A command's page names the tool's version too (in its footer).
    let man = Man::new(cmd.clone()).source(format!("flexprice-import {}", env!("CARGO_PKG_VERSION")));
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    man.render_title(&mut out).unwrap();
    let append = |out: &mut Vec<u8>, section: Section| {
        let mut buf = Vec::new();
        section(&man, &mut buf).unwrap();
        out.extend_from_slice(without_preamble(&buf));
    };
    append(&mut out, Man::render_name_section);
    append(&mut out, Man::render_synopsis_section);
    append(&mut out, Man::render_description_section);
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        append(&mut out, Man::render_options_section);
    }
    if cmd.has_subcommands() {
        append(&mut out, Man::render_subcommands_section);
    }
    let mut roff = Roff::new();
    if let Some(after) = cmd.get_after_help() {
        help_sections(&mut roff, &after.to_string());
    }
    if let Some(see_also) = see_also {
        roff.control("SH", ["SEE ALSO"]);
        roff.text([roman(see_also)]);
    }
    out.extend_from_slice(without_preamble(roff.render().as_bytes()));
    if cmd.get_version().is_some() {
        append(&mut out, Man::render_version_section);
    }
    out
}

/// Every piece roff renders starts with the same definitions (how to print an apostrophe);
/// the page keeps the first.
fn without_preamble(rendered: &[u8]) -> &[u8] {
    let preamble = Roff::new().render();
    rendered.strip_prefix(preamble.as_bytes()).unwrap_or(rendered)
}

/// Sections of an `after_help` text: a line `Heading:` starts one, the indented lines under it
/// are its body, kept line for line (examples are commands to copy).
fn help_sections(roff: &mut Roff, text: &str) {
    let mut open = false;
    for line in text.lines() {
        if let Some(heading) = line.strip_suffix(':').filter(|_| !line.starts_with(' ')) {
            if open {
                roff.control("fi", []);
            }
            let heading = match heading {
                "Exit codes" => "EXIT STATUS".to_owned(),
                "Store" => "FILES".to_owned(),
                other => other.to_uppercase(),
            };
            roff.control("SH", [heading.as_str()]);
            roff.control("nf", []);
            open = true;
        } else if line.trim().is_empty() {
            if open {
                roff.control("fi", []);
                open = false;
            }
        } else {
            if !open {
                roff.control("nf", []);
                open = true;
            }
            roff.text([roman(line)]);
        }
    }
    if open {
        roff.control("fi", []);
    }
}
