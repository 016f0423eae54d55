//! Running a whole lab on loopback: several agents on distinct 127.0.0.x addresses, an
//! inventory naming them, and the real controller — fan-out, a dead and a silent host,
//! `--json`/`--jsonl`, the confirmation gate, self-protection, `--skip-busy`, batches,
//! cancel, `restart --wait`, Wake-on-LAN (to 127.0.0.1 only), `inventory learn`, discovery.
//!
//! Every agent is dry-run or runs a stand-in power command. Magic packets go to 127.0.0.1.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lightsout_tests::{AgentProcess, Lab};
use serde_json::Value;

/// One machine of a room: its name, agent, and audit log.
pub struct Machine {
    pub name: String,
    pub agent: AgentProcess,
    pub audit: PathBuf,
}

/// Agents on 127.0.0.1, .2, .3 ... and an inventory with a host per agent and group `room`.
pub struct Room {
    pub lab: Lab,
    pub machines: Vec<Machine>,
    pub inventory: PathBuf,
}

/// The outcome of one controller run.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }
}

impl Room {
    /// `machines`: (name, extra agent arguments, which must include --dry-run or
    /// --power-command). Machine i listens on 127.0.0.(i+1).
    pub fn new(machines: &[(&str, Vec<String>)]) -> Self {
        let lab = Lab::new();
        let mut started = Vec::new();
        let mut inventory = String::new();
        for (i, (name, extra)) in machines.iter().enumerate() {
            let ip = format!("127.0.0.{}", i + 1);
            let audit = lab.dir.path().join(format!("{name}-audit.jsonl"));
            let mut args: Vec<String> = vec![
                "--listen".into(),
                format!("{ip}:0"),
                "--audit-log".into(),
                audit.display().to_string(),
            ];
            args.extend(extra.iter().cloned());
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let agent = AgentProcess::start(&lab, &args);
            // The local agent certificate is valid for localhost and 127.0.0.1 only.
            inventory.push_str(&format!(
                "[hosts.{name}]\naddress = \"{ip}\"\nport = {}\ntls_name = \"localhost\"\nmac = \"52:54:00:00:00:{:02x}\"\n\n",
                agent.addr.port(),
                i + 1
            ));
            started.push(Machine {
                name: (*name).to_owned(),
                agent,
                audit,
            });
        }
        let names: Vec<String> = machines.iter().map(|(n, _)| format!("{n:?}")).collect();
        inventory.push_str(&format!("[groups]\nroom = [{}]\n", names.join(", ")));
        let path = lab.dir.path().join("inventory.toml");
        std::fs::write(&path, inventory).unwrap();
        Self {
            lab,
            machines: started,
            inventory: path,
        }
    }

    /// Adds text to the inventory (before `[groups]` is fine: TOML tables are unordered).
    pub fn prepend_inventory(&self, text: &str) {
        let old = std::fs::read_to_string(&self.inventory).unwrap();
        std::fs::write(&self.inventory, format!("{text}\n{old}")).unwrap();
    }

    pub fn cmd(&self) -> Command {
        let mut cmd = self.lab.controller_cmd();
        cmd.arg("--inventory").arg(&self.inventory);
        cmd
    }

    /// Runs the controller with stdin closed (not a terminal).
    pub fn run(&self, args: &[&str]) -> Out {
        let out = self.cmd().args(args).stdin(Stdio::null()).output().unwrap();
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Request kinds in a machine's audit log.
    pub fn audited(&self, name: &str) -> Vec<String> {
        let m = self.machines.iter().find(|m| m.name == name).unwrap();
        std::fs::read_to_string(&m.audit)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| v["kind"].as_str().map(str::to_owned))
            .collect()
    }
}

pub fn dry(extra: &[&str]) -> Vec<String> {
    std::iter::once("--dry-run")
        .chain(extra.iter().copied())
        .map(str::to_owned)
        .collect()
}

