//! Completion scripts: the checked-in files are what the binary generates, and each works in
//! its shell. bash, zsh and fish are run with the checked-in script installed where a user
//! installs it, and their own completion machinery is asked what it offers after every
//! subcommand, for every option's values and for a file name. The cases come from the clap
//! definitions, so a new subcommand or option is tested without a word here.
//!
//! A shell that is not installed fails its test (`.ci/run` installs all three).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use clap::CommandFactory;
use flexprice_import::cli::Cli;

use crate::generated::check_generated;
use crate::support::{stdout_of, Env};

const BIN: &str = "flexprice-import";

#[test]
fn generated_completion_scripts_are_checked_in() {
    let env = Env::new();
    for (shell, file) in [
        ("bash", "flexprice-import.bash"),
        ("zsh", "_flexprice-import"),
        ("fish", "flexprice-import.fish"),
    ] {
        let out = env
            .cmd()
            .args(["completions", shell])
            .assert()
            .success()
            .get_output()
            .clone();
        check_generated(&format!("completions/{file}"), &stdout_of(&out));
    }
}

/// What is typed before TAB (after the binary's name) and what the shell must offer.
struct Case {
    words: Vec<String>,
    expected: BTreeSet<String>,
    /// Whether the offer must be exactly `expected` (else: it includes all of it).
    exact: bool,
}

impl Case {
    fn new(words: &[&str], expected: impl IntoIterator<Item = String>, exact: bool) -> Case {
        Case {
            words: words.iter().map(|w| w.to_string()).collect(),
            expected: expected.into_iter().collect(),
            exact,
        }
    }

    fn line(&self) -> String {
        format!("{BIN} {}", self.words.join(" "))
    }
}

fn longs(cmd: &clap::Command) -> Vec<String> {
    cmd.get_arguments()
        .filter(|a| !a.is_hide_set())
        .filter_map(|a| a.get_long())
        .map(|l| format!("--{l}"))
        .collect()
}

fn values(arg: &clap::Arg) -> Vec<String> {
    arg.get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| v.get_name().to_owned())
        .collect()
}

/// Every subcommand, every subcommand's options, every option's and positional's values, a
/// global option before a subcommand, and file names for a file argument.
fn cases() -> Vec<Case> {
    let mut cli = Cli::command();
    cli.build();
    let subcommands: Vec<String> = cli
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(|s| s.get_name().to_owned())
        .collect();
    let mut cases = vec![
        Case::new(&[""], subcommands.clone(), false),
        Case::new(&["--"], longs(&cli), true),
    ];
    for sub in cli.get_subcommands() {
        let name = sub.get_name();
        if name == "help" {
            cases.push(Case::new(&["help", ""], subcommands.clone(), false));
            continue;
        }
        cases.push(Case::new(&[name, "--"], longs(sub), true));
        for arg in sub.get_arguments().filter(|a| !a.is_hide_set()) {
            let values = values(arg);
            if values.is_empty() {
                continue;
            }
            match arg.get_long() {
                Some(long) => cases.push(Case::new(&[name, &format!("--{long}"), ""], values, true)),
                None => cases.push(Case::new(&[name, ""], values, false)),
            }
        }
    }
    // Options given before the subcommand are stepped over.
    cases.push(Case::new(
        &["--db", "x.db", "--quiet", "run", "--batch"],
        ["--batch-size".to_owned()],
        true,
    ));
    // A file to import, and a file an option names.
    cases.push(Case::new(&["run", "even"], ["events.csv".to_owned()], true));
    cases.push(Case::new(
        &["run", "--errors-file", "even"],
        ["events.csv".to_owned()],
        true,
    ));
    cases.push(Case::new(
        &["templates", "--dir", "sub"],
        ["subdir/".to_owned(), "subdir".to_owned()],
        false,
    ));
    cases
}

