//! Build script: the git revision the binary is built from, shown by `scim_proxy_build_info`.
//!
//! `SCIM_PROXY_GIT_REVISION` wins when set and not empty (an image build, whose context holds
//! no `.git`: `docker build --build-arg SCIM_PROXY_GIT_REVISION=$(git rev-parse HEAD)`);
//! otherwise `git rev-parse HEAD` of the checkout; otherwise `unknown`. Uncommitted changes
//! are not marked.
//!
//! With git, the script runs again when HEAD moves (a commit or a checkout), so the crate is
//! compiled again once after each commit, as a source edit would. Setting the variable (to
//! `dev`, say) stops that: git is then never asked.

use std::path::Path;
use std::process::Command;

const OVERRIDE: &str = "SCIM_PROXY_GIT_REVISION";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed={OVERRIDE}");
    let given = std::env::var(OVERRIDE).ok().map(|value| value.trim().to_owned()).filter(|value| !value.is_empty());
    let revision = given.or_else(from_git).unwrap_or_else(|| "unknown".to_owned());
    // It becomes a label value and the image's revision label: short, plain, one line.
    if revision.len() > 64 || !revision.chars().all(|c| c.is_ascii_graphic()) {
        panic!("{OVERRIDE} must be at most 64 visible ASCII characters, e.g. a commit hash; it is {revision:?}");
    }
    println!("cargo:rustc-env=SCIM_PROXY_BUILD_REVISION={revision}");
}

/// The commit checked out, and the files whose change means another one is.
fn from_git() -> Option<String> {
    let revision = git(&["rev-parse", "HEAD"])?;
    // In a worktree these are in the main repository's .git, which `--git-path` finds.
    let mut watched = vec![git(&["rev-parse", "--git-path", "HEAD"])];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(git(&["rev-parse", "--git-path", &branch]));
    }
    watched.push(git(&["rev-parse", "--git-path", "packed-refs"]));
    // A path that does not exist would make Cargo run this script at every build.
    for path in watched.into_iter().flatten().filter(|path| Path::new(path).exists()) {
        println!("cargo:rerun-if-changed={path}");
    }
    Some(revision)
}

/// What a git command prints, trimmed; `None` without git, outside a repository, or on failure.
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    (output.status.success() && !text.is_empty()).then_some(text)
}
