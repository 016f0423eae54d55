//! The binary's own command line. (Also makes `cargo test --workspace` build the binary,
//! which the end-to-end tests in `tests/` run.)

use std::process::Command;

fn lightsout() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lightsout"))
}

#[test]
fn usage_errors_exit_2() {
    let home = tempfile::tempdir().expect("tempdir");
    for args in [
        &["echo"][..],
        &["shutdown", "host", "--delay", "5x"],
        &["restart", "host:0"],
        &["shutdown", "host", "--message", "-c"],
        &["frobnicate"],
    ] {
        let out = lightsout()
            .args(args)
            .env("LIGHTSOUT_HOME", home.path())
            .output()
            .expect("run");
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
