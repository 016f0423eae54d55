//! The status board's NOTE: what is pending (action, when it is due, who asked, the message),
//! a power command that failed after its reply ("last shutdown FAILED … ago: …"), and the
//! machine's own host name only when it is not the inventory's (compared without the domain,
//! case-insensitively). `--json` carries the same facts.
//!
//! Every agent is dry-run or runs a stand-in power command in the lab's temporary directory.

use lightsout_tests::{AgentProcess, Lab, poll, script};
use serde_json::Value;

/// Writes an inventory with `hosts` (name, agent) into the lab and returns its path.
fn inventory(lab: &Lab, hosts: &[(&str, &AgentProcess)]) -> String {
    let mut text = String::new();
    for (name, agent) in hosts {
        text.push_str(&format!(
            "[hosts.\"{name}\"]\naddress = \"127.0.0.1\"\nport = {}\ntls_name = \"localhost\"\n\n",
            agent.addr.port()
        ));
    }
    let path = lab.dir.path().join("inventory.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// The row of `host` on the board.
fn row<'a>(board: &'a str, host: &str) -> &'a str {
    board
        .lines()
        .find(|l| l.split_whitespace().next() == Some(host))
        .unwrap_or_else(|| panic!("no row for {host}:\n{board}"))
}

#[test]
fn the_note_says_what_is_pending_and_that_the_last_action_failed() {
    let lab = Lab::new();
    let stand_in = script(
        &lab,
        "bus-down",
        "echo 'Failed to connect to bus: No such file or directory' >&2\nexit 1",
    );
    let agent = AgentProcess::start(&lab, &["--power-command", stand_in.to_str().unwrap()]);
    let inventory = inventory(&lab, &[("lab-01", &agent)]);

    // Accepted ("ok"), then failed on the machine: only the agent knows.
    let doc = lab.lightsout_json(&["--inventory", &inventory, "shutdown", "lab-01"], 0);
    let failed_id = doc["results"][0]["request_id"].as_str().unwrap().to_owned();
    poll("the failure to be recorded", || {
        let doc = lab.lightsout_json(&["--inventory", &inventory, "echo", "lab-01"], 0);
        let last = &doc["results"][0]["response"]["health"]["last_action"];
        (last["request_id"] == failed_id.as_str()).then_some(())
    });
    let board = lab
        .lightsout(&["--inventory", &inventory, "status"])
        .success();
    let note = row(&board.stdout, "lab-01");
    assert!(note.contains("last shutdown FAILED "), "{note}");
    assert!(note.contains(" ago: "), "{note}");
    assert!(note.contains("Failed to connect to bus"), "{note}");

    // Now a delayed one is pending (the agent waits 30 s before running anything): the
    // board says what, when, who and the message, before the last failure.
    let doc = lab.lightsout_json(
        &[
            "--inventory",
            &inventory,
            "shutdown",
            "lab-01",
            "--delay",
            "90s",
            "--message",
            "The lab closes",
        ],
        0,
    );
    assert_eq!(doc["results"][0]["response"]["agent_wait_secs"], 30);
    let doc = lab.lightsout_json(&["--inventory", &inventory, "status"], 0);
    let host = &doc["results"][0];
    let by = host["response"]["health"]["pending"]["requested_by"]
        .as_str()
        .unwrap()
        .to_owned();
    let note = &host["note"];
    assert_eq!(note["pending"]["action"], "shutdown", "{note}");
    assert_eq!(note["pending"]["message"], "The lab closes", "{note}");
    assert_eq!(note["pending"]["requested_by"], by.as_str());
    let due_in = note["pending"]["due_in_secs"].as_u64().unwrap();
    assert!((1..=90).contains(&due_in), "{note}");
    assert_eq!(note["last_failure"]["action"], "shutdown", "{note}");
    assert_eq!(note["last_failure"]["request_id"], failed_id.as_str());
    assert_eq!(note["last_failure"]["exit_code"], 1);
    assert!(note["last_failure"]["ago_secs"].is_u64(), "{note}");
    assert!(
        note["last_failure"]["error"]
            .as_str()
            .unwrap()
            .contains("Failed to connect to bus"),
        "{note}"
    );

    let board = lab
        .lightsout(&["--inventory", &inventory, "status"])
        .success();
    let text = row(&board.stdout, "lab-01");
    let pending = text
        .find("shutdown in ")
        .unwrap_or_else(|| panic!("pending shutdown in the note: {text}"));
    let message = text
        .find(&format!(" by {by}: The lab closes"))
        .unwrap_or_else(|| panic!("who and the message: {text}"));
    let failure = text.find("; last shutdown FAILED ").unwrap();
    assert!(
        pending < message && message < failure,
        "pending first: {text}"
    );
    lab.lightsout(&["--inventory", &inventory, "cancel", "lab-01"]);
}

#[test]
fn host_names_are_compared_without_domain_and_case() {
    let lab = Lab::new();
    let a = AgentProcess::start(&lab, &["--dry-run"]);
    let b = AgentProcess::start(&lab, &["--dry-run"]);
    let doc = lab.lightsout_json(&["echo", &a.target()], 0);
    let hostname = doc["results"][0]["response"]["health"]["hostname"]
        .as_str()
        .unwrap()
        .to_owned();
    let short = hostname.split('.').next().unwrap();
    // The inventory's name: the machine's, upper case, with a domain it may not have.
    let fqdn = format!("{}.lab.example.edu", short.to_uppercase());
    let inventory = inventory(&lab, &[(&fqdn, &a), ("someone-else", &b)]);

    let board = lab
        .lightsout(&["--inventory", &inventory, "status"])
        .success();
    assert!(
        !row(&board.stdout, &fqdn).contains("hostname"),
        "the same machine: {}",
        board.stdout
    );
    assert!(
        row(&board.stdout, "someone-else").contains(&format!("hostname {hostname}")),
        "{}",
        board.stdout
    );
    let doc = lab.lightsout_json(&["--inventory", &inventory, "status"], 0);
    for host in doc["results"].as_array().unwrap() {
        let expected = if host["host"] == fqdn.as_str() {
            Value::Null
        } else {
            Value::from(hostname.as_str())
        };
        assert_eq!(host["note"]["hostname"], expected, "{host}");
    }
}
