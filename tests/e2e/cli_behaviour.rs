//! The CLI as a person uses it: a closed stdout, `--help`'s layout and long help, errors
//! that say a thing once and what to do, values clap would misread, rolling batches with
//! `--max-fail`, and the agent's log output (`-v`, `NO_COLOR`).

use std::process::{Command, Stdio};

use lightsout_tests::{AgentProcess, Lab, bin, closed_port, have, skip_missing};
use serde_json::Value;

use crate::lab::{Room, dry};

/// Runs `cmd` with a stdout whose reader has already gone (`... | true` where `true` exited
/// first): every write fails with a broken pipe. Returns the exit code and stderr.
fn with_stdout_closed(cmd: &mut Command) -> (Option<i32>, String) {
    // (rustix rather than std::io::pipe, which is newer than the workspace's MSRV.)
    let (reader, writer) = rustix::pipe::pipe().unwrap();
    drop(reader);
    let writer = std::fs::File::from(writer);
    let out = cmd
        .stdout(writer)
        .stderr(Stdio::piped())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Asserts the command ended with `code` and nothing on stderr (no panic message, no error).
fn assert_quiet_end(what: &str, cmd: &mut Command, code: i32) {
    let (got, stderr) = with_stdout_closed(cmd);
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    assert_ne!(got, Some(101), "{what}: a panic's exit status: {stderr}");
    assert_eq!(got, Some(code), "{what}: {stderr}");
    assert_eq!(stderr, "", "{what}: a closed pipe is a normal end");
}

#[test]
fn a_closed_stdout_ends_quietly_with_the_status_the_command_would_have_had() {
    let lab = Lab::new();
    let agent = AgentProcess::start(&lab, &["--dry-run"]);
    let target = agent.target();
    let down = format!("127.0.0.1:{}", closed_port());
    let inventory = lab.dir.path().join("inventory.toml");
    std::fs::write(
        &inventory,
        "[hosts.lab-01]\naddress = \"10.0.0.1\"\n[hosts.lab-02]\naddress = \"10.0.0.2\"\n",
    )
    .unwrap();
    let lightsout = |args: &[&str]| {
        let mut cmd = lab.controller_cmd();
        cmd.args(args);
        cmd
    };
    let inv = inventory.to_str().unwrap();
    for (args, code) in [
        (vec!["completions", "bash"], 0),
        (vec!["man"], 0),
        (vec!["--inventory", inv, "inventory", "list"], 0),
        (vec!["--inventory", inv, "--json", "inventory", "list"], 0),
        (vec!["status", &target], 0),
        (vec!["--json", "echo", &target], 0),
        (vec!["--jsonl", "echo", &target], 0),
        // A failed host keeps its status: 1, not 0 and not a panic's 101.
        (vec!["status", &target, &down, "--timeout", "2s"], 1),
        (
            vec!["--jsonl", "echo", &target, &down, "--timeout", "2s"],
            1,
        ),
    ] {
        assert_quiet_end(&format!("lightsout {args:?}"), &mut lightsout(&args), code);
    }

    // The agent: its man page, completions and the audit log (the echo above wrote to it).
    let home = lab.home.dir().to_str().unwrap();
    for args in [
        vec!["man"],
        vec!["completions", "bash"],
        vec!["--home", home, "audit", "tail"],
        vec!["--home", home, "audit", "tail", "--json"],
    ] {
        let mut cmd = Command::new(bin("lightsout-agent"));
        cmd.args(&args).env_remove("LIGHTSOUT_CONFIG");
        assert_quiet_end(&format!("lightsout-agent {args:?}"), &mut cmd, 0);
    }
    // Another write error than a closed pipe is not quiet: named, exit 2.
    if std::path::Path::new("/dev/full").exists() {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let out = lightsout(&["man"]).stdout(file).output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert!(
            String::from_utf8_lossy(&out.stderr)
                .contains("lightsout: error: cannot write to standard output: No space left"),
            "{out:?}"
        );
    }
}

/// Each `--help`'s own options come before the "Global options:" heading, the global ones
/// after it.
#[test]
fn help_shows_the_commands_own_options_first_and_the_global_ones_under_their_heading() {
    let lab = Lab::new();
    for (command, own) in [
        (vec!["shutdown"], "--delay"),
        (vec!["restart"], "--wait"),
        (vec!["echo"], "--payload"),
        (vec!["cancel"], "--dry-run"),
        (vec!["wake"], "--broadcast"),
        (vec!["discover"], "--write-inventory"),
        (vec!["pki", "list"], "--expiring"),
        (vec!["status"], "-h, --help"),
        (vec!["inventory", "learn"], "-h, --help"),
    ] {
        let run = lab
            .lightsout(&[command.as_slice(), &["--help"]].concat())
            .success();
        let help = &run.stdout;
        let heading = help
            .find("\nGlobal options:\n")
            .unwrap_or_else(|| panic!("{command:?}: no Global options heading:\n{help}"));
        let own_at = help.find(own).unwrap();
        assert!(
            own_at < heading,
            "{command:?}: {own} after the heading:\n{help}"
        );
        for global in [
            "--timeout <TIMEOUT>",
            "--parallel <N>",
            "--inventory <FILE|DIR>",
            "--home <HOME>",
        ] {
            let at = help
                .find(global)
                .unwrap_or_else(|| panic!("{command:?}: {global} missing:\n{help}"));
            assert!(
                at > heading,
                "{command:?}: {global} before the heading:\n{help}"
            );
        }
    }
}

#[test]
fn long_help_documents_targets_durations_the_inventory_and_exit_codes() {
    let lab = Lab::new();
    for command in [
        vec!["shutdown"],
        vec!["restart"],
        vec!["cancel"],
        vec!["wake"],
        vec!["status"],
        vec!["echo"],
        vec!["inventory"],
        vec!["inventory", "list"],
        vec!["discover"],
    ] {
        let help = lab
            .lightsout(&[command.as_slice(), &["--help"]].concat())
            .success()
            .stdout;
        for needle in [
            // Targets.
            "Targets:",
            "@GROUP",
            "HOST:PORT",
            "[IPv6]:PORT",
            // Durations, with examples.
            "Durations:",
            "90s, 5m, 1h30m",
            "A bare number is seconds",
            "500ms",
            // The inventory format, and where it is described.
            "Inventory:",
            "inventory.example.toml",
            "[hosts.NAME]",
            // Exit codes.
            "Exit codes:",
            "0  every host succeeded",
            "1  at least one host failed",
            "2  usage or configuration error",
        ] {
            assert!(
                help.contains(needle),
                "{command:?} --help lacks {needle:?}:\n{help}"
            );
        }
    }
    // The short help stays short.
    let short = lab.lightsout(&["shutdown", "-h"]).success().stdout;
    assert!(!short.contains("Exit codes:"), "{short}");
}

/// What usage errors say: the value's own problem, never clap's `-- -5` tip.
#[test]
fn values_clap_would_misread_get_their_own_messages() {
    let lab = Lab::new();
    for (args, says) in [
        (
            vec!["shutdown", "lab-01", "--delay", "-5"],
            "invalid value '-5' for '--delay <DELAY>': a delay cannot be negative: -5; give 0 for now, or e.g. 5m",
        ),
        (
            vec!["restart", "lab-01", "--delay", "-5m"],
            "a delay cannot be negative: -5m; give 0 for now, or e.g. 5m",
        ),
        (
            vec!["--timeout", "-1s", "echo", "lab-01"],
            "a timeout cannot be negative: -1s",
        ),
        (
            vec!["shutdown", "lab-01", "--batch", "2", "--stagger", "-30s"],
            "a pause cannot be negative: -30s; give 0 for none",
        ),
        (
            vec!["--parallel", "0", "echo", "lab-01"],
            "invalid value '0' for '--parallel <N>': \"0\": expected a whole number of at least 1",
        ),
        (
            vec!["shutdown", "lab-01", "--batch", "0"],
            "\"0\": a batch needs at least one host",
        ),
        (
            vec!["shutdown", "lab-01", "--batch", "0%"],
            "\"0%\": a batch needs at least one host",
        ),
        (
            vec!["shutdown", "lab-01", "--batch", "120%"],
            "\"120%\": a percentage is 0-100%",
        ),
        (
            vec!["shutdown", "lab-01", "--batch", "2", "--max-fail", "lots"],
            "expected a number of hosts (e.g. 4) or a percentage of them (e.g. 25%)",
        ),
        (
            vec!["--timeout", "0", "echo", "lab-01"],
            "timeout must be greater than zero",
        ),
        (vec!["shutdown", "lab-01", "--max-fail", "1"], "--batch"),
    ] {
        let run = lab.lightsout(&args);
        assert_eq!(run.code, Some(2), "{args:?}: {run:?}");
        assert!(run.stderr.contains(says), "{args:?}: {}", run.stderr);
        assert!(
            !run.stderr.contains("-- -"),
            "{args:?}: clap's tip: {}",
            run.stderr
        );
    }
}

/// `lightsout-agent` with the lab's environment removed (no config, no home).
fn agent_cmd() -> Command {
    let mut cmd = Command::new(bin("lightsout-agent"));
    cmd.env_remove("LIGHTSOUT_CONFIG")
        .env_remove("LIGHTSOUT_HOME")
        .env_remove("LIGHTSOUT_LISTEN")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    cmd
}

fn stderr_of(cmd: &mut Command) -> (Option<i32>, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn errors_name_the_file_say_what_to_do_and_say_it_once() {
    let lab = Lab::new();
    let dir = lab.dir.path();
    let missing_inv = dir.join("nope.toml");
    let missing_bundle = dir.join("nope.pem");
    let (inv, bundle) = (missing_inv.display(), missing_bundle.display());
    let cases: Vec<(&str, Command, String)> = vec![
        (
            "missing inventory",
            {
                let mut c = lab.controller_cmd();
                c.arg("--inventory").arg(&missing_inv).args(["inventory", "list"]);
                c
            },
            format!(
                "lightsout: error: no inventory at {inv}: create it (see inventory.example.toml), or point --inventory (or LIGHTSOUT_INVENTORY) at an existing file or directory\n"
            ),
        ),
        (
            "missing bundle (controller)",
            {
                let mut c = lab.controller_cmd();
                c.arg("--bundle").arg(&missing_bundle).args(["echo", "127.0.0.1"]);
                c
            },
            format!(
                "lightsout: error: bundle {bundle} (--bundle or LIGHTSOUT_BUNDLE): no such file; issue one on the CA machine (`lightsout pki issue controller NAME --role ROLE --bundle FILE`) and copy it here\n"
            ),
        ),
        (
            "missing bundle (agent)",
            {
                let mut c = agent_cmd();
                c.arg("--home")
                    .arg(lab.home.dir())
                    .arg("--bundle")
                    .arg(&missing_bundle)
                    .args(["--dry-run", "--listen", "127.0.0.1:0"]);
                c
            },
            format!(
                "lightsout-agent: error: bundle {bundle} (--bundle): no such file; issue one on the CA machine (`lightsout pki issue agent NAME --ip ADDRESS --bundle FILE`) and copy it here\n"
            ),
        ),
        (
            "no home (controller)",
            {
                let mut c = lab.controller_cmd();
                c.env_remove("LIGHTSOUT_HOME")
                    .env_remove("HOME")
                    .env_remove("XDG_CONFIG_HOME")
                    .args(["status"]);
                c
            },
            "lightsout: error: no home directory (HOME is not set): pass --home DIR or set LIGHTSOUT_HOME to the directory holding the certificates\n".into(),
        ),
        (
            "no home (agent)",
            {
                let mut c = agent_cmd();
                c.env_remove("HOME")
                    .env_remove("XDG_CONFIG_HOME")
                    .args(["--dry-run", "--listen", "127.0.0.1:0"]);
                c
            },
            "lightsout-agent: error: no home directory (HOME is not set): pass --home DIR or set LIGHTSOUT_HOME to the directory holding the certificates\n".into(),
        ),
        (
            "no home (agent audit tail)",
            {
                let mut c = agent_cmd();
                c.env_remove("HOME")
                    .env_remove("XDG_CONFIG_HOME")
                    .args(["audit", "tail"]);
                c
            },
            "lightsout-agent: error: no home directory (HOME is not set): pass --home DIR or set LIGHTSOUT_HOME to the directory holding the certificates\n".into(),
        ),
    ];
    for (what, mut cmd, expected) in cases {
        let (code, stderr) = stderr_of(&mut cmd);
        assert_eq!(code, Some(2), "{what}: {stderr}");
        assert_eq!(stderr, expected, "{what}");
    }
    // An inventory that cannot be read (a file where a directory should be): the cause is
    // said once, not once by the error and again as its source.
    let blocker = dir.join("a-file");
    std::fs::write(&blocker, "").unwrap();
    let run = lab.lightsout(&[
        "--inventory",
        blocker.join("inventory.toml").to_str().unwrap(),
        "inventory",
        "list",
    ]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert_eq!(run.stderr.matches("(os error 20)").count(), 1, "{run:?}");
}

#[test]
fn refusing_this_machine_after_its_self_check_says_no_shutdown_or_restart_was_sent() {
    let room = Room::new(&[("lab-01", dry(&[]))]);
    // The agent is a dry-run one, which would be allowed; one with a stand-in is not.
    let scratch = Lab::new();
    let (script, log) = scratch.stand_in("s1", 0);
    let live = AgentProcess::start(&room.lab, &["--power-command", script.to_str().unwrap()]);
    room.prepend_inventory(&format!(
        "[hosts.here]\naddress = \"127.0.0.1\"\nport = {}\ntls_name = \"localhost\"\n",
        live.addr.port()
    ));
    for (action, says) in [
        ("shutdown", "No shutdown was sent."),
        ("restart", "No restart was sent."),
    ] {
        let out = room.run(&[action, "here"]);
        assert_eq!(out.code, 2, "{out:?}");
        assert!(
            out.stderr.contains("it is this machine") && out.stderr.contains(says),
            "{out:?}"
        );
        assert!(
            !out.stderr.contains("Nothing was sent"),
            "the self-check echo was sent: {out:?}"
        );
    }
    assert!(!log.exists(), "nothing ran");
}

/// Hosts where no agent listens: each fails at once (connection refused).
fn add_down_hosts(room: &Room, names: &[&str]) {
    for name in names {
        room.prepend_inventory(&format!(
            "[hosts.{name}]\naddress = \"127.0.0.1\"\nport = {}\n",
            closed_port()
        ));
    }
}

fn by_host(doc: &Value) -> std::collections::BTreeMap<String, Value> {
    doc["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["host"].as_str().unwrap().to_owned(), r.clone()))
        .collect()
}

#[test]
fn a_rolling_shutdown_stops_once_more_than_max_fail_hosts_failed() {
    let room = Room::new(&[("ok-1", dry(&[])), ("ok-2", dry(&[])), ("ok-3", dry(&[]))]);
    add_down_hosts(&room, &["down-1", "down-2"]);
    let order = ["ok-1", "down-1", "down-2", "ok-2", "ok-3"];
    let run = |extra: &[&str]| {
        let args = [
            &["--json", "shutdown"][..],
            &order,
            &["--yes", "--include-self", "--timeout", "2s", "--batch", "1"],
            extra,
        ]
        .concat();
        room.run(&args)
    };

    // --max-fail 1: down-1 is the first failure (not more than 1), down-2 the second: the
    // batches after it are not sent.
    let out = run(&["--max-fail", "1"]);
    assert_eq!(out.code, 1, "{out:?}");
    let doc = out.json();
    assert_eq!(doc["summary"]["ok"], 1, "{doc}");
    assert_eq!(doc["summary"]["failed"], 2, "{doc}");
    assert_eq!(doc["summary"]["skipped"], 2, "{doc}");
    let hosts = by_host(&doc);
    for name in ["ok-2", "ok-3"] {
        let reason = hosts[name]["reason"].as_str().unwrap_or_default();
        assert!(
            reason.starts_with("not sent: stopped after batch 3/5")
                && reason.contains("more than --max-fail 1"),
            "{name}: {reason}"
        );
        assert!(
            !room.audited(name).contains(&"shutdown".to_owned()),
            "{name} was sent the shutdown"
        );
    }
    assert!(room.audited("ok-1").contains(&"shutdown".to_owned()));

    // --max-fail 2: two failures are not more than two; everything is sent.
    let out = run(&["--max-fail", "2"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(out.json()["summary"]["skipped"], 0, "{out:?}");
    assert_eq!(out.json()["summary"]["ok"], 3, "{out:?}");

    // Without --max-fail a rolling run never stops on failures (as before).
    let out = run(&[]);
    assert_eq!(out.json()["summary"]["skipped"], 0, "{out:?}");
}

#[test]
fn a_percentage_max_fail_counts_the_batch_and_must_be_exceeded() {
    let room = Room::new(&[("ok-1", dry(&[])), ("ok-2", dry(&[])), ("ok-3", dry(&[]))]);
    add_down_hosts(&room, &["down-1", "down-2", "down-3"]);
    // Batches of 2: [ok-1 down-1] is 50% failed, [down-2 down-3] 100%, [ok-2 ok-3] last.
    let args = |max_fail: &str| -> Vec<String> {
        [
            "--json",
            "shutdown",
            "ok-1",
            "down-1",
            "down-2",
            "down-3",
            "ok-2",
            "ok-3",
            "--yes",
            "--include-self",
            "--timeout",
            "2s",
            "--batch",
            "2",
            "--max-fail",
            max_fail,
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let run = |max_fail: &str| {
        let a = args(max_fail);
        room.run(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    // 50% is not more than 50%: the first batch passes, the second (100%) stops the run.
    let out = run("50%");
    assert_eq!(out.code, 1, "{out:?}");
    let hosts = by_host(&out.json());
    assert_eq!(hosts["down-2"]["status"], "failed", "{out:?}");
    for name in ["ok-2", "ok-3"] {
        assert_eq!(hosts[name]["status"], "skipped", "{out:?}");
        assert!(
            hosts[name]["reason"]
                .as_str()
                .unwrap()
                .contains("stopped after batch 2/3, 2 of its 2 hosts failed (3 so far), more than --max-fail 50%"),
            "{out:?}"
        );
    }
    // 49%: the first batch's 50% is more; nothing after it is sent.
    let out = run("49%");
    let hosts = by_host(&out.json());
    for name in ["down-2", "down-3", "ok-2", "ok-3"] {
        assert_eq!(hosts[name]["status"], "skipped", "{name}: {out:?}");
    }
    assert!(!room.audited("ok-2").contains(&"shutdown".to_owned()));
}

#[test]
fn batch_by_percentage_of_eight_hosts_sends_batches_of_two() {
    let room = Room::new(&[("ok-1", dry(&[])), ("ok-2", dry(&[]))]);
    let down: Vec<String> = (1..=6).map(|i| format!("down-{i}")).collect();
    add_down_hosts(&room, &down.iter().map(String::as_str).collect::<Vec<_>>());
    let mut args = vec!["shutdown", "ok-1", "ok-2"];
    args.extend(down.iter().map(String::as_str));
    args.extend([
        "--yes",
        "--include-self",
        "--timeout",
        "2s",
        "--batch",
        "25%",
    ]);
    let out = room.run(&args);
    assert_eq!(out.code, 1, "{out:?}");
    let batches: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("batch "))
        .collect();
    assert_eq!(
        batches,
        [
            "batch 1/4: ok-1, ok-2",
            "batch 2/4: down-1, down-2",
            "batch 3/4: down-3, down-4",
            "batch 4/4: down-5, down-6",
        ],
        "{out:?}"
    );
    assert!(out.stdout.contains("2 ok, 6 failed"), "{out:?}");
}

#[test]
fn the_agents_v_shows_its_own_decisions_and_vvv_the_libraries() {
    let lab = Lab::new();
    // AgentProcess sets RUST_LOG=info for its agents; `env -u` takes it away again so that
    // -v decides.
    let without_rust_log = || {
        let mut cmd = Command::new("env");
        cmd.args(["-u", "RUST_LOG"]).arg(bin("lightsout-agent"));
        cmd
    };
    let echo = |agent: &AgentProcess| {
        lab.lightsout(&["echo", &agent.target()]).success();
        // The connection's last line: everything before it has been logged.
        agent.wait_for_logs("the disconnect at debug", |l| {
            l.contains("DEBUG")
                && l.contains("lightsout_agent::connection")
                && l.contains("client disconnected")
        })
    };
    let agent = AgentProcess::start_cmd(&lab, without_rust_log(), &["--dry-run", "-v"]);
    let logs = echo(&agent);
    assert!(
        !logs.contains("rustls::"),
        "-v shows no rustls internals:\n{logs}"
    );
    assert!(!logs.contains("TRACE"), "{logs}");
    drop(agent);

    let agent = AgentProcess::start_cmd(&lab, without_rust_log(), &["--dry-run", "-vvv"]);
    let logs = echo(&agent);
    assert!(
        logs.contains("rustls::"),
        "-vvv shows the libraries (rustls logs its handshake):\n{logs}"
    );
}

#[test]
fn no_color_turns_the_agents_colours_off_on_a_terminal() {
    if !have("script", "--version") {
        skip_missing(
            "script (util-linux)",
            "it gives the agent a terminal to colour",
        );
        return;
    }
    let lab = Lab::new();
    // `--check-config` in an empty home creates a lab CA and logs it (INFO, coloured on a
    // terminal); `script` gives the agent a terminal for stderr and copies it to stdout.
    let run = |name: &str, no_color: Option<&str>| -> String {
        let home = lab.dir.path().join(name);
        let line = format!(
            "{} --home {} --check-config --dry-run",
            bin("lightsout-agent").display(),
            home.display()
        );
        let mut cmd = Command::new("script");
        cmd.args(["-qec", &line, "/dev/null"])
            .env_remove("RUST_LOG")
            .env_remove("NO_COLOR")
            .env_remove("LIGHTSOUT_HOME")
            .stdin(Stdio::null());
        if let Some(v) = no_color {
            cmd.env("NO_COLOR", v);
        }
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            text.contains("created a new lightsout CA"),
            "{name}: {text}"
        );
        text
    };
    assert!(
        run("coloured", None).contains("\x1b["),
        "on a terminal the agent colours its logs (else this test proves nothing)"
    );
    assert!(
        run("empty", Some("")).contains("\x1b["),
        "an empty NO_COLOR is unset (no-color.org)"
    );
    let plain = run("plain", Some("1"));
    assert!(!plain.contains("\x1b["), "NO_COLOR=1: {plain:?}");
}

#[test]
fn discover_write_inventory_with_group_puts_the_new_hosts_in_that_group() {
    let lab = Lab::new();
    // The UDP discovery port is the agent's TCP port: pick one that is free for both.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let _agent = AgentProcess::start(&lab, &["--dry-run", "--discoverable", "--listen", &listen]);
    let inventory = lab.dir.path().join("found.toml");
    std::fs::write(
        &inventory,
        "[hosts.old]\naddress = \"10.0.0.9\"\n\n[groups]\nnew-room = [\"old\"]\n",
    )
    .unwrap();
    let lightsout = |args: &[&str]| {
        let mut cmd = lab.controller_cmd();
        cmd.arg("--inventory").arg(&inventory).args(args);
        lightsout_tests::Run::of(&mut cmd)
    };
    let port_text = port.to_string();
    let discover = [
        "--timeout",
        "1s",
        "discover",
        "--broadcast",
        "127.0.0.1",
        "--port",
        &port_text,
        "--write-inventory",
    ];
    // A name that cannot be a group is refused before anything is probed or written.
    let before = std::fs::read_to_string(&inventory).unwrap();
    let run = lightsout(&[&discover[..], &["--group", "no spaces"]].concat());
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("no spaces"), "{run:?}");
    assert_eq!(std::fs::read_to_string(&inventory).unwrap(), before);
    // --group without --write-inventory is a usage error.
    let run = lightsout(&["discover", "--group", "x"]);
    assert_eq!(run.code, Some(2), "{run:?}");

    lightsout(&[&discover[..], &["--group", "new-room"]].concat()).success();
    let name = lightsout_pki::ca::local_hostname();
    let text = std::fs::read_to_string(&inventory).unwrap();
    assert!(
        text.contains(&format!("new-room = [\"old\", \"{name}\"]")),
        "the group keeps its members and gains the new host:\n{text}"
    );
    let listed = lightsout(&["--json", "inventory", "list", "@new-room"])
        .success()
        .json();
    let names: Vec<&str> = listed["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["name"].as_str())
        .collect();
    assert_eq!(names, ["old", name.as_str()], "{listed}");
}
