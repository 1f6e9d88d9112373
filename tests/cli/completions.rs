//! The checked-in completion scripts are what the binary generates today.

use crate::support::{stdout_of, Env};

#[test]
fn checked_in_completions_are_current() {
    let env = Env::new();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("completions");
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
        let generated = stdout_of(&out);
        assert!(generated.contains("flexprice-import"));
        let committed = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
        assert!(
            committed == generated,
            "completions/{file} is stale: regenerate with `cargo run -- completions {shell} > completions/{file}`"
        );
    }
}
