//! Install and operate: the systemd unit, the example configuration, completions, man pages
//! and the Debian packages, checked from the files we ship.

use std::path::Path;
use std::process::Command;

use lightsout_tests::debs::repo;
use lightsout_tests::{Lab, bin, have, skip_missing};

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
fn debian_packages_install_into_a_scratch_root_and_run() {
    let Some(built) = lightsout_tests::debs::debs() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let debs = [&built.agent, &built.controller];
    for deb in debs {
        lightsout_tests::debs::extract(deb, root.path());
    }
    let r = root.path();
    for file in [
        "usr/bin/lightsout",
        "usr/bin/lightsout-agent",
        "lib/systemd/system/lightsout-agent.service",
        "etc/lightsout/agent.toml",
        "usr/share/man/man1/lightsout.1",
        "usr/share/man/man8/lightsout-agent.8",
        "usr/share/bash-completion/completions/lightsout",
        "usr/share/zsh/vendor-completions/_lightsout-agent",
        "usr/share/fish/vendor_completions.d/lightsout.fish",
    ] {
        let found = r.join(file).exists() || r.join(format!("{file}.gz")).exists();
        assert!(found, "{file} missing from the packages");
    }
    // The agent's configuration is a conffile: upgrades keep the administrator's edits.
    let agent_deb = &built.agent;
    let info = Command::new("dpkg-deb")
        .args(["-f"])
        .arg(agent_deb)
        .arg("Package")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&info.stdout).trim(),
        "lightsout-agent"
    );
    let conffiles = Command::new("dpkg-deb")
        .args(["--ctrl-tarfile"])
        .arg(agent_deb)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&conffiles.stdout).contains("/etc/lightsout/agent.toml"));

    // The installed binaries run, and the installed configuration checks out once the
    // machine's bundle is in place.
    for b in ["lightsout", "lightsout-agent"] {
        let out = Command::new(r.join("usr/bin").join(b))
            .arg("--version")
            .output()
            .unwrap();
        assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).starts_with(b));
    }
    let lab = Lab::new();
    write_bundle(&lab, &r.join("etc/lightsout/agent-bundle.pem"));
    let out = check_config(
        &r.join("usr/bin/lightsout-agent"),
        &r.join("etc/lightsout/agent.toml"),
        &r.join("var/lib/lightsout"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
