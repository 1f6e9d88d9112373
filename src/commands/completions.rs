//! `completions <SHELL>`: the completion script, generated from the clap definitions.

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;

/// The name the scripts complete; the binary's name.
const BIN: &str = "flexprice-import";

/// Writes `shell`'s completion script for every subcommand and option.
pub fn generate(shell: Shell, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), BIN, &mut script);
    match shell {
        Shell::Bash => out.write_all(repair_bash(&String::from_utf8_lossy(&script)).as_bytes()),
        Shell::Fish => {
            out.write_all(repair_fish_help(&String::from_utf8_lossy(&script)).as_bytes())?;
            out.write_all(fish_positional_values(&Cli::command()).as_bytes())
        }
        _ => out.write_all(&script),
    }
}

/// Works around clap_complete's bash generator (4.6.11, clap-rs/clap#6421) for a binary
/// whose name holds a hyphen: the loop over the words sets `cmd` to
/// `flexprice__import__subcmd__run`, while the `case "${cmd}"` arms are spelled
/// `flexprice__subcmd__import__subcmd__run` (the hyphen escaped as a subcommand separator),
/// so no arm matched and every subcommand completed nothing. The arms are respelled the way
/// the loop spells them. Once clap_complete is fixed there is nothing to respell and this
/// changes nothing; the completion tests run bash's completion function either way.
fn repair_bash(script: &str) -> String {
    let arm = format!("{}__subcmd__", BIN.replace('-', "__subcmd__"));
    let state = format!("{}__subcmd__", BIN.replace('-', "__"));
    script.replace(&arm, &state)
}

/// Works around clap_complete's fish generator (4.6.11): `help <TAB>` offers the subcommands
/// only while none of them is on the line yet, and its list of them includes `help` itself,
/// which is always on the line there, so it offered nothing. `help` is taken out of that list.
fn repair_fish_help(script: &str) -> String {
    let condition = format!(
        "__fish_{}_using_subcommand help; and not __fish_seen_subcommand_from ",
        BIN.replace('-', "_")
    );
    let mut fixed = String::with_capacity(script.len());
    for line in script.split_inclusive('\n') {
        match line.find(&condition) {
            Some(at) => {
                let start = at + condition.len();
                let end = start + line[start..].find('"').unwrap_or(line.len() - start);
                let names: Vec<&str> = line[start..end].split(' ').filter(|n| *n != "help").collect();
                fixed.push_str(&line[..start]);
                fixed.push_str(&names.join(" "));
                fixed.push_str(&line[end..]);
            }
            None => fixed.push_str(line),
        }
    }
    fixed
}

/// clap_complete's fish generator leaves positional arguments out (4.6.11: "only supports
/// named options"), so `templates <TAB>` offered files. These lines offer the values of each
/// subcommand's positional arguments that have a fixed set (entities, shells), and no files
/// there.
fn fish_positional_values(cli: &clap::Command) -> String {
    let fn_name = format!("__fish_{}_using_subcommand", BIN.replace('-', "_"));
    let mut lines = String::from("\n# Values of positional arguments (added by flexprice-import)\n");
    for sub in cli.get_subcommands() {
        for arg in sub.get_positionals() {
            for value in arg.get_possible_values().iter().filter(|v| !v.is_hide_set()) {
                lines.push_str(&format!(
                    "complete -c {BIN} -n \"{fn_name} {}\" -f -a \"{}\"",
                    sub.get_name(),
                    value.get_name()
                ));
                if let Some(help) = value.get_help() {
                    let help = help.to_string().replace('\\', "\\\\").replace('\'', "\\'");
                    lines.push_str(&format!(" -d '{help}'"));
                }
                lines.push('\n');
            }
        }
    }
    lines
}

/// The file a shell's script is kept in under `completions/`.
pub fn file_name(shell: Shell) -> &'static str {
    match shell {
        Shell::Bash => "flexprice-import.bash",
        Shell::Zsh => "_flexprice-import",
        Shell::Fish => "flexprice-import.fish",
        Shell::Elvish => "flexprice-import.elv",
        Shell::PowerShell => "_flexprice-import.ps1",
        _ => "flexprice-import.completion",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bash_arms_are_spelled_as_the_loop_sets_cmd() {
        let mut out = Vec::new();
        generate(Shell::Bash, &mut out).unwrap();
        let script = String::from_utf8(out).unwrap();
        assert!(
            !script.contains("flexprice__subcmd__import"),
            "an arm no `cmd` can match is left"
        );
        for sub in ["run", "templates", "list", "help__subcmd__run"] {
            let state = format!("flexprice__import__subcmd__{sub}");
            assert!(script.contains(&format!("cmd=\"{state}\"")), "the loop sets {state}");
            assert!(script.contains(&format!("\n        {state})")), "an arm for {state}");
        }
    }
}