/// Checks what a shell offered against every case; `offers[i]` answers `cases[i]`.
fn check(shell: &str, cases: &[Case], offers: &[BTreeSet<String>]) {
    let mut wrong = Vec::new();
    for (case, offer) in cases.iter().zip(offers) {
        let ok = if case.exact {
            *offer == case.expected
        } else if case.words.last().is_some_and(|w| w == "sub") {
            // A folder is offered with or without its slash, depending on the shell.
            offer.iter().any(|o| case.expected.contains(o))
        } else {
            case.expected.is_subset(offer) && !offer.contains("events.csv")
        };
        if !ok {
            wrong.push(format!(
                "  `{}<TAB>` offered {:?}\n    expected {}{:?}",
                case.line(),
                offer,
                if case.exact { "" } else { "at least " },
                case.expected
            ));
        }
    }
    assert_eq!(
        offers.len(),
        cases.len(),
        "{shell} answered {} of {} cases",
        offers.len(),
        cases.len()
    );
    assert!(wrong.is_empty(), "{shell} completion is wrong:\n{}", wrong.join("\n"));
}

/// Fails, saying how to install it, when `shell` is not on this machine: these tests run the
/// shell's own completion, and must not pass without it.
fn require(shell: &str, package: &str) {
    match Command::new(shell).arg("--version").output() {
        Ok(out) if out.status.success() => {}
        _ => panic!(
            "{shell} is not installed here, and this test runs {shell}'s own completion: install it \
             (Debian: apt-get install {package}; .ci/run does) and run the tests again"
        ),
    }
}

/// A folder to complete in: a file to import and a folder.
fn workdir() -> Env {
    let env = Env::new();
    env.write("events.csv", "event_name,external_customer_id\n");
    std::fs::create_dir(env.dir.path().join("subdir")).unwrap();
    env
}

fn script(file: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("completions").join(file)
}

/// PATH with the binary under test first, as if installed.
fn path_with_binary() -> std::ffi::OsString {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_flexprice-import"))
        .parent()
        .unwrap()
        .to_owned();
    let rest = std::env::var_os("PATH").unwrap_or_default();
    std::env::join_paths(std::iter::once(bin_dir).chain(std::env::split_paths(&rest))).unwrap()
}

/// Splits a transcript of `== N` headers, each followed by what case N offered.
fn sections(transcript: &str, strip: impl Fn(&str) -> &str) -> Vec<BTreeSet<String>> {
    let mut offers: Vec<BTreeSet<String>> = Vec::new();
    for line in transcript.lines() {
        if line.starts_with("== ") {
            offers.push(BTreeSet::new());
        } else if let (Some(offer), false) = (offers.last_mut(), line.is_empty() || line == "-- done") {
            offer.insert(strip(line).to_owned());
        }
    }
    offers
}

fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

fn run_shell(mut cmd: Command, shell: &str) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{shell} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    stdout_of(&out)
}

