//! The binary on a real terminal of a chosen width: a detached tmux session (its own server,
//! on a socket in the test's folder) whose screen the test reads as a user would see it.
//!
//! tmux is required: `.ci/run` installs it, and without it these tests fail saying so rather
//! than pass without looking.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::support::Env;

pub struct Tmux {
    socket: PathBuf,
    exit_file: PathBuf,
}

/// Quotes a word for `sh`.
fn quoted(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

fn tmux_available() {
    let found = Command::new("tmux").arg("-V").output();
    assert!(
        found.as_ref().is_ok_and(|o| o.status.success()),
        "these tests draw on a terminal through tmux, which is not installed: \
         `apt-get install tmux` (.ci/run installs it)"
    );
}

impl Tmux {
    /// Starts `flexprice-import ARGS` with this test's store on a `width`-column terminal.
    /// The session stays open after the command ends, so its last screen can be read.
    pub fn start(env: &Env, width: usize, args: &[&str]) -> Tmux {
        tmux_available();
        let name = format!("tmux-{width}");
        let socket = env.dir.path().join(format!("{name}.sock"));
        let exit_file = env.dir.path().join(format!("{name}.exit"));
        let _ = std::fs::remove_file(&exit_file);
        let command: Vec<String> = std::iter::once(env!("CARGO_BIN_EXE_flexprice-import"))
            .chain(args.iter().copied())
            .map(quoted)
            .collect();
        let script = env.dir.path().join(format!("{name}.sh"));
        std::fs::write(
            &script,
            format!(
                "unset CI NO_COLOR COLUMNS FLEXPRICE_TENANT_ID FLEXPRICE_TARGET\n\
                 export FLEXPRICE_IMPORT_DB={db} FLEXPRICE_ACTOR=tester TERM=xterm-256color\n\
                 cd {dir}\n\
                 {command}\n\
                 echo $? > {exit}\n\
                 sleep 600\n",
                db = quoted(&env.store()),
                dir = quoted(&env.dir.path().to_string_lossy()),
                command = command.join(" "),
                exit = quoted(&exit_file.to_string_lossy()),
            ),
        )
        .unwrap();
        let tmux = Tmux { socket, exit_file };
        let out = tmux.run(&[
            "new-session",
            "-d",
            "-x",
            &width.to_string(),
            "-y",
            "40",
            "sh",
            &script.to_string_lossy(),
        ]);
        assert!(out.status.success(), "tmux: {}", String::from_utf8_lossy(&out.stderr));
        tmux
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(["-f", "/dev/null"])
            .args(args)
            .output()
            .unwrap()
    }

    /// The visible screen, one line per terminal row (a line too long for the terminal shows
    /// as two rows).
    pub fn screen(&self) -> String {
        let out = self.run(&["capture-pane", "-p"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The screen with lines the terminal wrapped joined again: what was printed.
    pub fn printed(&self) -> String {
        let out = self.run(&["capture-pane", "-p", "-J"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits for the command to end; returns its exit code.
    pub fn wait_for_exit(&self, timeout: Duration) -> i32 {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(text) = std::fs::read_to_string(&self.exit_file) {
                if let Ok(code) = text.trim().parse() {
                    return code;
                }
            }
            assert!(Instant::now() < deadline, "still running:\n{}", self.screen());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}
