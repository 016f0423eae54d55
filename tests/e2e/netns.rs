//! A network link that disappears mid-request.
//!
//! Two network namespaces created by the test, joined by a veth pair: the agent listens on
//! 10.251.X.2 in one, the controller runs in the other (10.251.X.1). Nothing touches the
//! host's own network namespace, and all traffic stays between the two. Once the controller
//! has reached the agent, the agent's end of the link is taken down while a request is in
//! flight: the controller must report `timeout` for that host within its deadline, and not
//! hang. Everything is removed again by a drop guard, also when the test fails.
//!
//! Needs root and `ip` (iproute2, installed by `.ci/run`); otherwise the test says
//! `SKIP: reason` and passes without running (under `CI=true` a missing `ip` fails).

use std::net::{IpAddr, Ipv4Addr};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use lightsout_pki::{CertKind, IssueOptions};
use lightsout_tests::{AgentProcess, Lab, bin};

use lightsout_tests::{PATIENCE, log_lines, slow_stand_in, wait_for_line};

/// Two namespaces and the veth pair between them; all deleted on drop.
struct Netns {
    agent_ns: String,
    controller_ns: String,
    agent_if: String,
    agent_ip: Ipv4Addr,
}

fn ip(args: &[&str]) -> Output {
    Command::new("ip").args(args).output().expect("run ip")
}

