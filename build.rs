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
    // Only files that exist are watched: cargo runs a build script again on every build while
    // a watched file is missing (a repository that never packed its refs has no
    // packed-refs), and the crate is then compiled again each time. A ref that moves still
    // changes or removes a watched file: a commit rewrites the branch's own file, and
    // packing refs removes it.
    let mut watched: Vec<String> = ["HEAD", "packed-refs"]
        .iter()
        .filter_map(|path| git(&["rev-parse", "--git-path", path]))
        .collect();
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.extend(git(&["rev-parse", "--git-path", &branch]));
    }
    for file in watched {
        let path = dir.join(file);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    git(&["rev-parse", "--short", "HEAD"])
}
