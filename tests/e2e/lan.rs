//! A lab on a real (virtual) LAN: network namespaces created by the test — a bridge in its
//! own namespace, three "lab machines" each running a dry-run agent bound to its LAN address,
//! and a controller namespace, joined by veth pairs on 10.252.0.0/24. Nothing touches the
//! host's own network; every namespace (and with it every link) is deleted on the way out,
//! also when an assertion fails (a Drop guard). Needs root and `ip` (iproute2); otherwise the test
//! says `SKIP: reason` and passes without running (under `CI=true` a missing `ip` fails).
//!
//! Covered: fan-out and the status board over the LAN, `inventory learn` of the machines'
//! MACs, Wake-on-LAN packets (direct and `--via` an agent) captured by a UDP listener in a
//! lab namespace, discovery finding exactly the discoverable agents, and a machine whose link
//! goes down mid-run reported as timed out while the others succeed.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use lightsout_pki::{CertKind, IssueOptions};
use lightsout_tests::{AgentProcess, Lab, bin};
use serde_json::Value;

const SUBNET: &str = "10.252.0";
const BROADCAST: &str = "10.252.0.255";

/// Namespace names start with this and the test process id, so concurrent runs never clash
/// and leftovers of a killed run can be recognised.
const PREFIX: &str = "lso";

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Namespaces made by this test; all deleted on drop.
struct Lan {
    tag: String,
    namespaces: Vec<String>,
}

impl Lan {
    fn new() -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        remove_leftovers();
        Self {
            tag: format!(
                "{PREFIX}{}x{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ),
            namespaces: Vec::new(),
        }
    }

    fn bridge_ns(&self) -> String {
        format!("{}-br", self.tag)
    }

    /// The bridge, in a namespace of its own.
    fn create_bridge(&mut self) {
        let br = self.bridge_ns();
        ip(&["netns", "add", &br]);
        self.namespaces.push(br.clone());
        ip(&["-n", &br, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &br, "link", "set", "br0", "up"]);
    }

    /// A machine namespace plugged into the bridge: its `eth0` has `SUBNET.host/24` and the
    /// MAC given. Returns the namespace's name.
    fn add_machine(&mut self, role: &str, host: u8, mac: &str) -> String {
        let ns = format!("{}-{role}", self.tag);
        let br = self.bridge_ns();
        ip(&["netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        let port = format!("p{host}");
        ip(&[
            "-n", &br, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ]);
        ip(&["-n", &br, "link", "set", &port, "master", "br0", "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ip(&["-n", &ns, "link", "set", "eth0", "address", mac]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{SUBNET}.{host}/24"),
            "brd",
            BROADCAST,
            "dev",
            "eth0",
        ]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        ns
    }

    /// Takes a machine's cable out (its port on the bridge goes down).
    fn unplug(&self, host: u8) {
        ip(&[
            "-n",
            &self.bridge_ns(),
            "link",
            "set",
            &format!("p{host}"),
            "down",
        ]);
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        // Deleting a namespace deletes its links; the veth peers go with them.
        for ns in self.namespaces.iter().rev() {
            delete_namespace(ns);
        }
    }
}

/// Kills whatever still runs in `ns` (by process id, as `ip netns pids` lists them), then
/// deletes it: a namespace outlives its name while a process is inside.
fn delete_namespace(ns: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if pid.chars().all(|c| c.is_ascii_digit()) {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
    }
    let _ = Command::new("ip").args(["netns", "del", ns]).status();
}

/// Deletes namespaces (and ends the processes in them) left by test processes that no longer
/// exist: killed mid-run, their Drop guards never ran.
fn remove_leftovers() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let pid: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if !pid.is_empty()
            && rest[pid.len()..].starts_with('x')
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            delete_namespace(name);
        }
    }
}

/// `cmd` run inside namespace `ns`.
fn in_ns(ns: &str, program: &std::path::Path) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).arg(program);
    cmd
}

