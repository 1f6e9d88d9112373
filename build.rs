//! Puts the git commit the binary is built from into FLEXPRICE_IMPORT_COMMIT, for
//! `--version`: `git rev-parse --short HEAD` of this crate's own repository, or "unknown" when
//! there is none (a source tarball, a crate from a registry) or git is missing.

use std::path::Path;
use std::process::Command;

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let commit = commit(Path::new(&dir)).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=FLEXPRICE_IMPORT_COMMIT={commit}");
    println!("cargo:rerun-if-changed=build.rs");
}

/// The short commit of HEAD, when `dir` is the top of a git work tree (not a folder inside
/// some other repository, as an unpacked tarball may be). Asks cargo to build again when HEAD
/// moves.
fn commit(dir: &Path) -> Option<String> {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git").args(args).current_dir(dir).output().ok()?;
        let text = String::from_utf8(out.stdout).ok()?;
        (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
    };
    let top = git(&["rev-parse", "--show-toplevel"])?;
    if Path::new(&top).canonicalize().ok()? != dir.canonicalize().ok()? {
        return None;
    }
    // HEAD names a branch, whose ref moves with each commit (in its own file, or packed).
    for path in ["HEAD", "packed-refs"] {
        if let Some(file) = git(&["rev-parse", "--git-path", path]) {
            println!("cargo:rerun-if-changed={}", dir.join(file).display());
        }
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        if let Some(file) = git(&["rev-parse", "--git-path", &branch]) {
            println!("cargo:rerun-if-changed={}", dir.join(file).display());
        }
    }
    git(&["rev-parse", "--short", "HEAD"])
}
