//! The agent package's maintainer scripts, run as dpkg runs them (`postinst configure`,
//! `prerm remove`, ...) against stand-ins of systemd's tools that record their arguments:
//! nothing starts on a fresh install, an upgrade reloads systemd and restarts the agent only
//! if it runs, a removal stops it, a purge forgets its enablement.
//!
//! The scripts are run unchanged but for two absolute paths: `/run/systemd/system` (whether
//! systemd is running: this test decides) and `/usr/bin/deb-systemd-helper` (whether it is
//! installed: the stand-in is). Before running, every other absolute path in a script must be
//! one that touches nothing of this machine; the state directory goes under `$DPKG_ROOT`.

use std::path::PathBuf;
use std::process::Command;

use crate::Installed;

const UNIT: &str = "lightsout-agent.service";

/// A scratch world for the scripts: stand-in tools in `bin/`, their calls in `calls`, a root
/// for `$DPKG_ROOT`, and the control files.
struct World {
    dir: tempfile::TempDir,
    control: PathBuf,
}

impl World {
    fn new(installed: &Installed) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let control = dir.path().join("DEBIAN");
        let status = Command::new("dpkg-deb")
            .arg("-e")
            .arg(&installed.debs.agent)
            .arg(&control)
            .status()
            .unwrap();
        assert!(status.success());
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(dir.path().join("root")).unwrap();
        let calls = dir.path().join("calls");
        // deb-systemd-helper answers its queries (debian-installed, was-enabled) from the
        // file `enabled`: present when the unit was installed and enabled before.
        let enabled = dir.path().join("enabled");
        for tool in ["systemctl", "deb-systemd-helper", "deb-systemd-invoke"] {
            let body = format!(
                "#!/bin/sh\necho \"{tool} $*\" >>'{calls}'\ncase \"$1 $2\" in\n  debian-installed*|--quiet\\ was-enabled|was-enabled*) [ -e '{enabled}' ] ;;\nesac\n",
                calls = calls.display(),
                enabled = enabled.display(),
            );
            let path = bin.join(tool);
            std::fs::write(&path, body).unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
        }
        Self { dir, control }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Whether systemd runs (the scripts look for `/run/systemd/system`).
    fn systemd_running(&self, running: bool) {
        let marker = self.path("run/systemd/system");
        if running {
            std::fs::create_dir_all(&marker).unwrap();
        } else if marker.exists() {
            std::fs::remove_dir_all(&marker).unwrap();
        }
    }

    fn unit_was_enabled(&self, enabled: bool) {
        if enabled {
            std::fs::write(self.path("enabled"), "").unwrap();
        } else {
            let _ = std::fs::remove_file(self.path("enabled"));
        }
    }

