//! The packaging suite: the Debian packages as `packaging/build-debs` builds them (or as
//! `LIGHTSOUT_DEB_DIR` holds them), extracted into a scratch root and checked from there:
//! what they hold, their maintainer scripts, and the packaged agent's files as the service
//! and its administrator see them. Installing, upgrading and removing them for real happens in
//! the virtual machines of the VM suite.
//!
//! Its own test target (`test = false` in `tests/Cargo.toml`): building the packages is a
//! release build, which the everyday `cargo test --workspace` must not wait for. Run it with
//! `cargo test --test packaging`; `.ci/run` does, after its one release build.
//!
//! # Layout
//! - this file: [`Installed`], both packages extracted into one root; [`on_packaged_machine`],
//!   a command run as if that root were the system.
//! - `contents`: the files, conffiles, man pages, and every path the pages and `--help` name.
//! - `scripts`: the maintainer scripts, run against stand-ins of systemd's tools.
//! - `service`: the packaged configuration, `audit tail`, the logrotate file.

#![allow(clippy::unwrap_used)]

mod contents;
mod scripts;
mod service;

use std::path::{Path, PathBuf};
use std::process::Command;

use lightsout_tests::debs::{self, Debs};
use lightsout_tests::{have, running_as_root, skip, skip_missing};

/// Both packages unpacked into one scratch root, as `dpkg -i` would unpack them (without
/// running their scripts).
#[derive(Debug)]
pub struct Installed {
    /// The packages.
    pub debs: &'static Debs,
    dir: tempfile::TempDir,
}

impl Installed {
    /// The packages extracted; `None` after a skip (they cannot be built here).
    pub fn new() -> Option<Self> {
        let debs = debs::debs()?;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("root")).unwrap();
        for deb in [&debs.agent, &debs.controller] {
            debs::extract(deb, &dir.path().join("root"));
        }
        Some(Self { debs, dir })
    }

    /// The root the packages are unpacked in.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// `path` (absolute, as on the installed system) inside the root.
    pub fn path(&self, path: &str) -> PathBuf {
        self.root().join(path.trim_start_matches('/'))
    }

    /// A scratch directory beside the root, for the test's own files.
    pub fn scratch(&self) -> PathBuf {
        let scratch = self.dir.path().join("scratch");
        std::fs::create_dir_all(&scratch).unwrap();
        scratch
    }

    /// What `postinst configure` does to the file system before the service's first start:
    /// the state directory (the scripts themselves are run in `scripts`).
    pub fn make_state_dir(&self) {
        let state = self.path("/var/lib/lightsout");
        std::fs::create_dir_all(&state).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
    }
}

/// Whether [`on_packaged_machine`] can work here (root, `unshare`, `nsenter`); says why not.
pub fn can_pose_as_packaged_machine() -> bool {
    if !running_as_root() {
        skip("not root: mount namespaces need root");
        return false;
    }
    if !have("unshare", "--version") || !have("nsenter", "--version") {
        skip_missing(
            "unshare, nsenter (util-linux)",
            ".ci/run installs util-linux",
        );
        return false;
    }
    true
}

/// `program args` as on a machine with the packages installed: in a mount namespace of its
/// own, the root's `/etc` lies over the system's (read-only, so nothing of the system's
/// `/etc` can change), and `/var/lib` writes into the root's `var/lib`. The system's own
/// files are untouched, and outside the namespace nothing changes. Call
/// [`can_pose_as_packaged_machine`] first.
///
/// The command execs `program` in the end, so the child's pid is `program`'s pid.
pub fn on_packaged_machine(installed: &Installed, program: &Path) -> Command {
    let work = installed.scratch().join("overlay-work");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::create_dir_all(installed.path("/var/lib")).unwrap();
    let script = r#"set -e
mount -t overlay overlay -o "lowerdir=$1/etc:/etc" /etc
mount -t overlay overlay -o "lowerdir=/var/lib,upperdir=$1/var/lib,workdir=$2" /var/lib
shift 2
exec "$@""#;
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        "sh",
    ])
    .arg(installed.root())
    .arg(&work)
    .arg(program);
    as_under_sudo(&mut cmd);
    cmd
}

/// `program` in the mount namespace of process `pid` (one started with
/// [`on_packaged_machine`]): on the same packaged machine, beside it. Two overlays must not
/// share one upper directory, so a second command there enters the first one's namespace.
pub fn beside(pid: u32, program: &str) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.args(["--mount", "--target", &pid.to_string(), "--"])
        .arg(program);
    as_under_sudo(&mut cmd);
    cmd
}

/// None of the developer's or the test harness's lightsout settings, as `sudo` drops them.
fn as_under_sudo(cmd: &mut Command) {
    for var in [
        "LIGHTSOUT_HOME",
        "LIGHTSOUT_CONFIG",
        "LIGHTSOUT_LISTEN",
        "LIGHTSOUT_LOG_FORMAT",
    ] {
        cmd.env_remove(var);
    }
}
