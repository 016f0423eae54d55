//! The README's procedures for administrators (second controller, renewal, rotation, backup),
//! run as written: each is a fenced `sh` block after a `<!-- procedure: NAME -->` line, so a
//! change to the README changes what the tests run.
//!
//! A "machine" is a `HOME` directory of its own. What a procedure says to carry from one
//! machine to another travels through one shared working directory (the USB stick). On a lab
//! machine the system paths `/etc/lightsout/` and `/var/lib/lightsout/` are mapped into the
//! machine's directory, and `sudo` and `systemctl` are stand-ins: `sudo` runs its arguments,
//! `systemctl reload lightsout-agent` sends SIGHUP to the agent under test, as the unit's
//! `ExecReload` does. Nothing else is changed.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Run, bin};

/// One stand-in machine: its own `HOME`.
#[derive(Debug, Clone)]
pub struct Machine {
    /// `HOME`.
    pub home: PathBuf,
    /// The agent's pid, for `systemctl reload lightsout-agent` on a lab machine.
    pub agent_pid: Option<u32>,
    /// Extra environment (e.g. `LIGHTSOUT_BUNDLE`).
    pub env: Vec<(String, String)>,
}

impl Machine {
    /// A machine whose `HOME` is `home` (created).
    pub fn at(home: impl Into<PathBuf>) -> Self {
        let home = home.into();
        std::fs::create_dir_all(&home).unwrap();
        Self {
            home,
            agent_pid: None,
            env: Vec::new(),
        }
    }

    /// The lightsout home a binary uses there by default: `~/.config/lightsout`.
    pub fn lightsout_home(&self) -> PathBuf {
        self.home.join(".config/lightsout")
    }

    /// Where this machine's `/etc/lightsout/` is.
    pub fn etc(&self) -> PathBuf {
        self.home.join("etc/lightsout")
    }

    /// Where this machine's `/var/lib/lightsout/` is.
    pub fn var_lib(&self) -> PathBuf {
        self.home.join("var/lib/lightsout")
    }

    /// `lightsout ARGS` as this machine's user would type it (no `LIGHTSOUT_HOME`).
    pub fn lightsout(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new(bin("lightsout"));
        self.environment(&mut cmd);
        Run::of(cmd.args(args))
    }

    fn environment(&self, cmd: &mut Command) {
        for var in [
            "LIGHTSOUT_HOME",
            "LIGHTSOUT_INVENTORY",
            "LIGHTSOUT_BUNDLE",
            "XDG_CONFIG_HOME",
            "RUST_LOG",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("HOME", &self.home);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
    }
}

/// The README as it is now (read at run time, so an edit changes what the tests run).
pub fn readme_text() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).unwrap()
}

/// A fenced `sh` block of the README.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShBlock {
    /// The line of its opening fence (1-based).
    pub line: usize,
    /// The `## ` section it is in (its heading without the `## `).
    pub section: String,
    /// The procedure it is: the `<!-- procedure: NAME -->` line right before the fence (blank
    /// lines between are allowed), if there is one.
    pub procedure: Option<String>,
    /// What is between the fences, each line ending in a newline.
    pub body: String,
}

/// Every fenced `sh` block of a README text, in order.
pub fn sh_blocks(text: &str) -> Vec<ShBlock> {
    let mut blocks = Vec::new();
    let mut section = String::new();
    let mut last_text: Option<&str> = None;
    let mut lines = text.lines().enumerate();
    while let Some((i, line)) = lines.next() {
        if let Some(heading) = line.strip_prefix("## ") {
            section = heading.trim().to_owned();
        }
        if line.trim_end() == "```sh" {
            let procedure = last_text
                .and_then(|l| l.trim().strip_prefix("<!-- procedure:"))
                .and_then(|l| l.strip_suffix("-->"))
                .map(|name| name.trim().to_owned());
            let mut body = String::new();
            for (_, line) in lines.by_ref() {
                if line.trim_end() == "```" {
                    break;
                }
                body.push_str(line);
                body.push('\n');
            }
            blocks.push(ShBlock {
                line: i + 1,
                section: section.clone(),
                procedure,
                body,
            });
            last_text = None;
        } else if !line.trim().is_empty() {
            last_text = Some(line);
        }
    }
    blocks
}

/// The text of the README's procedure `name`.
///
/// # Panics
/// When the README has no such procedure.
pub fn procedure_text(name: &str) -> String {
    sh_blocks(&readme_text())
        .into_iter()
        .find(|b| b.procedure.as_deref() == Some(name))
        .unwrap_or_else(|| {
            panic!("README.md has no <!-- procedure: {name} --> followed by a ```sh block")
        })
        .body
}

/// Runs the README's procedure `name` with `sh -e` on `machine`, in `cwd`, with the
/// binaries first on `PATH`; asserts it succeeds and returns what it printed.
pub fn procedure(name: &str, machine: &Machine, cwd: &Path) -> Run {
    let script = procedure_text(name)
        .replace("/etc/lightsout/", &format!("{}/", machine.etc().display()))
        .replace(
            "/var/lib/lightsout/",
            &format!("{}/", machine.var_lib().display()),
        );
    let shims = machine.home.join(".stand-ins");
    std::fs::create_dir_all(&shims).unwrap();
    write_script(&shims.join("sudo"), "#!/bin/sh\nexec \"$@\"\n");
    let pid = machine
        .agent_pid
        .map_or_else(String::new, |p| p.to_string());
    write_script(
        &shims.join("systemctl"),
        &format!(
            "#!/bin/sh\n[ \"$1 $2\" = \"reload lightsout-agent\" ] || {{ echo \"stand-in systemctl: $*\" >&2; exit 1; }}\nkill -HUP {pid}\n"
        ),
    );
    let bins = bin("lightsout").parent().unwrap().to_path_buf();
    let path = std::env::join_paths([bins, shims].into_iter().chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .unwrap();
    let mut cmd = Command::new("sh");
    machine.environment(&mut cmd);
    cmd.env("PATH", path)
        .current_dir(cwd)
        .args(["-e", "-c", &script]);
    let run = Run::of(&mut cmd);
    assert_eq!(
        run.code,
        Some(0),
        "README procedure {name} failed:\n{script}\nstdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    run
}

fn write_script(path: &Path, body: &str) {
    std::fs::write(path, body).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}