    /// The script `name` with the two machine-dependent paths pointed into this world, after
    /// checking that it names no other path of this machine.
    fn script(&self, name: &str) -> PathBuf {
        let text = std::fs::read_to_string(self.control.join(name))
            .unwrap_or_else(|e| panic!("no {name} in the package: {e}"));
        let text = text
            .replace(
                "/run/systemd/system",
                &self.path("run/systemd/system").display().to_string(),
            )
            .replace(
                "/usr/bin/deb-systemd-helper",
                &self.path("bin/deb-systemd-helper").display().to_string(),
            );
        let here = self.dir.path().display().to_string();
        for word in text.split(|c: char| c.is_whitespace() || c == '"' || c == '\'') {
            // Redirections too: `>/dev/null`, `2>/x`.
            let word =
                word.trim_start_matches(|c: char| c.is_ascii_digit() || "<>&|;(".contains(c));
            if word.starts_with('/') {
                assert!(
                    word.starts_with(&here) || ["/bin/sh", "/dev/null"].contains(&word),
                    "{name} names {word}: this test would touch the machine; extend the test"
                );
            }
        }
        let path = self.path(&format!("{name}.under-test"));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Runs `script ARGS` as dpkg would (`$DPKG_ROOT` = this world's root); returns the
    /// stand-ins' calls, one per line.
    fn run(&self, script: &str, args: &[&str]) -> Vec<String> {
        let _ = std::fs::remove_file(self.path("calls"));
        let path = self.script(script);
        let search = format!(
            "{}:{}",
            self.path("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = Command::new("sh")
            .arg(&path)
            .args(args)
            .env("PATH", search)
            .env("DPKG_ROOT", self.path("root"))
            .env("DPKG_MAINTSCRIPT_NAME", script)
            .env("DPKG_MAINTSCRIPT_PACKAGE", "lightsout-agent")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{script} {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read_to_string(self.path("calls"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

fn starts_or_restarts(calls: &[String]) -> Vec<&String> {
    calls
        .iter()
        .filter(|c| {
            c.starts_with("deb-systemd-invoke")
                && ["start", "restart", "try-restart", "reload-or-restart"]
                    .iter()
                    .any(|verb| c.split_whitespace().nth(1) == Some(verb))
                || c.starts_with("deb-systemd-helper enable")
                || c.starts_with("systemctl") && c.contains("start")
        })
        .collect()
}

fn has(calls: &[String], call: &str) -> bool {
    calls.iter().any(|c| c == call)
}

#[test]
fn maintainer_scripts_start_nothing_on_install_restart_on_upgrade_stop_on_remove() {
    let Some(installed) = Installed::new() else {
        return;
    };
    let world = World::new(&installed);
    world.systemd_running(true);
    // cargo-deb inserts its fragments at every debhelper token: exactly once each.
    let postinst = std::fs::read_to_string(world.control.join("postinst")).unwrap();
    assert_eq!(
        postinst.matches("deb-systemd-invoke try-restart").count(),
        1,
        "{postinst}"
    );

    // A fresh install: systemd learns of the unit, nothing is enabled or started (the
    // machine's bundle is not there yet), and the state directory exists for --check-config.
    world.unit_was_enabled(false);
    let calls = world.run("postinst", &["configure"]);
    assert!(starts_or_restarts(&calls).is_empty(), "{calls:#?}");
    assert!(
        has(&calls, "systemctl --system daemon-reload"),
        "{calls:#?}"
    );
    let state = world.path("root/var/lib/lightsout");
    assert!(
        state.is_dir(),
        "postinst creates the service's state directory"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&state).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    // An upgrade of an enabled, running agent: reload systemd, then restart the agent if it
    // runs (try-restart starts nothing that was stopped).
    world.unit_was_enabled(true);
    let calls = world.run("prerm", &["upgrade", "0.2.0"]);
    assert!(
        !calls.iter().any(|c| c.contains("stop")),
        "an upgrade does not stop the agent before the new files are in: {calls:#?}"
    );
    let calls = world.run("postinst", &["configure", "0.0.9"]);
    let reload = calls
        .iter()
        .position(|c| c == "systemctl --system daemon-reload");
    let restart = calls
        .iter()
        .position(|c| *c == format!("deb-systemd-invoke try-restart {UNIT}"));
    assert!(
        reload.is_some() && restart.is_some() && reload < restart,
        "daemon-reload, then try-restart: {calls:#?}"
    );
    assert!(
        !calls
            .iter()
            .any(|c| c.starts_with("deb-systemd-invoke start")),
        "{calls:#?}"
    );

    // Without systemd running (an image being built, a chroot): nothing is reloaded or
    // restarted.
    world.systemd_running(false);
    let calls = world.run("postinst", &["configure", "0.0.9"]);
    assert!(
        !calls
            .iter()
            .any(|c| c.starts_with("systemctl") || c.starts_with("deb-systemd-invoke")),
        "{calls:#?}"
    );
    world.systemd_running(true);

    // Removal stops the agent; postrm masks the unit against a later start while its files
    // are gone, and a purge removes the enablement and the mask.
    let calls = world.run("prerm", &["remove"]);
    assert!(
        has(&calls, &format!("deb-systemd-invoke stop {UNIT}")),
        "{calls:#?}"
    );
    let calls = world.run("postrm", &["remove"]);
    assert!(
        has(&calls, &format!("deb-systemd-helper mask {UNIT}")),
        "{calls:#?}"
    );
    assert!(
        has(&calls, "systemctl --system daemon-reload"),
        "{calls:#?}"
    );
    let calls = world.run("postrm", &["purge"]);
    assert!(
        has(&calls, &format!("deb-systemd-helper purge {UNIT}"))
            && has(&calls, &format!("deb-systemd-helper unmask {UNIT}")),
        "{calls:#?}"
    );
    assert!(starts_or_restarts(&calls).is_empty(), "{calls:#?}");
}