/// A UDP listener in a namespace, printing what it receives; killed on drop.
struct Sink {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Sink {
    fn start(ns: &str, addr: &str) -> Self {
        let mut child = in_ns(ns, std::path::Path::new(env!("CARGO_BIN_EXE_udp-sink")))
            .args([addr, "60"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let sink = Self { child, lines: rx };
        assert_eq!(
            sink.next().as_deref(),
            Some("ready"),
            "udp-sink did not start"
        );
        sink
    }

    fn next(&self) -> Option<String> {
        self.lines.recv_timeout(Duration::from_secs(10)).ok()
    }

    /// The next datagram: (source address, bytes as hex).
    fn packet(&self) -> (String, String) {
        let line = self.next().expect("a packet");
        let (from, hex) = line.split_once(' ').unwrap();
        (from.to_owned(), hex.to_owned())
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn magic_hex(mac: &str) -> String {
    let mac: lightsout_protocol::MacAddr = mac.parse().unwrap();
    mac.magic_packet()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn a_lab_on_a_lan_of_network_namespaces() {
    if !lightsout_tests::can_make_netns() {
        return;
    }
    // Declared first, dropped last: the agents stop before their namespaces go.
    let mut lan = Lan::new();
    lan.create_bridge();
    let machines: [(&str, u8, &str, bool); 3] = [
        ("lab-01", 11, "52:54:00:fc:00:01", true),
        ("lab-02", 12, "52:54:00:fc:00:02", false),
        ("lab-03", 13, "52:54:00:fc:00:03", true),
    ];
    let controller_ns = lan.add_machine("ctl", 2, "52:54:00:fc:00:99");
    let lab = Lab::new();
    let mut agents = Vec::new();
    let mut namespaces = Vec::new();
    let mut fingerprints = Vec::new();
    let mut inventory = String::from("[defaults]\nport = 7474\n\n");
    for (name, host, mac, discoverable) in machines {
        let ns = lan.add_machine(&format!("m{host}"), host, mac);
        let address = format!("{SUBNET}.{host}");
        let mut opts = IssueOptions::new(CertKind::Agent, name);
        opts.ips = vec![address.parse().unwrap()];
        let files = lab.issue(&opts);
        let cert = lightsout_pki::load::certs(&files.cert).unwrap();
        fingerprints.push(lightsout_pki::tls::fingerprint(&cert[0]));
        let listen = format!("{address}:7474");
        let (ca, cert, key) = (
            files.ca.display().to_string(),
            files.cert.display().to_string(),
            files.key.display().to_string(),
        );
        // The namespace's eth0 is one end of a veth pair, which the agent rightly does not
        // report (no hardware behind it): it reads a stand-in /sys/class/net where eth0 is a
        // physical NIC with the same MAC, beside a virtual ifb0 that must not be learnt.
        let sysfs = fake_sysfs_net(&lab.dir.path().join(format!("sysfs-{name}")), mac);
        let sysfs = sysfs.display().to_string();
        let mut args = vec![
            "--dry-run",
            "--listen",
            &listen,
            "--ca",
            &ca,
            "--cert",
            &cert,
            "--key",
            &key,
            "--fake-sysfs-net",
            &sysfs,
        ];
        if discoverable {
            args.push("--discoverable");
        }
        let agent = AgentProcess::start_cmd(&lab, in_ns(&ns, &bin("lightsout-agent")), &args);
        assert_eq!(agent.addr.to_string(), listen);
        agents.push(agent);
        namespaces.push(ns);
        inventory.push_str(&format!("[hosts.{name}]\naddress = \"{address}\"\n\n"));
    }
    inventory.push_str("[groups]\nlab = [\"lab-01\", \"lab-02\", \"lab-03\"]\n");
    let inventory_path = lab.dir.path().join("inventory.toml");
    std::fs::write(&inventory_path, inventory).unwrap();

    let controller = |args: &[&str]| -> Command {
        let mut cmd = in_ns(&controller_ns, &bin("lightsout"));
        cmd.env("LIGHTSOUT_HOME", lab.home.dir())
            .env_remove("RUST_LOG")
            .arg("--inventory")
            .arg(&inventory_path)
            .args(args)
            .stdin(Stdio::null());
        cmd
    };
    let run = |args: &[&str]| -> (i32, String) {
        let out = controller(args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let json = |args: &[&str]| -> (i32, Value) {
        let out = controller(&[&["--json"], args].concat()).output().unwrap();
        let doc = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{e}: {} {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code().unwrap_or(-1), doc)
    };

    // Fan-out and the status board over the LAN.
    let (code, doc) = json(&["status", "all"]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["summary"]["ok"], 3, "{doc}");
    let (code, text) = run(&["status", "@lab"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.ends_with("3 up, 0 down\n"), "{text}");

    // The agents report their machines' MACs; learn records them.
    let (code, text) = run(&["inventory", "learn", "all"]);
    assert_eq!(code, 0, "{text}");
    let inv = lightsout_controller::inventory::Inventory::load(&inventory_path).unwrap();
    for (name, _, mac, _) in machines {
        let macs: Vec<String> = inv
            .host(name)
            .unwrap()
            .macs
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(macs, [mac], "{name}");
    }

    // Wake-on-LAN, captured on lab-03's LAN port 9: directly from the controller, then
    // through the agent on lab-01.
    let sink = Sink::start(&namespaces[2], "0.0.0.0:9");
    let (code, text) = run(&["wake", "lab-01", "--broadcast", BROADCAST]);
    assert_eq!(code, 0, "{text}");
    let (from, hex) = sink.packet();
    assert_eq!(hex, magic_hex(machines[0].2));
    assert!(
        from.starts_with(&format!("{SUBNET}.2:")),
        "sent by the controller: {from}"
    );
    let (code, doc) = json(&[
        "wake",
        "lab-02",
        "--via",
        "lab-01",
        "--broadcast",
        BROADCAST,
    ]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["results"][0]["response"]["via"], "lab-01");
    let (from, hex) = sink.packet();
    assert_eq!(hex, magic_hex(machines[1].2));
    assert!(
        from.starts_with(&format!("{SUBNET}.11:")),
        "sent by lab-01's agent: {from}"
    );
    drop(sink);

    // Discovery finds exactly the discoverable agents, with their certificates' fingerprints.
    let (code, doc) = json(&["--timeout", "1500ms", "discover", "--broadcast", BROADCAST]);
    assert_eq!(code, 0, "{doc}");
    let found: Vec<(String, String, String)> = doc["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap().to_owned(),
                a["address"].as_str().unwrap().to_owned(),
                a["fingerprint"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            (
                "lab-01".to_string(),
                format!("{SUBNET}.11"),
                fingerprints[0].clone()
            ),
            (
                "lab-03".to_string(),
                format!("{SUBNET}.13"),
                fingerprints[2].clone()
            ),
        ],
        "{doc}"
    );

    // A machine's link goes down mid-run: one host at a time, and after the first one has
    // answered, lab-02's cable is pulled. It times out; the others are fine.
    let started = Instant::now();
    let mut child = controller(&[
        "--jsonl",
        "--timeout",
        "1s",
        "restart",
        "all",
        "--dry-run",
        "--batch",
        "1",
        "--stagger",
        "1500ms",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(
        (first["host"].as_str(), first["ok"].as_bool()),
        (Some("lab-01"), Some(true))
    );
    lan.unplug(12);
    let rest: Vec<Value> = lines
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect();
    let code = child.wait().unwrap().code();
    assert_eq!(code, Some(1), "{rest:?}");
    assert_eq!(rest.len(), 2, "{rest:?}");
    assert_eq!(rest[0]["host"], "lab-02");
    assert_eq!(rest[0]["error"]["kind"], "timeout", "{}", rest[0]);
    assert_eq!(rest[1]["host"], "lab-03");
    assert_eq!(rest[1]["ok"], true, "{}", rest[1]);
    assert!(started.elapsed() < Duration::from_secs(30));
    drop(agents);
}

/// A stand-in `/sys/class/net` under `dir`: a physical, up `eth0` with `mac`, and a virtual
/// `ifb0` (no `device` link) that must never be reported.
fn fake_sysfs_net(dir: &std::path::Path, mac: &str) -> std::path::PathBuf {
    for (name, address, physical) in [("eth0", mac, true), ("ifb0", "a6:1c:00:00:00:01", false)] {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("type"), "1\n").unwrap();
        std::fs::write(d.join("address"), format!("{address}\n")).unwrap();
        std::fs::write(d.join("operstate"), "up\n").unwrap();
        if physical {
            std::fs::create_dir_all(dir.join(".pci")).unwrap();
            std::os::unix::fs::symlink(dir.join(".pci"), d.join("device")).unwrap();
        }
    }
    dir.to_path_buf()
}
