//! The docs suite: the README's procedures are tests. README.md is read at run time; its
//! quickstart, its rollout to a lab and the revocation after it are cut into commands and run
//! in order — the rollout on an administrator's laptop and three lab machines, each a network
//! namespace with the real Debian packages extracted into a root of its own, agents started
//! from the packaged unit. Lines that cannot run on this host go through the substitution
//! table (`rules.rs`), printed with every result (`--nocapture` shows it as it runs; a
//! failure shows it always); any other line runs as written, or fails the test.
//!
//! Not part of the everyday `cargo test` (`test = false` in `tests/Cargo.toml`): it needs the
//! packages. Run it with `cargo test -p lightsout-tests --test docs` (as root, for the network
//! namespaces); `.ci/run` runs it as its own suite, with `LIGHTSOUT_DEB_DIR` pointing at its
//! one release build.
//!
//! Safety: every agent started here runs with `--dry-run` (`rules.rs`, enforced by
//! `AgentProcess`); `systemctl`, `dpkg`, `shutdown` and their kind are shadowed inside the
//! machines by stand-ins that fail; traffic stays inside the namespaces and on loopback.
//!
//! # Layout
//! - [`plan`]: which procedures run where; the checks that none is missing, empty or unrun.
//! - [`commands`]: a block cut into the commands a person pastes.
//! - [`rules`]: the substitution table.
//! - [`run`]: one procedure on one place, command by command; carrying files; the report.
//! - [`lab`]: the machines (namespaces, overlays on `/etc` and `/var`) and their teardown.
//! - [`unit`]: the packaged systemd unit, read as systemd would.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_debug_implementations
)]

mod commands;
mod lab;
mod plan;
mod rules;
mod run;
mod unit;

use std::net::Ipv4Addr;
use std::path::Path;

use lightsout_tests::{ShBlock, can_make_netns, debs, have, readme_text, sh_blocks, skip_missing};

use crate::lab::Lab;
use crate::plan::On;
use crate::run::{Context, Place, Report};

/// The README's blocks, after the checks of [`plan::problems`] (which fail the test).
fn checked_blocks() -> Vec<ShBlock> {
    let blocks = sh_blocks(&readme_text());
    let keys =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e/keys.rs")).unwrap();
    let problems = plan::problems(&blocks, &keys);
    assert!(
        problems.is_empty(),
        "README procedures:\n{}",
        problems.join("\n")
    );
    blocks
}

fn body<'a>(blocks: &'a [ShBlock], name: &str) -> &'a str {
    &blocks
        .iter()
        .find(|b| b.procedure.as_deref() == Some(name))
        .unwrap()
        .body
}

/// Panics with the whole report so far and `error`.
fn fail(report: &Report, error: &str) -> ! {
    panic!(
        "{}\n{}\ndocs: FAILED: {error}",
        rules::table(),
        report.text()
    );
}

#[test]
fn every_procedure_of_the_readme_is_marked_and_run_by_a_test() {
    checked_blocks();
}

#[test]
fn the_quickstart_runs_as_written() {
    let blocks = checked_blocks();
    let home = tempfile::tempdir().unwrap();
    let mut report = Report::default();
    report.line(&rules::table());
    let repo = debs::repo();
    let mut place = Place::Checkout {
        dir: repo,
        env: vec![(
            "LIGHTSOUT_HOME".into(),
            home.path().join("quickstart-home").display().to_string(),
        )],
    };
    let ctx = Context { debs: None };
    for step in plan::QUICKSTART {
        assert_eq!(step.on, On::Checkout);
        let out = run::procedure(
            step.procedure,
            body(&blocks, step.procedure),
            &mut place,
            ctx,
            &mut report,
        )
        .unwrap_or_else(|e| fail(&report, &e));
        // The main job: the controller reached a dry-run agent, which answered every request.
        for expected in ["1 ok, 0 failed", "dry-run"] {
            if !out.contains(expected) {
                fail(
                    &report,
                    &format!("the quickstart printed no {expected:?}:\n{out}"),
                );
            }
        }
    }
}

