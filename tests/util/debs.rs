//! The project's Debian packages, as the packaging, docs and VM suites use them: built once
//! per test process with `packaging/build-debs`, or taken ready-made from the directory named
//! by `LIGHTSOUT_DEB_DIR` (`.ci/run` sets it after its one release build, so the suites share
//! one set of packages), and extracted into a root per machine with `dpkg-deb -x`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::{have, skip_missing};

/// The two packages.
#[derive(Debug)]
pub struct Debs {
    /// `lightsout-agent_*.deb`.
    pub agent: PathBuf,
    /// `lightsout_*.deb` (the controller).
    pub controller: PathBuf,
}

/// The workspace root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The packages, built on first use (or found in `LIGHTSOUT_DEB_DIR`). `None` after
/// [`skip_missing`] said why they cannot be built here (cargo-deb or dpkg-deb missing); the
/// caller returns.
///
/// # Panics
/// The build fails, or the directory does not hold exactly one package of each.
pub fn debs() -> Option<&'static Debs> {
    static DEBS: OnceLock<Option<Debs>> = OnceLock::new();
    DEBS.get_or_init(build).as_ref()
}

fn build() -> Option<Debs> {
    if !have("dpkg-deb", "--version") {
        skip_missing("dpkg-deb", "Debian has it; .ci/run runs there");
        return None;
    }
    let dir = match std::env::var_os("LIGHTSOUT_DEB_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            if !Command::new("cargo")
                .args(["deb", "--version"])
                .output()
                .is_ok_and(|o| o.status.success())
            {
                skip_missing(
                    "cargo-deb",
                    ".ci/run installs it: cargo install cargo-deb --locked",
                );
                return None;
            }
            let dir = repo().join("target/debian-tests");
            let out = Command::new(repo().join("packaging/build-debs"))
                .arg(&dir)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "packaging/build-debs failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            dir
        }
    };
    let mut agent = Vec::new();
    let mut controller = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("lightsout-agent_") && name.ends_with(".deb") {
            agent.push(path);
        } else if name.starts_with("lightsout_") && name.ends_with(".deb") {
            controller.push(path);
        }
    }
    assert!(
        agent.len() == 1 && controller.len() == 1,
        "{} must hold one lightsout-agent_*.deb and one lightsout_*.deb: {agent:?} {controller:?}",
        dir.display()
    );
    Some(Debs {
        agent: agent.remove(0),
        controller: controller.remove(0),
    })
}

/// Extracts `deb` into `root` (as `dpkg -i` would unpack it, without running its scripts).
///
/// # Panics
/// `dpkg-deb -x` fails.
pub fn extract(deb: &Path, root: &Path) {
    let status = Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb)
        .arg(root)
        .status()
        .unwrap();
    assert!(status.success(), "dpkg-deb -x {} failed", deb.display());
}
