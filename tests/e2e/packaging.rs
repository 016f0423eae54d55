//! Install and operate: the systemd unit, the example configuration, completions, man pages,
//! the audit log's checks and its reopening after rotation, checked from the files we ship.
//! What needs the built Debian packages is the `packaging` suite (`tests/packaging/`), run
//! apart: `cargo test --test packaging`.

use std::path::Path;
use std::process::Command;

use lightsout_tests::debs::repo;
use lightsout_tests::{AgentProcess, Lab, bin, have, running_as_root, skip, skip_missing};

/// Writes an agent bundle into `dir` with the CLI, as an administrator would.
fn write_bundle(lab: &Lab, path: &Path) {
    let path = path.to_str().unwrap();
    let args = [
        "pki",
        "issue",
        "agent",
        "lab-01",
        "--ip",
        "10.0.0.21",
        "--bundle",
        path,
    ];
    lab.lightsout(&args).success();
}

fn check_config(agent: &Path, config: &Path, home: &Path) -> std::process::Output {
    Command::new(agent)
        .args(["--check-config", "--config"])
        .arg(config)
        .env("LIGHTSOUT_HOME", home)
        .output()
        .unwrap()
}

#[test]
fn unit_file_passes_systemd_analyze_verify() {
    if !have("systemd-analyze", "--version") {
        skip_missing("systemd-analyze", ".ci/run installs systemd");
        return;
    }
    // verify checks that ExecStart exists: point it at the binary we built.
    let unit = std::fs::read_to_string(repo().join("packaging/lightsout-agent.service")).unwrap();
    let unit = unit.replace(
        "/usr/bin/lightsout-agent",
        bin("lightsout-agent").to_str().unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lightsout-agent.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Unknown keys and bad values are only warnings: none may mention our unit.
    assert!(!stderr.contains("lightsout-agent.service"), "{stderr}");
}

#[test]
fn example_config_passes_check_config_and_errors_are_precise() {
    let lab = Lab::new();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::copy(repo().join("agent.example.toml"), &config).unwrap();
    write_bundle(&lab, &dir.path().join("agent-bundle.pem"));
    let out = check_config(&bin("lightsout-agent"), &config, dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration OK"));

    // Without the bundle it installs, the same file is refused, naming the file.
    std::fs::remove_file(dir.path().join("agent-bundle.pem")).unwrap();
    let out = check_config(&bin("lightsout-agent"), &config, dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("agent-bundle.pem"));

    // A typo names the file, the line and the key.
    std::fs::write(&config, "dry_run = true\n\n[limits]\nidle_timeout = 5\n").unwrap();
    let out = check_config(&bin("lightsout-agent"), &config, dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(config.to_str().unwrap())
            && stderr.contains("line 4")
            && stderr.contains("idle_timeout"),
        "{stderr}"
    );
}

#[test]
fn command_line_overrides_environment_overrides_file() {
    let lab = Lab::new();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, "listen = \"127.0.0.1:7001\"\n").unwrap();
    let listen = |env: Option<&str>, cli: Option<&str>| {
        let mut cmd = Command::new(bin("lightsout-agent"));
        cmd.args(["--check-config", "--config"])
            .arg(&config)
            .env("LIGHTSOUT_HOME", lab.home.dir());
        cmd.env_remove("LIGHTSOUT_LISTEN");
        if let Some(e) = env {
            cmd.env("LIGHTSOUT_LISTEN", e);
        }
        if let Some(c) = cli {
            cmd.args(["--listen", c]);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.trim().strip_prefix("listen: ").map(str::to_owned))
            .unwrap()
    };
    assert_eq!(listen(None, None), "127.0.0.1:7001");
    assert_eq!(listen(Some("127.0.0.1:7002"), None), "127.0.0.1:7002");
    assert_eq!(
        listen(Some("127.0.0.1:7002"), Some("127.0.0.1:7003")),
        "127.0.0.1:7003"
    );
}

#[test]
fn completions_and_man_pages_are_generated() {
    for (name, subcommand, section) in [
        ("lightsout", "shutdown", "1"),
        ("lightsout-agent", "audit", "8"),
    ] {
        for shell in ["bash", "zsh", "fish"] {
            let out = Command::new(bin(name))
                .args(["completions", shell])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && text.contains(subcommand),
                "{name} {shell}: {text}"
            );
        }
        let out = Command::new(bin(name)).arg("man").output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{name}");
        assert!(
            text.contains(&format!(".TH {name} {section}")),
            "{name}: {}",
            &text[..text.len().min(200)]
        );
        assert!(text.contains(subcommand), "{name}");
    }
}

#[test]
fn json_log_format_is_one_object_per_line() {
    let lab = Lab::new();
    let out = Command::new(bin("lightsout-agent"))
        .args([
            "--dry-run",
            "--log-format",
            "json",
            "--listen",
            "127.0.0.1:0",
            "--check-config",
        ])
        .env("LIGHTSOUT_HOME", lab.home.dir())
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    assert!(out.status.success());
    // --check-config logs little; every line that is logged must be JSON.
    for line in String::from_utf8_lossy(&out.stderr).lines() {
        serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
}

#[test]
fn unit_waits_for_the_bundle_and_takes_its_home_from_the_config_file() {
    let unit = std::fs::read_to_string(repo().join("packaging/lightsout-agent.service")).unwrap();
    let lines: Vec<&str> = unit.lines().map(str::trim).collect();
    assert!(
        lines.contains(&"ConditionPathExists=/etc/lightsout/agent-bundle.pem"),
        "an enabled unit must wait for the bundle instead of failing without it"
    );
    assert!(
        lines.contains(&"ExecStart=/usr/bin/lightsout-agent --config /etc/lightsout/agent.toml")
    );
    assert!(lines.contains(&"StateDirectory=lightsout"));
    // One source for the home: an Environment=LIGHTSOUT_HOME would outrank the file's `home`,
    // and the administrator's tools (which read the file) would look elsewhere.
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with("Environment=") && l.contains("LIGHTSOUT_HOME")),
        "{unit}"
    );
    let example = std::fs::read_to_string(repo().join("agent.example.toml")).unwrap();
    assert!(
        example
            .lines()
            .any(|l| l == "home = \"/var/lib/lightsout\""),
        "the packaged configuration sets the service's home"
    );
}