/// The lab's /24 from the inventory's addresses: the laptop takes `.1` of it.
fn laptop_address(hosts: &[(String, Ipv4Addr)]) -> Result<Ipv4Addr, String> {
    let first = hosts
        .first()
        .ok_or("the README's inventory has no host")?
        .1
        .octets();
    let laptop = Ipv4Addr::new(first[0], first[1], first[2], 1);
    for (name, addr) in hosts {
        let o = addr.octets();
        if o[..3] != first[..3] || *addr == laptop {
            return Err(format!(
                "{name} ({addr}) is not on the lab's /24 beside the laptop ({laptop}): the \
                 docs test puts the lab on one /24"
            ));
        }
    }
    Ok(laptop)
}

#[test]
fn the_rollout_and_the_revocation_run_as_written_on_three_machines() {
    if !can_make_netns() {
        return;
    }
    if !have("nsenter", "--version") {
        skip_missing("nsenter (util-linux)", ".ci/run installs util-linux");
        return;
    }
    let blocks = checked_blocks();
    let Some(debs) = debs::debs() else {
        return;
    };
    let host_untouched: Vec<_> = ["/etc/lightsout", "/var/lib/lightsout"]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    let host_root_before = root_entries();
    let ctx = Context { debs: Some(debs) };
    let mut report = Report::default();
    report.line(&rules::table());

    // The inventory the laptop's block writes says where the lab machines are; the laptop
    // joins their /24, known before the block runs from its first `address = "..."`, and
    // checked against the inventory once it exists.
    let guess = body(&blocks, "rollout-laptop")
        .lines()
        .find_map(|l| l.trim().strip_prefix("address = \""))
        .and_then(|l| l.strip_suffix('"'))
        .and_then(|a| a.parse::<Ipv4Addr>().ok())
        .unwrap_or_else(|| {
            fail(
                &report,
                "the rollout-laptop block writes no `address = \"IPv4\"`",
            )
        });
    let laptop =
        laptop_address(&[("first host".into(), guess)]).unwrap_or_else(|e| fail(&report, &e));
    let mut lab = Lab::with_laptop(laptop).unwrap_or_else(|e| fail(&report, &e));
    let lab = &mut lab;

    for step in plan::ROLLOUT {
        let text = body(&blocks, step.procedure);
        match step.on {
            On::Checkout => unreachable!("the rollout runs on the lab"),
            On::Laptop => {
                let mut place = Place::Machine(&mut lab.machines[0]);
                run::procedure(step.procedure, text, &mut place, ctx, &mut report)
                    .unwrap_or_else(|e| fail(&report, &e));
            }
            On::EachLabMachine => {
                if lab.machines.len() == 1 {
                    add_lab_machines(lab, &mut report);
                }
                for i in 1..lab.machines.len() {
                    let name = lab.machines[i].name.clone();
                    let text = text.replace("lab-01", &name);
                    let carried = run::carry(&lab.laptop().work(), &lab.machines[i].work(), &text)
                        .unwrap_or_else(|e| fail(&report, &e));
                    report.line(&format!(
                        "docs: carried from the laptop to {name}: {}",
                        carried.join(", ")
                    ));
                    let mut place = Place::Machine(&mut lab.machines[i]);
                    run::procedure(step.procedure, &text, &mut place, ctx, &mut report)
                        .unwrap_or_else(|e| fail(&report, &e));
                }
            }
        }
    }

    // Beyond what the README shows: every agent took the CRL up, with lab-02's certificate
    // in it, and runs in dry-run as started.
    for machine in &lab.machines[1..] {
        let agent = machine
            .agent
            .as_ref()
            .unwrap_or_else(|| fail(&report, &format!("{}: no agent was started", machine.name)));
        let logs = agent.logs();
        let reload = logs
            .lines()
            .rfind(|l| l.contains("SIGHUP: reloaded"))
            .unwrap_or("");
        if !(reload.contains("crl.pem") && reload.contains("revoked=1")) {
            fail(
                &report,
                &format!(
                    "{}: the agent did not take up the CRL:\n{logs}",
                    machine.name
                ),
            );
        }
        assert!(
            machine.etc().join("lightsout/agent-bundle.pem").exists(),
            "{}: the bundle went elsewhere",
            machine.name
        );
    }
    lab.shut_down();
    for path in host_untouched {
        assert!(
            !Path::new(path).exists(),
            "{path} appeared on the host: the machines' overlays leaked"
        );
    }
    let new: Vec<_> = root_entries()
        .into_iter()
        .filter(|e| !host_root_before.contains(e))
        .collect();
    assert!(
        new.is_empty(),
        "the procedures wrote to the host's /: {new:?}"
    );
    report.line("docs: the rollout and the revocation ran as written");
}