/// The host objects of a `--json` document, by host name.
fn by_host(doc: &Value) -> std::collections::BTreeMap<String, Value> {
    doc["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["host"].as_str().unwrap().to_owned(), r.clone()))
        .collect()
}

/// Runs the controller and collects its stdout lines with the time each arrived.
fn timed_lines(mut cmd: Command) -> (i32, Vec<(Duration, String)>) {
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = BufReader::new(stdout)
        .lines()
        .map(|l| (started.elapsed(), l.unwrap()))
        .collect();
    let code = child.wait().unwrap().code().unwrap_or(-1);
    (code, lines)
}

#[test]
fn fan_out_to_all_with_a_dead_and_a_silent_host() {
    let room = Room::new(&[
        ("lab-01", dry(&[])),
        ("lab-02", dry(&[])),
        ("lab-10", dry(&[])),
    ]);
    // A dead host (nothing listens) and a silent one (accepts, never answers).
    let dead = TcpListener::bind("127.0.0.4:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    let silent = TcpListener::bind("127.0.0.5:0").unwrap();
    room.prepend_inventory(&format!(
        "[hosts.dead]\naddress = \"127.0.0.4\"\nport = {dead_port}\n[hosts.silent]\naddress = \"127.0.0.5\"\nport = {}\n",
        silent.local_addr().unwrap().port()
    ));

    // --jsonl: one line per host as it completes; the silent host costs only its deadline
    // and does not hold back the others.
    let mut cmd = room.cmd();
    cmd.args(["--jsonl", "--timeout", "2s", "echo", "all"]);
    let (code, lines) = timed_lines(cmd);
    assert_eq!(code, 1, "{lines:?}");
    assert_eq!(lines.len(), 5, "{lines:?}");
    let parsed: Vec<(Duration, Value)> = lines
        .iter()
        .map(|(t, l)| (*t, serde_json::from_str(l).unwrap()))
        .collect();
    let (last_at, last) = parsed.last().unwrap();
    assert_eq!(last["host"], "silent", "the silent host is reported last");
    assert_eq!(last["error"]["kind"], "timeout");
    assert!(*last_at >= Duration::from_secs(2), "{last_at:?}");
    for (at, line) in &parsed[..4] {
        assert!(
            *at < *last_at,
            "{} came before the silent host's deadline",
            line["host"]
        );
        assert_eq!(line["command"], "echo");
        let ok = line["host"].as_str().unwrap().starts_with("lab-");
        assert_eq!(line["ok"], ok, "{line}");
        assert_eq!(line["status"], if ok { "ok" } else { "failed" });
    }
    let dead_line = parsed.iter().find(|(_, l)| l["host"] == "dead").unwrap();
    assert_eq!(dead_line.1["error"]["kind"], "connection_refused");
    drop(silent);

    // --json: one document, hosts in the order resolved, counts including skipped.
    let out = room.run(&["--json", "--timeout", "2s", "echo", "@room", "dead"]);
    assert_eq!(out.code, 1, "{out:?}");
    let doc = out.json();
    assert_eq!(
        doc["summary"],
        serde_json::json!({"total": 4, "ok": 3, "failed": 1, "skipped": 0})
    );
    let hosts: Vec<&str> = doc["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["host"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, ["lab-01", "lab-02", "lab-10", "dead"]);
    let first = &doc["results"][0];
    assert_eq!(
        first["target"],
        format!("127.0.0.1:{}", room.machines[0].agent.addr.port())
    );
    assert_eq!(first["response"]["health"]["dry_run"], true);
    assert!(first["response"]["health"]["macs"].is_array());

    // The table: sorted by host (naturally), status, time, detail, summary.
    let out = room.run(&[
        "--timeout",
        "2s",
        "echo",
        "lab-10",
        "dead",
        "lab-02",
        "lab-01",
    ]);
    assert_eq!(out.code, 1, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].starts_with("HOST") && lines[0].contains("STATUS"));
    let order: Vec<&str> = lines[1..5]
        .iter()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(order, ["dead", "lab-01", "lab-02", "lab-10"]);
    assert!(lines[1].contains("FAILED") && lines[1].contains("connection refused"));
    assert_eq!(lines[5], "3 ok, 1 failed");
    assert!(
        out.stderr.is_empty(),
        "no progress bar without a terminal: {out:?}"
    );

    // Unknown names are usage errors, with a suggestion.
    let out = room.run(&["echo", "lab-1"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("did you mean \"lab-01\""), "{out:?}");
    let out = room.run(&["echo", "@rooom"]);
    assert_eq!(out.code, 2, "{out:?}");
}

#[test]
fn status_board_and_inventory_list() {
    let room = Room::new(&[
        ("lab-01", dry(&["--fake-logged-in-users", "3"])),
        ("lab-02", dry(&[])),
    ]);
    room.prepend_inventory("[hosts.gone]\naddress = \"127.0.0.9\"\nport = 9\n");
    let out = room.run(&["status"]);
    assert_eq!(out.code, 1, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    for column in [
        "HOST", "STATE", "UPTIME", "LOAD", "MEMORY", "USERS", "OS", "AGENT", "PRIV", "DRY-RUN",
    ] {
        assert!(lines[0].contains(column), "{column}: {}", lines[0]);
    }
    assert!(
        lines[1].starts_with("gone") && lines[1].contains("DOWN"),
        "{out:?}"
    );
    let lab01: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!((lab01[0], lab01[1]), ("lab-01", "up"), "{out:?}");
    assert!(lines[2].contains(" 3 "), "users: {}", lines[2]);
    assert!(lines[2].contains(env!("CARGO_PKG_VERSION")), "{}", lines[2]);
    assert_eq!(*lines.last().unwrap(), "2 up, 1 down");

    let out = room.run(&["--json", "status", "@room"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.json()["results"][0]["response"]["health"]["logged_in_users"],
        3
    );

    let out = room.run(&["inventory", "list", "@room", "10.0.0.99"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("52:54:00:00:00:01") && out.stdout.contains("room"),
        "{out:?}"
    );
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with('-') && l.contains("10.0.0.99"))
    );
    let out = room.run(&["--json", "inventory", "list"]);
    assert_eq!(out.json()["hosts"].as_array().unwrap().len(), 3);
}

#[test]
fn power_needs_confirmation_without_a_terminal_and_spares_this_machine() {
    let lab_args = |name: &str, lab: &Lab| -> Vec<String> {
        let (script, _) = lab.stand_in(name, 0);
        vec!["--power-command".into(), script.display().to_string()]
    };
    // Stand-in power commands (not dry-run): these agents "really" act.
    let scratch = Lab::new();
    let room = Room::new(&[
        ("lab-01", lab_args("s1", &scratch)),
        ("lab-02", lab_args("s2", &scratch)),
    ]);
    let log = |n: &str| scratch.dir.path().join(format!("{n}.log"));

    // More than one host, no terminal, no --yes: refused, nothing sent.
    let out = room.run(&["shutdown", "@room"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("--yes") && out.stderr.contains("Nothing was sent"),
        "{out:?}"
    );
    assert!(room.audited("lab-01").is_empty() && room.audited("lab-02").is_empty());

    // --yes, but the hosts are this machine (loopback) reached through a group: skipped.
    let out = room.run(&["--json", "shutdown", "@room", "--yes", "--include-self"]);
    assert_eq!(out.code, 0, "{out:?}");
    let doc = out.json();
    assert_eq!(doc["summary"]["skipped"], 2, "{doc}");
    assert!(
        doc["results"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("--include-self")
    );
    // Named explicitly without --include-self: refused outright.
    let out = room.run(&["shutdown", "lab-01"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("this machine"), "{out:?}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(!log("s1").exists() && !log("s2").exists(), "nothing ran");
    assert!(!room.audited("lab-01").contains(&"shutdown".to_string()));

    // Named explicitly with --include-self and --yes: sent. Then cancel reaches both.
    let out = room.run(&[
        "--json",
        "shutdown",
        "lab-01",
        "lab-02",
        "--delay",
        "5m",
        "--yes",
        "--include-self",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let out = room.run(&["--json", "cancel", "@room"]);
    assert_eq!(out.code, 0, "{out:?}");
    for (name, r) in by_host(&out.json()) {
        assert_eq!(
            r["response"]["cancelled"]["action"], "shutdown",
            "{name}: {r}"
        );
    }
    for n in ["s1", "s2"] {
        lightsout_tests::wait_for_log(&log(n), &["-h +5", "-c"]);
    }

    // A rehearsal needs neither confirmation nor --include-self.
    let out = room.run(&["--json", "restart", "@room", "--dry-run"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json()["results"][1]["response"]["dry_run"], true);
}

#[test]
fn skip_busy_and_batches() {
    // Users are counted from utmp, which a test machine may not have: say how many.
    let idle = || dry(&["--fake-logged-in-users", "0"]);
    let room = Room::new(&[
        ("lab-01", idle()),
        ("lab-02", dry(&["--fake-logged-in-users", "2"])),
        ("lab-03", idle()),
        ("lab-04", idle()),
        ("lab-05", idle()),
        ("lab-06", dry(&["--fake-users-unknown"])),
    ]);
    // Busy hosts are skipped, not failed, and get no restart; so are hosts that cannot tell
    // whether anyone is logged in (the flag is a safety promise: it fails safe).
    let out = room.run(&["--json", "restart", "@room", "--skip-busy", "--yes"]);
    assert_eq!(out.code, 0, "{out:?}");
    let doc = out.json();
    assert_eq!(
        doc["summary"],
        serde_json::json!({"total": 6, "ok": 4, "failed": 0, "skipped": 2})
    );
    let lab02 = &by_host(&doc)["lab-02"];
    assert_eq!(lab02["status"], "skipped");
    assert!(
        lab02["reason"].as_str().unwrap().contains("2 users"),
        "{lab02}"
    );
    let lab06 = &by_host(&doc)["lab-06"];
    assert_eq!(lab06["status"], "skipped");
    assert!(
        lab06["reason"].as_str().unwrap().contains("users unknown"),
        "{lab06}"
    );
    assert!(!room.audited("lab-02").contains(&"restart".to_string()));
    assert!(!room.audited("lab-06").contains(&"restart".to_string()));
    assert!(room.audited("lab-01").contains(&"restart".to_string()));
    let out = room.run(&["restart", "@room", "--skip-busy", "--yes"]);
    assert!(
        out.stdout.ends_with("4 ok, 0 failed, 2 skipped\n"),
        "{out:?}"
    );

    // Batches of 2, one second apart: batch by batch, in order.
    let mut cmd = room.cmd();
    cmd.args([
        "--jsonl",
        "shutdown",
        "@room",
        "--dry-run",
        "--batch",
        "2",
        "--stagger",
        "1s",
    ]);
    let (code, lines) = timed_lines(cmd);
    assert_eq!(code, 0, "{lines:?}");
    let hosts: Vec<(Duration, String)> = lines
        .iter()
        .map(|(t, l)| {
            let v: Value = serde_json::from_str(l).unwrap();
            (*t, v["host"].as_str().unwrap().to_owned())
        })
        .collect();
    let batch = |i: usize| -> Vec<String> {
        let mut b: Vec<String> = hosts[i..(i + 2).min(hosts.len())]
            .iter()
            .map(|h| h.1.clone())
            .collect();
        b.sort();
        b
    };
    assert_eq!(batch(0), ["lab-01", "lab-02"]);
    assert_eq!(batch(2), ["lab-03", "lab-04"]);
    assert_eq!(batch(4), ["lab-05", "lab-06"]);
    // The pause separates the batches (a lower bound only: sleeping is never shorter).
    assert!(
        hosts[2].0 - hosts[1].0 >= Duration::from_millis(900),
        "{hosts:?}"
    );
    assert!(
        hosts[4].0 - hosts[3].0 >= Duration::from_millis(900),
        "{hosts:?}"
    );
}

#[test]
fn restart_wait_sees_each_host_come_back() {
    let sim = || dry(&["--simulate-reboot", "--simulate-downtime-ms", "400"]);
    let room = Room::new(&[
        ("lab-01", sim()),
        ("lab-02", dry(&[])), // never "reboots"
        ("lab-03", sim()),
    ]);
    let out = room.run(&[
        "--json",
        "restart",
        "lab-01",
        "lab-03",
        "--wait",
        "--wait-timeout",
        "20s",
        "--yes",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    for (name, r) in by_host(&out.json()) {
        assert_eq!(r["wait"]["back"], true, "{name}: {r}");
        let after = r["wait"]["after_ms"].as_f64().unwrap();
        assert!(after >= 400.0, "{name} was down 400 ms: {after}");
        assert!(
            r["wait"]["detail"]
                .as_str()
                .unwrap()
                .contains("new boot_id")
        );
    }
    // A second restart is a second new boot.
    let out = room.run(&["restart", "lab-01", "--wait", "--wait-timeout", "20s"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("back after"), "{out:?}");

    // Rolling, one at a time: lab-02 does not come back, so lab-03 is not started.
    let out = room.run(&[
        "--json",
        "restart",
        "@room",
        "--wait",
        "--wait-timeout",
        "2s",
        "--batch",
        "1",
        "--yes",
    ]);
    assert_eq!(out.code, 1, "{out:?}");
    let hosts = by_host(&out.json());
    assert_eq!(hosts["lab-01"]["status"], "ok");
    assert_eq!(hosts["lab-02"]["status"], "failed");
    assert_eq!(hosts["lab-02"]["wait"]["back"], false);
    assert!(
        hosts["lab-02"]["wait"]["detail"]
            .as_str()
            .unwrap()
            .contains("same boot")
    );
    assert_eq!(hosts["lab-03"]["status"], "skipped");
    assert!(
        hosts["lab-03"]["reason"]
            .as_str()
            .unwrap()
            .contains("did not come back")
    );
}

#[test]
fn wake_direct_and_via_an_agent_to_loopback() {
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    sink.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let port = sink.local_addr().unwrap().port().to_string();
    // lab-01 relays to the sink's port as well as the standard ones; lab-02 keeps the
    // default (7 and 9 only).
    let ports = format!("7,9,{port}");
    let room = Room::new(&[
        ("lab-01", dry(&["--wake-ports", &ports])),
        ("lab-02", dry(&[])),
    ]);
    room.prepend_inventory("[hosts.nomac]\naddress = \"127.0.0.9\"\n");
    let packet_for = |mac: &str| -> Vec<u8> {
        let mac: lightsout_protocol::MacAddr = mac.parse().unwrap();
        mac.magic_packet().to_vec()
    };
    let receive = || {
        let mut buf = [0u8; 256];
        let n = sink.recv(&mut buf).unwrap();
        buf[..n].to_vec()
    };

    // Direct, from the controller.
    let out = room.run(&[
        "wake",
        "lab-01",
        "--broadcast",
        "127.0.0.1",
        "--port",
        &port,
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(receive(), packet_for("52:54:00:00:00:01"));
    assert!(
        out.stdout
            .contains("magic packets sent for 52:54:00:00:00:01"),
        "{out:?}"
    );

    // Through the agent on lab-01; a host with no MAC fails on its own.
    let out = room.run(&[
        "--json",
        "wake",
        "lab-02",
        "nomac",
        "--via",
        "lab-01",
        "--broadcast",
        "127.0.0.1",
        "--port",
        &port,
    ]);
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(receive(), packet_for("52:54:00:00:00:02"));
    let hosts = by_host(&out.json());
    assert_eq!(hosts["lab-02"]["response"]["via"], "lab-01");
    assert_eq!(hosts["nomac"]["error"]["kind"], "no_mac");
    assert!(room.audited("lab-01").contains(&"wake".to_string()));

    // Rehearsed: nothing sent.
    let out = room.run(&[
        "wake",
        "lab-02",
        "--via",
        "lab-01",
        "--dry-run",
        "--broadcast",
        "127.0.0.1",
        "--port",
        &port,
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("dry run: would send"), "{out:?}");
    sink.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(
        sink.recv(&mut [0u8; 256]).is_err(),
        "a rehearsal sends nothing"
    );

    // An agent with the default ports refuses any other port: a certificate that may wake
    // cannot aim packets at other UDP services on its network.
    let out = room.run(&[
        "--json",
        "wake",
        "lab-01",
        "--via",
        "lab-02",
        "--broadcast",
        "127.0.0.1",
        "--port",
        &port,
    ]);
    let error = &out.json()["results"][0]["error"];
    assert_eq!(error["kind"], "bad_request", "{out:?}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("not a Wake-on-LAN port this agent sends to (7, 9)"),
        "{out:?}"
    );
    assert!(
        sink.recv(&mut [0u8; 256]).is_err(),
        "nothing sent to a port that is not allowed"
    );

    // An agent refuses destinations that are not broadcasts of its networks, and a monitor
    // may not ask for wake at all.
    let out = room.run(&[
        "--json",
        "wake",
        "lab-02",
        "--via",
        "lab-01",
        "--broadcast",
        "192.0.2.1",
        "--port",
        &port,
    ]);
    assert_eq!(
        out.json()["results"][0]["error"]["kind"],
        "bad_request",
        "{out:?}"
    );
    let monitor = room.lab.controller("watcher", Some("monitor"));
    let out = room
        .cmd()
        .args(["--json", "--ca"])
        .arg(&monitor.ca)
        .arg("--cert")
        .arg(&monitor.cert)
        .arg("--key")
        .arg(&monitor.key)
        .args([
            "wake",
            "lab-02",
            "--via",
            "lab-01",
            "--broadcast",
            "127.0.0.1",
            "--port",
            &port,
        ])
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["results"][0]["error"]["kind"], "not_allowed", "{doc}");
}

#[test]
fn inventory_learn_records_the_agents_macs() {
    let room = Room::new(&[("lab-01", dry(&[]))]);
    let original = std::fs::read_to_string(&room.inventory).unwrap();
    // Without a MAC, and with a comment to keep.
    std::fs::write(
        &room.inventory,
        format!(
            "# our lab\n{}",
            original.replace("mac = \"52:54:00:00:00:01\"\n", "")
        ),
    )
    .unwrap();
    let echo = room.run(&["--json", "echo", "lab-01"]).json();
    let reported: Vec<lightsout_protocol::InterfaceMac> =
        serde_json::from_value(echo["results"][0]["response"]["health"]["macs"].clone()).unwrap();
    let expected = lightsout_controller::cmd::inventory::usable_macs(&reported);

    let out = room.run(&[
        "inventory",
        "learn",
        "lab-01",
        "10.0.0.99:7474",
        "--timeout",
        "1s",
    ]);
    let text = std::fs::read_to_string(&room.inventory).unwrap();
    assert!(text.starts_with("# our lab\n"), "{text}");
    assert!(out.stdout.contains("not in the inventory"), "{out:?}");
    if expected.is_empty() {
        assert_eq!(out.code, 1, "no usable MAC on this machine: {out:?}");
    } else {
        assert_eq!(out.code, 0, "{out:?}");
        let inv = lightsout_controller::inventory::Inventory::load(&room.inventory).unwrap();
        assert_eq!(inv.host("lab-01").unwrap().macs, expected);
    }
}

#[test]
fn discovery_answers_only_when_opted_in() {
    let lab = Lab::new();
    // The UDP discovery port is the agent's TCP port: pick one that is free for both.
    let port = {
        let t = TcpListener::bind("127.0.0.1:0").unwrap();
        t.local_addr().unwrap().port()
    };
    let listen = format!("127.0.0.1:{port}");
    let _agent = AgentProcess::start(&lab, &["--dry-run", "--discoverable", "--listen", &listen]);
    let silent_port = {
        let t = TcpListener::bind("127.0.0.1:0").unwrap();
        t.local_addr().unwrap().port()
    };
    let silent_listen = format!("127.0.0.1:{silent_port}");
    let _silent = AgentProcess::start(&lab, &["--dry-run", "--listen", &silent_listen]);

    let inventory = lab.dir.path().join("found.toml");
    let run = |p: u16, extra: &[&str]| {
        let out = lab
            .controller_cmd()
            .arg("--inventory")
            .arg(&inventory)
            .args([
                "--json",
                "--timeout",
                "1s",
                "discover",
                "--broadcast",
                "127.0.0.1",
            ])
            .args(["--port", &p.to_string()])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let doc = run(port, &["--write-inventory"]);
    let agents = doc["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 1, "{doc}");
    let found = &agents[0];
    assert_eq!(found["address"], "127.0.0.1");
    assert_eq!(found["port"], port);
    let cert = lightsout_pki::load::certs(&lab.home.agent_cert()).unwrap();
    assert_eq!(
        found["fingerprint"],
        lightsout_pki::tls::fingerprint(&cert[0])
    );
    assert_eq!(found["name"], lightsout_pki::ca::local_hostname());
    // Written to the inventory, and usable at once.
    let inv = lightsout_controller::inventory::Inventory::load(&inventory).unwrap();
    let name = found["name"].as_str().unwrap();
    assert_eq!(inv.host(name).unwrap().port, Some(port));
    let out = lab
        .controller_cmd()
        .arg("--inventory")
        .arg(&inventory)
        .args(["echo", name])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // A second discovery finds it already there.
    let doc = run(port, &["--write-inventory"]);
    assert!(
        doc["agents"][0]["inventory"]
            .as_str()
            .unwrap()
            .starts_with("in inventory")
    );
    // The agent that did not opt in stays silent.
    assert!(
        run(silent_port, &[]).as_object().unwrap()["agents"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // Malformed probes get no answer (and the agent carries on).
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    udp.send_to(b"lightsout-discover/1\n", ("127.0.0.1", port))
        .unwrap();
    assert!(
        udp.recv(&mut [0u8; 600]).is_err(),
        "a short probe is ignored"
    );
    udp.send_to(&lightsout_protocol::discovery::probe(), ("127.0.0.1", port))
        .unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 600];
    let n = udp.recv(&mut buf).unwrap();
    assert!(
        n <= lightsout_protocol::discovery::PROBE_LEN,
        "never larger than the probe"
    );
}

#[test]
fn an_ansible_inventory_works_unchanged() {
    let room = Room::new(&[("lab-01", dry(&[])), ("lab-02", dry(&[]))]);
    let ini = room.lab.dir.path().join("hosts");
    let port = |i: usize| room.machines[i].agent.addr.port();
    // ansible_port is SSH's: read, never dialled.
    std::fs::write(
        &ini,
        format!(
            "# the playbooks' inventory\n[teaching]\nlab-01 ansible_host=127.0.0.1 ansible_port=22 lightsout_port={}\nlab-02 ansible_host=127.0.0.2 lightsout_port={}\n\n[teaching:vars]\nlightsout_tls_name=localhost\n\n[everything:children]\nteaching\n",
            port(0),
            port(1)
        ),
    )
    .unwrap();
    let out = room
        .lab
        .controller_cmd()
        .arg("--inventory")
        .arg(&ini)
        .args(["--json", "echo", "@everything"])
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["summary"]["ok"], 2, "{doc}");
    assert_eq!(doc["results"][1]["host"], "lab-02");
}

#[test]
fn an_ansible_inventory_dials_ansible_ssh_host() {
    let room = Room::new(&[("lab-01", dry(&[]))]);
    let ini = room.lab.dir.path().join("hosts");
    // The inventory name resolves to nothing: only ansible_ssh_host reaches the agent.
    std::fs::write(
        &ini,
        format!(
            "[teaching]\nlab-01.invalid ansible_ssh_host=127.0.0.1 lightsout_port={} lightsout_tls_name=localhost\n",
            room.machines[0].agent.addr.port()
        ),
    )
    .unwrap();
    let out = room
        .lab
        .controller_cmd()
        .arg("--inventory")
        .arg(&ini)
        .args(["--json", "echo", "@teaching"])
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["summary"]["ok"], 1, "{doc}");
    assert_eq!(
        doc["results"][0]["target"],
        format!("127.0.0.1:{}", room.machines[0].agent.addr.port())
    );
}

#[test]
fn inventory_learn_on_an_ansible_inventory_prints_lines_to_paste() {
    let room = Room::new(&[("lab-01", dry(&[]))]);
    let ini = room.lab.dir.path().join("hosts");
    let text = format!(
        "[teaching]\nlab-01 ansible_host=127.0.0.1 lightsout_port={} lightsout_tls_name=localhost\n",
        room.machines[0].agent.addr.port()
    );
    std::fs::write(&ini, &text).unwrap();
    let echo = room.run(&["--json", "echo", "lab-01"]).json();
    let reported: Vec<lightsout_protocol::InterfaceMac> =
        serde_json::from_value(echo["results"][0]["response"]["health"]["macs"].clone()).unwrap();
    let expected = lightsout_controller::cmd::inventory::usable_macs(&reported);

    let out = room
        .lab
        .controller_cmd()
        .arg("--inventory")
        .arg(&ini)
        .args(["inventory", "learn", "@teaching"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        std::fs::read_to_string(&ini).unwrap(),
        text,
        "lightsout never edits an Ansible inventory"
    );
    if expected.is_empty() {
        assert_eq!(out.status.code(), Some(1), "no usable MAC here: {stdout}");
        return;
    }
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let macs: Vec<String> = expected.iter().map(ToString::to_string).collect();
    let line = format!("lab-01 lightsout_mac={}", macs.join(","));
    assert!(
        stdout.contains("does not edit Ansible inventories") && stdout.contains(&line),
        "{stdout}"
    );
}

#[test]
fn discover_with_an_ansible_inventory_prints_entries_that_paste_back() {
    let lab = Lab::new();
    let port = {
        let t = TcpListener::bind("127.0.0.1:0").unwrap();
        t.local_addr().unwrap().port()
    };
    let listen = format!("127.0.0.1:{port}");
    let _agent = AgentProcess::start(&lab, &["--dry-run", "--discoverable", "--listen", &listen]);
    let inventory = lab.dir.path().join("lab.yml");
    let original = "all:\n  children:\n    lab:\n";
    std::fs::write(&inventory, original).unwrap();
    let out = lab
        .controller_cmd()
        .arg("--inventory")
        .arg(&inventory)
        .args([
            "--json",
            "--timeout",
            "1s",
            "discover",
            "--broadcast",
            "127.0.0.1",
        ])
        .args(["--port", &port.to_string(), "--write-inventory"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(std::fs::read_to_string(&inventory).unwrap(), original);
    assert_eq!(doc["added"], 0, "{doc}");
    let name = doc["agents"][0]["name"].as_str().unwrap();
    let paste = doc["paste"].as_str().unwrap_or_else(|| panic!("{doc}"));
    assert!(paste.contains("ansible_host: \"127.0.0.1\""), "{paste}");
    // Pasted under a group's hosts:, the entry is the agent found.
    let indented: String = paste.lines().map(|l| format!("        {l}\n")).collect();
    std::fs::write(&inventory, format!("{original}      hosts:\n{indented}")).unwrap();
    let inv = lightsout_controller::inventory::Inventory::load(&inventory).unwrap();
    let host = inv.host(name).unwrap();
    assert_eq!(host.address.as_deref(), Some("127.0.0.1"));
    assert_eq!(host.port, Some(port));
}