fn ip_ok(args: &[&str]) {
    let out = ip(args);
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Netns {
    /// Creates `lightsout-PID-agent` and `lightsout-PID-ctl`, the veth pair `lsaPID` /
    /// `lscPID` between them, and addresses in 10.251.(PID mod 256).0/24.
    fn create() -> Self {
        let pid = std::process::id();
        let net = u8::try_from(pid % 256).unwrap();
        let this = Self {
            agent_ns: format!("lightsout-{pid}-agent"),
            controller_ns: format!("lightsout-{pid}-ctl"),
            agent_if: format!("lsa{pid}"),
            agent_ip: Ipv4Addr::new(10, 251, net, 2),
        };
        // The guard exists before the first command, so a failure half-way cleans up too.
        let controller_if = format!("lsc{pid}");
        let controller_addr = format!("10.251.{net}.1/24");
        let agent_addr = format!("{}/24", this.agent_ip);
        ip_ok(&["netns", "add", &this.agent_ns]);
        ip_ok(&["netns", "add", &this.controller_ns]);
        // Both ends are born inside their namespaces: the host's never sees them.
        ip_ok(&[
            "link",
            "add",
            &this.agent_if,
            "netns",
            &this.agent_ns,
            "type",
            "veth",
            "peer",
            "name",
            &controller_if,
            "netns",
            &this.controller_ns,
        ]);
        for (ns, dev, addr) in [
            (&this.agent_ns, &this.agent_if, &agent_addr),
            (&this.controller_ns, &controller_if, &controller_addr),
        ] {
            ip_ok(&["-n", ns, "addr", "add", addr, "dev", dev]);
            ip_ok(&["-n", ns, "link", "set", dev, "up"]);
            ip_ok(&["-n", ns, "link", "set", "lo", "up"]);
        }
        this
    }

    fn agent_link(&self, up: bool) {
        let state = if up { "up" } else { "down" };
        ip_ok(&["-n", &self.agent_ns, "link", "set", &self.agent_if, state]);
    }

    /// `lightsout --json ARGS...` run inside the controller's namespace.
    fn controller(&self, lab: &Lab, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.controller_ns])
            .arg(bin("lightsout"))
            .arg("--json")
            .args(args)
            .env("LIGHTSOUT_HOME", lab.home.dir())
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth pair with it; processes still inside are
        // killed by their own guards (declared after this one, so dropped before it).
        for ns in [&self.agent_ns, &self.controller_ns] {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// Waits for `child` at most `limit`; kills it and panics if it is still running (a hang).
fn finish(mut child: Child, limit: Duration, what: &str) -> (Output, Duration) {
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return (child.wait_with_output().unwrap(), started.elapsed());
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {limit:?}: the controller hangs");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The one host result of a controller run.
fn host_result(out: &Output) -> serde_json::Value {
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    doc["results"][0].clone()
}

fn assert_timeout(out: &Output, elapsed: Duration, deadline: Duration) {
    let host = host_result(out);
    assert_eq!(out.status.code(), Some(1), "{host}");
    assert_eq!(host["ok"], false, "{host}");
    assert_eq!(host["error"]["kind"], "timeout", "{host}");
    assert_eq!(host["error"]["source"], "controller", "{host}");
    // Reported at its deadline, not later (generous slack: process start, noisy machine).
    let reported_ms = host["elapsed_ms"].as_f64().unwrap();
    assert!(
        reported_ms < (deadline + Duration::from_secs(2)).as_secs_f64() * 1000.0,
        "{host}"
    );
    assert!(elapsed < deadline + PATIENCE, "{elapsed:?}");
}

#[test]
fn a_link_that_disappears_mid_request_is_a_timeout_not_a_hang() {
    if !lightsout_tests::can_make_netns() {
        return;
    }
    let lab = Lab::new();
    let net = Netns::create();
    let agent_ip = net.agent_ip.to_string();
    let mut opts = IssueOptions::new(CertKind::Agent, "lab-netns");
    opts.ips = vec![IpAddr::V4(net.agent_ip)];
    let files = lab.issue(&opts);
    // `cancel` runs its command before answering: with a 2 s stand-in the request stays in
    // flight long enough to pull the link from under it.
    let (stand_in, log) = slow_stand_in(&lab, 2.0);
    let target = format!("{agent_ip}:7474");
    let mut in_ns = Command::new("ip");
    in_ns
        .args(["netns", "exec", &net.agent_ns])
        .arg(bin("lightsout-agent"));
    let _agent = AgentProcess::start_cmd(
        &lab,
        in_ns,
        &[
            "--listen",
            &target,
            "--power-command",
            stand_in.to_str().unwrap(),
            "--ca",
            files.ca.to_str().unwrap(),
            "--cert",
            files.cert.to_str().unwrap(),
            "--key",
            files.key.to_str().unwrap(),
        ],
    );

    // The link works: the controller reaches the agent by its address.
    let child = net
        .controller(&lab, &["--timeout", "5s", "echo", &target])
        .spawn()
        .unwrap();
    let (out, _) = finish(child, PATIENCE, "echo over the link");
    let host = host_result(&out);
    assert_eq!(host["ok"], true, "{host}");

    // Mid-request, the agent's end of the link goes down.
    let deadline = Duration::from_secs(3);
    let child = net
        .controller(&lab, &["--timeout", "3s", "cancel", &target])
        .spawn()
        .unwrap();
    wait_for_line(&log, "start -c");
    net.agent_link(false);
    let (out, elapsed) = finish(child, deadline + PATIENCE, "cancel with the link down");
    assert_timeout(&out, elapsed, deadline);
    // The agent carried the request out all the same; only the reply was lost.
    wait_for_line(&log, "done -c");

    // A new request while the link is down: the same, from the first packet.
    let deadline = Duration::from_millis(1500);
    let child = net
        .controller(&lab, &["--timeout", "1500ms", "echo", &target])
        .spawn()
        .unwrap();
    let (out, elapsed) = finish(child, deadline + PATIENCE, "echo with the link down");
    assert_timeout(&out, elapsed, deadline);

    // The link comes back: so does the agent, which never noticed anything but a lost peer.
    net.agent_link(true);
    let started = Instant::now();
    loop {
        let child = net
            .controller(&lab, &["--timeout", "2s", "echo", &target])
            .spawn()
            .unwrap();
        let (out, _) = finish(child, PATIENCE, "echo after the link came back");
        if host_result(&out)["ok"] == true {
            break;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "agent unreachable after the link came back: {}",
            host_result(&out)
        );
    }
    assert_eq!(log_lines(&log), ["start -c", "done -c"]);
}
