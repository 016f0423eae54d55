//! lightsout reads Ansible inventories as Ansible does: for every inventory of the corpus
//! (`tests/corpus/ansible/`, shapes from Ansible's inventory documentation and its plugins'
//! examples), `lightsout inventory list --json` has the hosts, groups, addresses and
//! lightsout variables that `ansible-inventory --list` printed for it (committed beside it by
//! `tests/corpus/ansible/regenerate`). Ansible is not needed; when the pinned ansible-core is
//! installed, a second test checks that the committed outputs are still what it prints.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use lightsout_tests::{bin, skip};
use serde_json::Value;

/// The ansible-core version the expected outputs come from (as in `regenerate`).
const ANSIBLE_CORE: &str = "2.18.6";
/// The agents' port when the inventory gives none.
const DEFAULT_PORT: u64 = 7474;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/ansible")
}

/// Each case: its name, its inventory source, Ansible's `--list` output.
fn cases() -> Vec<(String, PathBuf, Value)> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(corpus())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 10, "the corpus is missing: {dirs:?}");
    dirs.into_iter()
        .map(|dir| {
            let source = std::fs::read_to_string(dir.join("source")).unwrap();
            let expected = std::fs::read(dir.join("ansible-inventory.json")).unwrap();
            (
                dir.file_name().unwrap().to_string_lossy().into_owned(),
                dir.join(source.trim()),
                serde_json::from_slice(&expected).unwrap(),
            )
        })
        .collect()
}

/// `lightsout --inventory SOURCE --json inventory list TARGETS...`, parsed.
fn list(home: &Path, source: &Path, targets: &[&str]) -> Value {
    let out = Command::new(bin("lightsout"))
        .env("LIGHTSOUT_HOME", home)
        .env_remove("LIGHTSOUT_INVENTORY")
        .env_remove("RUST_LOG")
        .arg("--inventory")
        .arg(source)
        .args(["--json", "inventory", "list"])
        .args(targets)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        source.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// One host as both tools should see it.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    address: String,
    port: u64,
    groups: BTreeSet<String>,
    macs: Vec<String>,
    tls_name: Option<String>,
}

/// The direct members of each group of Ansible's output (`all` aside).
fn ansible_groups(doc: &Value) -> BTreeMap<String, (Vec<String>, Vec<String>)> {
    let names = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default()
    };
    doc.as_object()
        .unwrap()
        .iter()
        .filter(|(g, _)| *g != "_meta" && *g != "all")
        .map(|(g, v)| (g.clone(), (names(&v["hosts"]), names(&v["children"]))))
        .collect()
}

/// What Ansible's output says of each host, in lightsout's terms.
fn ansible_hosts(doc: &Value) -> BTreeMap<String, Seen> {
    let groups = ansible_groups(doc);
    let mut out = BTreeMap::new();
    for (group, (hosts, _)) in &groups {
        for host in hosts {
            let vars = &doc["_meta"]["hostvars"][host];
            let text = |key: &str| match &vars[key] {
                Value::Null => None,
                Value::String(s) => Some(s.clone()),
                other => Some(other.to_string()),
            };
            let macs = match &vars["lightsout_mac"] {
                Value::Null => Vec::new(),
                Value::String(s) => s.split(',').map(|m| m.trim().to_lowercase()).collect(),
                Value::Array(a) => a
                    .iter()
                    .map(|m| m.as_str().unwrap().to_lowercase())
                    .collect(),
                other => panic!("{host}: lightsout_mac {other}"),
            };
            let entry = out.entry(host.clone()).or_insert_with(|| Seen {
                address: text("ansible_host")
                    .or_else(|| text("ansible_ssh_host"))
                    .unwrap_or_else(|| host.clone()),
                port: text("lightsout_port").map_or(DEFAULT_PORT, |p| p.parse().unwrap()),
                groups: BTreeSet::new(),
                macs,
                tls_name: text("lightsout_tls_name"),
            });
            entry.groups.insert(group.clone());
        }
    }
    out
}