/// The names in the host's `/`: a command that ran in the wrong directory leaves its files
/// there.
fn root_entries() -> Vec<String> {
    std::fs::read_dir("/")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// The lab machines of the inventory the laptop's block wrote, each at its address.
fn add_lab_machines(lab: &mut Lab, report: &mut Report) {
    let hosts = run::inventory(lab.laptop()).unwrap_or_else(|e| fail(report, &e));
    let hosts: Vec<(String, Ipv4Addr)> = hosts
        .into_iter()
        .map(|(name, addr)| {
            let ip = addr.parse().unwrap_or_else(|_| {
                fail(
                    report,
                    &format!("{name}: address {addr} is not an IPv4 address"),
                )
            });
            (name, ip)
        })
        .collect();
    let laptop = laptop_address(&hosts).unwrap_or_else(|e| fail(report, &e));
    if laptop != lab.laptop().address {
        fail(
            report,
            "the inventory's hosts are not on the /24 of its first address",
        );
    }
    for (name, addr) in &hosts {
        lab.add_machine(name, *addr)
            .unwrap_or_else(|e| fail(report, &e));
        report.line(&format!("docs: lab machine {name} at {addr}"));
    }
}

#[test]
fn a_line_without_a_rule_that_cannot_run_here_fails_the_test() {
    if !can_make_netns() {
        return;
    }
    if !have("nsenter", "--version") {
        skip_missing("nsenter (util-linux)", ".ci/run installs util-linux");
        return;
    }
    let mut lab = Lab::with_laptop(Ipv4Addr::new(10, 0, 0, 1)).unwrap();
    let mut report = Report::default();
    let ctx = Context { debs: None };
    let mut place = Place::Machine(&mut lab.machines[0]);
    // Lines as written that work: they run in the machine's directory, and files in /etc
    // stay on the machine.
    let out = run::procedure(
        "fine",
        "pwd\necho x > here\nmkdir -p /etc/lightsout\necho x > /etc/lightsout/probe\ncat /etc/lightsout/probe\n",
        &mut place,
        ctx,
        &mut report,
    )
    .unwrap();
    let work = lab.machines[0].work();
    assert_eq!(out, format!("{}\nx\n", work.display()));
    assert!(work.join("here").exists());
    assert!(!Path::new("/etc/lightsout/probe").exists());
    assert!(lab.machines[0].etc().join("lightsout/probe").exists());
    let mut place = Place::Machine(&mut lab.machines[0]);
    // No rule, and the program must not run here: the stand-in fails the line, naming it.
    for (line, expected) in [
        (
            "sudo systemctl restart lightsout-agent\n",
            "`systemctl restart lightsout-agent` must not run",
        ),
        ("sudo reboot\n", "`reboot ` must not run"),
        (
            "for i in 1; do shutdown -h now; done\n",
            "`shutdown -h now` must not run",
        ),
        ("no-such-program --flag\n", "not found"),
        ("true\nfalse\ntrue\n", "`false` failed"),
    ] {
        let err = run::procedure("bad", line, &mut place, ctx, &mut report).unwrap_err();
        assert!(err.contains(expected), "{line}: {err}");
        assert!(err.contains("no rule in the substitution table"), "{err}");
    }
    // A rule that needs what is not there fails as clearly.
    let err = run::procedure(
        "reload",
        "sudo systemctl reload lightsout-agent\n",
        &mut place,
        ctx,
        &mut report,
    )
    .unwrap_err();
    assert!(err.contains("no lightsout-agent.service"), "{err}");
    let mut checkout = Place::Checkout {
        dir: std::env::temp_dir(),
        env: Vec::new(),
    };
    let err =
        run::procedure("x", "sudo dpkg -i x.deb\n", &mut checkout, ctx, &mut report).unwrap_err();
    assert!(err.contains("needs a lab machine"), "{err}");
    drop(lab);
}
