//! The binary's own command line. (Also makes `cargo test --workspace` build the binary,
//! which the end-to-end tests in `tests/` run.)

#[test]
fn version_and_bad_listen_address() {
    let bin = env!("CARGO_BIN_EXE_lightsout-agent");
    let out = std::process::Command::new(bin)
        .arg("--version")
        .output()
        .expect("run");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("lightsout-agent "));

    let home = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(bin)
        .args(["--dry-run", "--listen", "not-an-address"])
        .env("LIGHTSOUT_HOME", home.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--listen"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