/// `lightsout-agent --check-config --config CONFIG` with `LIGHTSOUT_HOME`, run through `sh -c
/// WRAP` (WRAP gets the agent as $1, the config as $2, `dir` as $3).
fn check_config_wrapped(
    wrap: &str,
    config: &Path,
    home: &Path,
    dir: &Path,
) -> std::process::Output {
    Command::new("sh")
        .args(["-c", wrap, "sh"])
        .arg(bin("lightsout-agent"))
        .arg(config)
        .arg(dir)
        .env("LIGHTSOUT_HOME", home)
        .env_remove("LIGHTSOUT_CONFIG")
        .output()
        .unwrap()
}

#[test]
fn check_config_fails_when_the_audit_log_cannot_be_opened_for_writing() {
    let lab = Lab::new();
    let dir = tempfile::tempdir().unwrap();
    write_bundle(&lab, &dir.path().join("agent-bundle.pem"));
    let config = dir.path().join("agent.toml");
    let plain = r#""$1" --check-config --config "$2""#;

    // Its directory is missing: the key, the file and the reason are named.
    std::fs::write(
        &config,
        "[tls]\nbundle = \"agent-bundle.pem\"\n[audit]\npath = \"missing/audit.jsonl\"\n",
    )
    .unwrap();
    let out = check_config_wrapped(plain, &config, lab.home.dir(), dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("[audit] path in {}", config.display()))
            && stderr.contains(&dir.path().join("missing/audit.jsonl").display().to_string())
            && stderr.contains("No such file or directory"),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("configuration OK"));

    // --audit-log is named when it is the option at fault.
    std::fs::write(&config, "[tls]\nbundle = \"agent-bundle.pem\"\n").unwrap();
    let missing = dir.path().join("nowhere/audit.jsonl");
    let wrap = format!(r#"{plain} --audit-log '{}'"#, missing.display());
    let out = check_config_wrapped(&wrap, &config, lab.home.dir(), dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--audit-log"), "{stderr}");

    // A writable place passes, and the log is created as the agent creates it (mode 0600).
    let out = check_config_wrapped(plain, &config, lab.home.dir(), dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created = lab.home.dir().join("audit.jsonl");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&created).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", created.display());
    }

    // A read-only directory (as ProtectSystem=strict makes everything outside the unit's
    // own directories): a read-only bind mount in a mount namespace of its own when root
    // (root ignores permission bits), a directory without write permission otherwise.
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    std::fs::write(
        &config,
        "[tls]\nbundle = \"agent-bundle.pem\"\n[audit]\npath = \"logs/audit.jsonl\"\n",
    )
    .unwrap();
    let out = if running_as_root() {
        if !have("unshare", "--version") {
            skip_missing("unshare (util-linux)", ".ci/run installs util-linux");
            return;
        }
        let wrap = r#"exec unshare --mount --propagation private sh -c 'mount --bind "$3/logs" "$3/logs" && mount -o remount,ro,bind "$3/logs" && exec "$1" --check-config --config "$2"' sh "$1" "$2" "$3""#;
        check_config_wrapped(wrap, &config, lab.home.dir(), dir.path())
    } else {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o500)).unwrap();
        }
        check_config_wrapped(plain, &config, lab.home.dir(), dir.path())
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("[audit] path")
            && (stderr.contains("Read-only file system") || stderr.contains("Permission denied")),
        "{stderr}"
    );
    assert!(!logs.join("audit.jsonl").exists());
}

#[test]
fn a_rotated_audit_log_is_reopened_on_sighup_and_no_line_is_lost() {
    if !cfg!(unix) {
        skip("SIGHUP is Unix");
        return;
    }
    let lab = Lab::new();
    let log = lab.dir.path().join("audit.jsonl");
    let rotated = lab.dir.path().join("audit.jsonl.1");
    let agent = AgentProcess::start(&lab, &["--dry-run", "--audit-log", log.to_str().unwrap()]);
    let echo = |payload: &str| {
        lab.lightsout(&["echo", &agent.target(), "--payload", payload])
            .success();
    };
    echo("before");
    lightsout_tests::poll("the first audit line", || {
        Lab::echo_payloads(&log)
            .contains(&"before".to_owned())
            .then_some(())
    });

    // logrotate renames the file; the agent still holds it open, so the next line goes
    // there, not into the void.
    std::fs::rename(&log, &rotated).unwrap();
    echo("between");
    lightsout_tests::poll("the line written after the rename", || {
        Lab::echo_payloads(&rotated)
            .contains(&"between".to_owned())
            .then_some(())
    });
    let pid = agent.child.id().to_string();
    let hup = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    assert!(hup.success());
    agent.wait_for_logs("the SIGHUP reopen", |l| l.contains("audit log is reopened"));
    echo("after");
    lightsout_tests::poll("the line after the reopen", || {
        Lab::echo_payloads(&log)
            .contains(&"after".to_owned())
            .then_some(())
    });

    assert_eq!(
        Lab::echo_payloads(&rotated),
        ["before", "between"],
        "the rotated file keeps its lines"
    );
    assert_eq!(
        Lab::echo_payloads(&log),
        ["after"],
        "new lines go to the new file"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&log).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the new log is created private");
    }
}