/// bash with bash-completion loaded, as on a desktop: the script sits in the user's
/// completions folder and bash-completion loads it when `flexprice-import` is first completed.
/// The completion function is then called as readline calls it (COMP_WORDS, COMP_CWORD,
/// COMP_LINE, COMP_POINT); when it offers nothing, readline's `-o default` (file names) is
/// applied, if the script asked for it.
#[test]
fn bash_completes_every_subcommand_option_and_value() {
    require("bash", "bash");
    let loader = Path::new("/usr/share/bash-completion/bash_completion");
    assert!(
        loader.exists(),
        "bash-completion is not installed here ({} is missing): install it (Debian: apt-get install \
         bash-completion; .ci/run does) and run the tests again",
        loader.display()
    );
    let env = workdir();
    let user_dir = env.dir.path().join("bash-completion");
    std::fs::create_dir_all(user_dir.join("completions")).unwrap();
    std::fs::copy(script("flexprice-import.bash"), user_dir.join("completions").join(BIN)).unwrap();
    let cases = cases();
    let mut text = format!(
        r#"source {loader}
__load_completion {BIN} || {{ echo "bash-completion found no completion for {BIN}" >&2; exit 1; }}
spec=$(complete -p {BIN}) || exit 1
fn=${{spec#* -F }}; fn=${{fn%% *}}
offer() {{
    COMP_WORDS=({BIN} "$@"); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
    COMP_LINE="${{COMP_WORDS[*]}}"; COMP_POINT=${{#COMP_LINE}}
    COMPREPLY=()
    "$fn" {BIN} "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
    if (( ${{#COMPREPLY[@]}} == 0 )) && [[ $spec == *"-o default"* ]]; then
        COMPREPLY=($(compgen -f -- "${{COMP_WORDS[COMP_CWORD]}}"))
    fi
    printf '%s\n' "${{COMPREPLY[@]}}"
}}
"#,
        loader = quote(loader.to_str().unwrap())
    );
    for (i, case) in cases.iter().enumerate() {
        let words: Vec<String> = case.words.iter().map(|w| quote(w)).collect();
        text.push_str(&format!("echo '== {i}'; offer {}\n", words.join(" ")));
    }
    let mut cmd = Command::new("bash");
    cmd.args(["--norc", "--noprofile", "-c", &text])
        .current_dir(env.dir.path())
        .env("BASH_COMPLETION_USER_DIR", &user_dir);
    let offers = sections(&run_shell(cmd, "bash"), |l| l);
    check("bash", &cases, &offers);
}

/// An interactive zsh in a pseudo-terminal (tests/cli/complete.zsh) with the script in a folder
/// of `$fpath` and compinit loaded, as a .zshrc does, typing each case and a TAB.
#[test]
fn zsh_completes_every_subcommand_option_and_value() {
    require("zsh", "zsh");
    let env = workdir();
    let fpath = env.dir.path().join("zfunc");
    std::fs::create_dir(&fpath).unwrap();
    std::fs::copy(script("_flexprice-import"), fpath.join("_flexprice-import")).unwrap();
    let cases = cases();
    let lines: String = cases.iter().map(|c| c.line() + "\n").collect();
    let case_file = env.write("cases.txt", &lines);
    let out_file = env.dir.path().join("offers.txt");
    let harness = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cli/complete.zsh");
    let mut cmd = Command::new("zsh");
    cmd.arg("-f")
        .arg(&harness)
        .arg(&fpath)
        .arg(&case_file)
        .arg(&out_file)
        .current_dir(env.dir.path())
        .env("HOME", env.dir.path());
    run_shell(cmd, "zsh");
    let offers = sections(&std::fs::read_to_string(&out_file).unwrap(), |l| l);
    check("zsh", &cases, &offers);
}

/// fish with the script in a folder of `$fish_complete_path` (as ~/.config/fish/completions
/// is), asked with `complete -C`. fish loads a command's completions on first use only when the
/// command is on PATH, as an installed binary is.
#[test]
fn fish_completes_every_subcommand_option_and_value() {
    require("fish", "fish");
    let env = workdir();
    let dir = env.dir.path().join("fish-completions");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(script("flexprice-import.fish"), dir.join("flexprice-import.fish")).unwrap();
    let cases = cases();
    let mut text = format!(
        "set -g fish_complete_path {} $fish_complete_path\n",
        quote(dir.to_str().unwrap())
    );
    for (i, case) in cases.iter().enumerate() {
        text.push_str(&format!("echo '== {i}'; complete -C {}\n", quote(&case.line())));
    }
    let mut cmd = Command::new("fish");
    cmd.args(["--no-config", "-c", &text])
        .current_dir(env.dir.path())
        .env("HOME", env.dir.path())
        .env("XDG_CONFIG_HOME", env.dir.path().join("config"))
        .env("XDG_DATA_HOME", env.dir.path().join("data"))
        .env("PATH", path_with_binary());
    // fish shows each offer as `word<TAB>description`.
    let offers = sections(&run_shell(cmd, "fish"), |l| l.split('\t').next().unwrap_or(l));
    check("fish", &cases, &offers);
}