/// Every host `group` holds, through its children too.
fn ansible_expand(
    groups: &BTreeMap<String, (Vec<String>, Vec<String>)>,
    group: &str,
) -> BTreeSet<String> {
    // An empty group is named only as a child, with no entry of its own.
    let Some((hosts, children)) = groups.get(group) else {
        return BTreeSet::new();
    };
    let mut out: BTreeSet<String> = hosts.iter().cloned().collect();
    for child in children {
        out.extend(ansible_expand(groups, child));
    }
    out
}

fn lightsout_hosts(doc: &Value) -> BTreeMap<String, Seen> {
    doc["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            let strings = |v: &Value| -> Vec<String> {
                v.as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s.as_str().unwrap().to_owned())
                    .collect()
            };
            (
                h["name"].as_str().unwrap().to_owned(),
                Seen {
                    address: h["address"].as_str().unwrap().to_owned(),
                    port: h["port"].as_u64().unwrap(),
                    groups: strings(&h["groups"]).into_iter().collect(),
                    macs: strings(&h["macs"]),
                    tls_name: h["tls_name"].as_str().map(str::to_owned),
                },
            )
        })
        .collect()
}

#[test]
fn every_corpus_inventory_resolves_as_ansible_resolves_it() {
    let home = tempfile::tempdir().unwrap();
    for (name, source, expected) in cases() {
        let doc = list(home.path(), &source, &[]);
        let want = ansible_hosts(&expected);
        let got = lightsout_hosts(&doc);
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "{name}: the same hosts"
        );
        for (host, seen) in &want {
            assert_eq!(&got[host], seen, "{name}: host {host}");
        }
        // Each group, children included, holds the same hosts.
        let groups = ansible_groups(&expected);
        let mut names: BTreeSet<&String> = groups.keys().collect();
        names.extend(groups.values().flat_map(|(_, children)| children));
        for group in names {
            let target = format!("@{group}");
            let doc = list(home.path(), &source, &[&target]);
            let got: BTreeSet<String> = lightsout_hosts(&doc).into_keys().collect();
            assert_eq!(got, ansible_expand(&groups, group), "{name}: {target}");
        }
    }
}

#[test]
fn every_corpus_inventory_says_where_addresses_come_from() {
    let home = tempfile::tempdir().unwrap();
    let source = corpus().join("vars-dirs/inventory/hosts");
    let doc = list(
        home.path(),
        &source,
        &["lab-01", "lab-02", "lab-03", "lab-04"],
    );
    let sources: Vec<&str> = doc["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["address_source"].as_str().unwrap())
        .collect();
    assert_eq!(
        sources,
        [
            "ansible_host in host_vars/lab-01.yml",
            "ansible_ssh_host in host_vars/lab-02",
            "ansible_host in host_vars/lab-03/main.yml",
            "the host's name",
        ]
    );
}

/// Only when the pinned ansible-core is installed: the committed outputs are what it prints.
#[test]
fn the_committed_outputs_are_what_the_pinned_ansible_core_prints() {
    let version = Command::new("ansible-inventory").arg("--version").output();
    let wanted = format!("core {ANSIBLE_CORE}]");
    match version {
        Ok(out) if String::from_utf8_lossy(&out.stdout).contains(&wanted) => {}
        _ => {
            skip(&format!(
                "ansible-core {ANSIBLE_CORE} is not installed (pip install ansible-core=={ANSIBLE_CORE}); the corpus outputs are not re-checked"
            ));
            return;
        }
    }
    let work = tempfile::tempdir().unwrap();
    for (name, source, expected) in cases() {
        let out = Command::new("ansible-inventory")
            .current_dir(work.path())
            .env("ANSIBLE_CONFIG", work.path().join("none.cfg"))
            .env("ANSIBLE_HOME", work.path())
            .env("ANSIBLE_INVENTORY_UNPARSED_FAILED", "true")
            .env("ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED", "true")
            .env("ANSIBLE_NOCOLOR", "1")
            .arg("-i")
            .arg(&source)
            .arg("--list")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let now: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            now, expected,
            "{name}: run tests/corpus/ansible/regenerate and review the difference"
        );
    }
}
