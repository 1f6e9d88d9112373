//! Checked-in text the binary generates (completion scripts, the man page, help snapshots):
//! a test fails when the binary's output differs from the file, and `UPDATE_GENERATED=1`
//! writes the files instead.

use std::path::Path;

/// The variable that makes `check_generated` write the files.
pub const UPDATE: &str = "UPDATE_GENERATED";

/// Compares `generated` with the file at `path` (relative to the crate's root), or writes it
/// there when UPDATE_GENERATED=1.
pub fn check_generated(path: &str, generated: &str) {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    if std::env::var_os(UPDATE).is_some_and(|v| v == "1") {
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&file).unwrap_or_default();
    if committed != generated {
        panic!(
            "{path} is not what the binary prints now.\n{}\nIf the change is meant, regenerate every \
             such file with `{UPDATE}=1 cargo test --test cli generated` and commit them.",
            first_difference(&committed, generated)
        );
    }
}

/// The first line that differs, for the failure message.
fn first_difference(committed: &str, generated: &str) -> String {
    let mut old = committed.lines();
    let mut new = generated.lines();
    for n in 1.. {
        match (old.next(), new.next()) {
            (None, None) => return "(they differ only in line endings)".into(),
            (a, b) if a == b => continue,
            (a, b) => {
                return format!(
                    "first difference at line {n}:\n  file:   {}\n  binary: {}",
                    a.unwrap_or("(end of file)"),
                    b.unwrap_or("(end of output)")
                )
            }
        }
    }
    unreachable!()
}
