//! The help a user reads: snapshots of every command's `--help` at 80 columns, every argument
//! described, examples in every command's help that parse, the exit codes, `--version` with
//! the commit, and the man pages.

use clap::{CommandFactory, Parser};
use flexprice_import::cli::Cli;

use crate::generated::check_generated;
use crate::support::{stderr_of, stdout_of, Env};

/// The commands with a help of their own (clap's `help` aside).
fn commands() -> Vec<String> {
    Cli::command()
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(|s| s.get_name().to_owned())
        .collect()
}

/// The commands of commands (`catalog import`), as their words, with their definitions.
fn nested() -> Vec<(Vec<String>, clap::Command)> {
    let mut cli = Cli::command();
    cli.build();
    let mut out = Vec::new();
    for sub in cli
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        for nested in sub
            .get_subcommands()
            .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        {
            out.push((
                vec![sub.get_name().to_owned(), nested.get_name().to_owned()],
                nested.clone(),
            ));
        }
    }
    out
}

/// The binary as a user at an 80-column terminal runs it, with no FLEXPRICE_* variables set
/// (help shows their values).
fn help_cmd(env: &Env) -> assert_cmd::Command {
    let mut cmd = env.cmd();
    cmd.env("COLUMNS", "80")
        .env_remove("FLEXPRICE_IMPORT_DB")
        .env_remove("FLEXPRICE_ACTOR");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("FLEXPRICE_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// `flexprice-import NAME --help` as a user at an 80-column terminal reads it.
fn help_of(env: &Env, name: &str) -> String {
    let out = help_cmd(env)
        .args([name, "--help"])
        .assert()
        .success()
        .get_output()
        .clone();
    stdout_of(&out)
}

#[test]
fn generated_help_snapshots_are_checked_in() {
    let env = Env::new();
    let top = help_cmd(&env).arg("--help").assert().success().get_output().clone();
    check_generated("tests/snapshots/help/flexprice-import.txt", &stdout_of(&top));
    for name in commands() {
        check_generated(
            &format!("tests/snapshots/help/flexprice-import-{name}.txt"),
            &help_of(&env, &name),
        );
    }
    for (words, _) in nested() {
        let out = help_cmd(&env)
            .args(&words)
            .arg("--help")
            .assert()
            .success()
            .get_output()
            .clone();
        check_generated(
            &format!("tests/snapshots/help/flexprice-import-{}.txt", words.join("-")),
            &stdout_of(&out),
        );
    }
}

#[test]
fn every_argument_and_option_is_described() {
    let mut cli = Cli::command();
    cli.build();
    let mut bare = Vec::new();
    let nested = nested();
    for cmd in std::iter::once(&cli)
        .chain(cli.get_subcommands())
        .chain(nested.iter().map(|(_, c)| c))
    {
        for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
            if arg.get_help().or(arg.get_long_help()).is_none() {
                bare.push(format!("{} {}", cmd.get_name(), arg.get_id()));
            }
        }
    }
    assert!(bare.is_empty(), "arguments without a description: {bare:?}");
}

/// The command lines in a help's `Examples:` section (also inside `$(…)`), as words.
fn examples(after_help: &str) -> Vec<Vec<String>> {
    let section = after_help
        .split("Examples:\n")
        .nth(1)
        .unwrap_or_default()
        .split("\n\n")
        .next()
        .unwrap_or_default();
    section
        .lines()
        .filter_map(|line| line.find("flexprice-import ").map(|at| &line[at..]))
        .map(|command| {
            let end = [")", " |", " >", " <", " ||"]
                .iter()
                .filter_map(|stop| command.find(stop))
                .min()
                .unwrap_or(command.len());
            command[..end]
                .split_whitespace()
                .map(|w| w.trim_matches(|c| c == '"' || c == '\'').to_owned())
                .collect()
        })
        .collect()
}

#[test]
fn every_command_has_examples_and_each_parses() {
    let cli = Cli::command();
    let mut problems = Vec::new();
    let top = cli.get_after_help().map(|h| h.to_string()).unwrap_or_default();
    let mut all = vec![("flexprice-import".to_owned(), top)];
    for sub in cli.get_subcommands().filter(|s| !s.is_hide_set()) {
        let after = sub.get_after_help().map(|h| h.to_string()).unwrap_or_default();
        all.push((sub.get_name().to_owned(), after));
    }
    for (words, sub) in nested() {
        let after = sub.get_after_help().map(|h| h.to_string()).unwrap_or_default();
        all.push((words.join(" "), after));
    }
    for (name, after) in all {
        let examples = examples(&after);
        if examples.is_empty() {
            problems.push(format!("{name}: no `Examples:` section with a command in its help"));
        }
        for words in examples {
            if let Err(e) = Cli::try_parse_from(&words) {
                problems.push(format!("{name}: `{}` does not parse: {}", words.join(" "), e.kind()));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_top_level_help_lists_every_exit_code() {
    let env = Env::new();
    let out = help_cmd(&env).arg("--help").assert().success().get_output().clone();
    let help = stdout_of(&out);
    let codes = help.split("Exit codes:\n").nth(1).expect("an Exit codes section");
    for code in ["0", "1", "2", "3", "130", "143"] {
        assert!(
            codes.lines().any(|l| l.trim_start().starts_with(&format!("{code} "))),
            "exit code {code} is not listed:\n{codes}"
        );
    }
}

#[test]
fn global_options_are_shown_apart_in_every_help() {
    let env = Env::new();
    for name in commands() {
        let help = help_of(&env, &name);
        let (own, global) = help
            .split_once("\nGlobal options:\n")
            .expect("a Global options section");
        assert!(
            global.contains("--db <PATH|URL>") && global.contains("--tenant <ID>"),
            "{name}: {global}"
        );
        assert!(
            !own.contains("--db <PATH|URL>") && !own.contains("--tenant <ID>"),
            "{name}: {own}"
        );
    }
}

#[test]
fn version_names_the_commit_it_was_built_from() {
    let env = Env::new();
    let out = env.cmd().arg("--version").assert().success().get_output().clone();
    let version = stdout_of(&out);
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    assert_eq!(
        version.trim(),
        format!("flexprice-import {} (commit {head})", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn generated_man_pages_are_checked_in() {
    let env = Env::new();
    let dir = env.dir.path().join("man1");
    let out = env
        .cmd()
        .args(["man", "--dir"])
        .arg(&dir)
        .assert()
        .success()
        .get_output()
        .clone();
    let mut written: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    assert_eq!(
        stdout_of(&out).lines().count(),
        written.len(),
        "one line per page written"
    );
    let mut expected: Vec<String> = std::iter::once("flexprice-import.1".to_owned())
        .chain(commands().iter().map(|c| format!("flexprice-import-{c}.1")))
        .chain(
            nested()
                .iter()
                .map(|(w, _)| format!("flexprice-import-{}.1", w.join("-"))),
        )
        .collect();
    expected.sort();
    assert_eq!(written, expected);
    for name in &written {
        check_generated(
            &format!("man/{name}"),
            &std::fs::read_to_string(dir.join(name)).unwrap(),
        );
    }
    // A page no command has any more is stale too.
    let checked_in = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    if std::env::var_os(crate::generated::UPDATE).is_none() {
        for entry in std::fs::read_dir(&checked_in).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            assert!(written.contains(&name), "man/{name} belongs to no command: delete it");
        }
    }
}

#[test]
fn man_prints_the_tool_page_or_a_command_page() {
    let env = Env::new();
    let top = stdout_of(&env.cmd().arg("man").assert().success().get_output().clone());
    assert!(top.contains(".TH flexprice-import 1"), "{top}");
    assert!(top.contains(".SH \"EXIT STATUS\""), "{top}");
    assert!(
        top.contains("flexprice\\-import\\-run(1)"),
        "the tool's page names the command pages"
    );
    let run = stdout_of(&env.cmd().args(["man", "run"]).assert().success().get_output().clone());
    assert!(run.contains(".TH flexprice-import-run 1"), "{run}");
    assert!(run.contains(".SH EXAMPLES"), "{run}");
    assert!(run.contains("\\-\\-dry\\-run"), "{run}");
    let out = env.cmd().args(["man", "nope"]).assert().code(2).get_output().clone();
    assert!(
        stderr_of(&out).contains("no manual page for \"nope\""),
        "{}",
        stderr_of(&out)
    );
}
