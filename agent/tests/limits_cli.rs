//! Every limit is a command-line flag, and an impossible combination is refused before any
//! socket opens (exit 2, naming the limit).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn agent(home: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lightsout-agent"));
    cmd.env("LIGHTSOUT_HOME", home)
        .env_remove("RUST_LOG")
        .args(["--dry-run", "--listen", "127.0.0.1:0"]);
    cmd
}

#[test]
fn impossible_limits_are_refused_naming_the_limit() {
    let home = tempfile::tempdir().expect("tempdir");
    for (args, named) in [
        (&["--max-frame-len", "100"][..], "max_frame_len"),
        (&["--max-frame-len", "1000000"][..], "max_frame_len"),
        (
            &["--max-frame-len", "8192", "--max-echo-payload", "8192"][..],
            "max_echo_payload",
        ),
        (&["--max-requests-per-sec", "0"][..], "max_requests_per_sec"),
    ] {
        let out = agent(home.path()).args(args).output().expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(named), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}: started anyway");
    }
}

#[test]
fn every_limit_flag_is_accepted() {
    let home = tempfile::tempdir().expect("tempdir");
    let mut child = agent(home.path())
        .args([
            "--max-connections",
            "8",
            "--handshake-timeout",
            "2",
            "--idle-timeout",
            "3",
            "--max-frame-len",
            "8192",
            "--max-echo-payload",
            "1024",
            "--max-requests-per-sec",
            "5",
            "--shutdown-grace",
            "1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.starts_with("listening on 127.0.0.1:"), "{line:?}");
}
