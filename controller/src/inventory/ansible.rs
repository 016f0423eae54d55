//! Ansible's INI inventory, so a lab that already has one uses it unchanged.
//!
//! Understood: hosts before any section (group `ungrouped`), `[group]` sections of host
//! lines, `[group:children]` sections of group names, `[group:vars]` sections, host ranges
//! (`lab-[01:20]`, `node-[a:f]`, with an optional step `[01:20:2]`), comments (`#`, `;`), and
//! on host lines `key=value` variables, quoted or not. Variables used:
//!
//! - `ansible_host` (or the older `ansible_ssh_host`; `ansible_host` wins when both are set):
//!   the address to dial;
//! - `lightsout_port`, `lightsout_mac` (comma-separated for several cards),
//!   `lightsout_tls_name`: lightsout's own settings, on a host line or in `[group:vars]`
//!   (`[all:vars]` sets the default port).
//!
//! `ansible_port` and a `host:port` on a host line are Ansible's SSH port, not the agent's:
//! they are read and ignored, never dialled. Everything else Ansible knows is ignored.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;

use lightsout_protocol::{DEFAULT_PORT, MacAddr};

use super::{Format, HostEntry, Inventory, InventoryError, Member};

/// Most hosts one range pattern may produce.
const MAX_RANGE_HOSTS: usize = 10_000;

/// What is wrong with one line, before the file and line number are added.
#[derive(Debug, thiserror::Error)]
enum LineError {
    #[error("{0:?} is not a port (1-65535)")]
    BadPort(String),
    #[error("{0:?}: unterminated quote")]
    UnterminatedQuote(String),
    #[error("{0:?}: nothing on the line")]
    Empty(String),
    #[error("{0:?}: unclosed '['")]
    UnclosedRange(String),
    #[error("{0:?}: a range is [START:END] or [START:END:STEP]")]
    BadRange(String),
    #[error("{0:?}: more than {MAX_RANGE_HOSTS} hosts")]
    TooManyHosts(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Hosts,
    Children,
    Vars,
}

/// Parses an Ansible INI inventory.
///
/// # Errors
/// [`InventoryError::Invalid`] naming the line.
pub(super) fn parse(text: &str, path: &Path) -> Result<Inventory, InventoryError> {
    let mut hosts: BTreeMap<String, HostEntry> = BTreeMap::new();
    let mut host_vars: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut groups: BTreeMap<String, Vec<Member>> = BTreeMap::new();
    let mut group_vars: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut group = "ungrouped".to_owned();
    let mut section = Section::Hosts;

    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let invalid = |message: String| InventoryError::Invalid {
            path: path.to_path_buf(),
            message: format!("line {line_no}: {message}"),
        };
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(header) = line.strip_prefix('[') {
            let header = header
                .strip_suffix(']')
                .ok_or_else(|| invalid(format!("{line:?}: a section header ends with ']'")))?;
            let (name, kind) = match header.split_once(':') {
                None => (header, Section::Hosts),
                Some((n, "children")) => (n, Section::Children),
                Some((n, "vars")) => (n, Section::Vars),
                Some((_, other)) => {
                    return Err(invalid(format!(
                        "unknown section kind {other:?} (expected :children or :vars)"
                    )));
                }
            };
            super::check_name("group", name)
                .or_else(|e| if name == "all" { Ok(()) } else { Err(e) })
                .map_err(|e| invalid(e.to_string()))?;
            group = name.to_owned();
            section = kind;
            if name != "all" && kind != Section::Vars {
                groups.entry(group.clone()).or_default();
            }
            continue;
        }
        let tokens = tokenize(line).map_err(|e| invalid(e.to_string()))?;
        match section {
            Section::Vars => {
                let (key, value) = line
                    .split_once('=')
                    .ok_or_else(|| invalid(format!("{line:?}: expected key=value")))?;
                group_vars
                    .entry(group.clone())
                    .or_default()
                    .insert(key.trim().to_owned(), unquote(value.trim()));
            }
            Section::Children => {
                let child = tokens[0].clone();
                super::check_name("group", &child).map_err(|e| invalid(e.to_string()))?;
                groups.entry(child.clone()).or_default();
                if group != "all" {
                    push_unique(
                        groups.entry(group.clone()).or_default(),
                        Member::Group(child),
                    );
                }
            }
            Section::Hosts => {
                let pattern = &tokens[0];
                // host:port is Ansible's SSH port: not ours.
                let pattern = match pattern.rsplit_once(':') {
                    Some((h, p)) if !h.contains(':') && p.parse::<u16>().is_ok() => h,
                    _ => pattern.as_str(),
                };
                let mut vars = BTreeMap::new();
                for token in &tokens[1..] {
                    let (k, v) = token.split_once('=').ok_or_else(|| {
                        invalid(format!("{token:?}: host variables are key=value"))
                    })?;
                    vars.insert(k.to_owned(), unquote(v));
                }
                if let Some(p) = vars.get("ansible_port") {
                    p.parse::<u16>()
                        .map_err(|_| invalid(format!("ansible_port={p:?} is not a port number")))?;
                }
                for name in expand_ranges(pattern).map_err(|e| invalid(e.to_string()))? {
                    super::check_name("host", &name).map_err(|e| invalid(e.to_string()))?;
                    hosts
                        .entry(name.clone())
                        .or_insert_with(|| HostEntry::named(name.clone()));
                    host_vars
                        .entry(name.clone())
                        .or_default()
                        .extend(vars.clone());
                    if group != "ungrouped" && group != "all" {
                        push_unique(groups.entry(group.clone()).or_default(), Member::Host(name));
                    }
                }
            }
        }
    }
    // Hosts in no group are in `ungrouped`, as in Ansible.
    let grouped: Vec<String> = groups
        .values()
        .flatten()
        .filter_map(|m| match m {
            Member::Host(h) => Some(h.clone()),
            Member::Group(_) => None,
        })
        .collect();
    let ungrouped: Vec<Member> = hosts
        .keys()
        .filter(|h| !grouped.contains(h))
        .map(|h| Member::Host(h.clone()))
        .collect();
    if !ungrouped.is_empty() {
        groups.insert("ungrouped".into(), ungrouped);
    }

    let all_vars = group_vars.get("all").cloned().unwrap_or_default();
    let default_port = match all_vars.get("lightsout_port") {
        Some(p) => parse_port(p).map_err(|e| InventoryError::Invalid {
            path: path.to_path_buf(),
            message: format!("[all:vars] lightsout_port: {e}"),
        })?,
        None => DEFAULT_PORT,
    };
    for (name, entry) in &mut hosts {
        let own = host_vars.get(name).cloned().unwrap_or_default();
        let lookup = |key: &str| -> Option<String> {
            own.get(key)
                .cloned()
                .or_else(|| inherited(name, key, &groups, &group_vars))
        };
        let invalid = |message: String| InventoryError::Invalid {
            path: path.to_path_buf(),
            message: format!("host {name:?}: {message}"),
        };
        // `ansible_ssh_host` is the older name Ansible still honours; `ansible_host` wins.
        entry.address = own
            .get("ansible_host")
            .or_else(|| own.get("ansible_ssh_host"))
            .cloned();
        if let Some(p) = lookup("lightsout_port") {
            entry.port = Some(parse_port(&p).map_err(|e| invalid(format!("lightsout_port: {e}")))?);
        }
        if let Some(macs) = lookup("lightsout_mac") {
            entry.macs = macs
                .split(',')
                .map(|m| MacAddr::parse(m.trim()))
                .collect::<Result<_, _>>()
                .map_err(|e| invalid(format!("lightsout_mac: {e}")))?;
        }
        entry.tls_name = lookup("lightsout_tls_name");
    }
    Ok(Inventory::from_parts(
        path,
        Format::Ansible,
        default_port,
        hosts,
        groups,
    ))
}

fn push_unique(members: &mut Vec<Member>, m: Member) {
    if !members.contains(&m) {
        members.push(m);
    }
}

fn parse_port(p: &str) -> Result<u16, LineError> {
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(LineError::BadPort(p.to_owned())),
        Ok(port) => Ok(port),
    }
}

/// A variable from the nearest group of `host` that sets it: its own groups first, then
/// their parents, breadth first (not `all`, which only sets the default port).
fn inherited(
    host: &str,
    key: &str,
    groups: &BTreeMap<String, Vec<Member>>,
    vars: &BTreeMap<String, BTreeMap<String, String>>,
) -> Option<String> {
    let parents_of = |m: &Member| -> Vec<String> {
        groups
            .iter()
            .filter(|(_, members)| members.contains(m))
            .map(|(g, _)| g.clone())
            .collect()
    };
    let mut queue: VecDeque<String> = parents_of(&Member::Host(host.to_owned())).into();
    let mut seen: Vec<String> = Vec::new();
    while let Some(g) = queue.pop_front() {
        if seen.contains(&g) {
            continue;
        }
        if let Some(v) = vars.get(&g).and_then(|v| v.get(key)) {
            return Some(v.clone());
        }
        queue.extend(parents_of(&Member::Group(g.clone())));
        seen.push(g);
    }
    None
}

/// Splits a line into whitespace-separated tokens; quotes group, a `#` or `;` token starts a
/// comment.
fn tokenize(line: &str) -> Result<Vec<String>, LineError> {
    let mut tokens = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    let mut in_token = false;
    for c in line.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => current.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                in_token = true;
            }
            None if c.is_whitespace() => {
                if in_token {
                    tokens.push(std::mem::take(&mut current));
                    in_token = false;
                }
            }
            None if (c == '#' || c == ';') && !in_token => break,
            None => {
                current.push(c);
                in_token = true;
            }
        }
    }
    if quote.is_some() {
        return Err(LineError::UnterminatedQuote(line.to_owned()));
    }
    if in_token {
        tokens.push(current);
    }
    if tokens.is_empty() {
        return Err(LineError::Empty(line.to_owned()));
    }
    Ok(tokens)
}

fn unquote(v: &str) -> String {
    let v = v.trim();
    for q in ['"', '\''] {
        if let Some(inner) = v.strip_prefix(q).and_then(|s| s.strip_suffix(q)) {
            return inner.to_owned();
        }
    }
    v.to_owned()
}

/// Expands Ansible host ranges: `lab-[01:03]` → lab-01, lab-02, lab-03.
fn expand_ranges(pattern: &str) -> Result<Vec<String>, LineError> {
    let Some(open) = pattern.find('[') else {
        return Ok(vec![pattern.to_owned()]);
    };
    let close = pattern[open..]
        .find(']')
        .map(|i| open + i)
        .ok_or_else(|| LineError::UnclosedRange(pattern.to_owned()))?;
    let (prefix, spec, rest) = (
        &pattern[..open],
        &pattern[open + 1..close],
        &pattern[close + 1..],
    );
    let parts: Vec<&str> = spec.split(':').collect();
    let bad = || LineError::BadRange(pattern.to_owned());
    let (start, end) = match parts.as_slice() {
        [s, e] | [s, e, _] => (*s, *e),
        _ => return Err(bad()),
    };
    let step: usize = match parts.get(2) {
        Some(s) => s.parse().ok().filter(|s| *s > 0).ok_or_else(bad)?,
        None => 1,
    };
    let items: Vec<String> = if let (Ok(a), Ok(b)) = (start.parse::<u64>(), end.parse::<u64>()) {
        if a > b {
            return Err(bad());
        }
        if (b - a) as usize / step >= MAX_RANGE_HOSTS {
            return Err(LineError::TooManyHosts(pattern.to_owned()));
        }
        let width = if start.len() > 1 && start.starts_with('0') {
            start.len()
        } else {
            0
        };
        (a..=b)
            .step_by(step)
            .map(|n| format!("{n:0width$}"))
            .collect()
    } else if let ([a], [b]) = (start.as_bytes(), end.as_bytes()) {
        if !a.is_ascii_alphabetic() || !b.is_ascii_alphabetic() || a > b {
            return Err(bad());
        }
        (*a..=*b)
            .step_by(step)
            .map(|c| char::from(c).to_string())
            .collect()
    } else {
        return Err(bad());
    };
    let tails = expand_ranges(rest)?;
    if items.len() * tails.len() > MAX_RANGE_HOSTS {
        return Err(LineError::TooManyHosts(pattern.to_owned()));
    }
    Ok(items
        .iter()
        .flat_map(|i| tails.iter().map(move |t| format!("{prefix}{i}{t}")))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const INI: &str = r#"
# The teaching lab, as the Ansible playbooks see it.
gateway.example.edu ansible_host=10.0.0.1

[room_a]
lab-[01:03] lightsout_mac=52:54:00:00:00:aa
lab-04 ansible_host=10.0.1.4 ansible_port=2222 lightsout_mac="52:54:00:00:00:04"

[room_b]
lab-b[a:c]   ; letters
printer.example.edu:2222 ansible_host='10.0.2.9'   # SSH on 2222

[rooms:children]
room_a
room_b

[room_b:vars]
lightsout_port=7600

[all:vars]
lightsout_port=7500
ansible_user=admin
"#;

    fn inv() -> Inventory {
        Inventory::from_ansible(INI, Path::new("hosts.ini")).unwrap()
    }

    fn resolve(inv: &Inventory, exprs: &[&str]) -> Vec<String> {
        let exprs: Vec<String> = exprs.iter().map(|s| (*s).to_owned()).collect();
        inv.resolve(&exprs)
            .unwrap()
            .iter()
            .map(|h| format!("{}={}", h.label(), h.target))
            .collect()
    }

    #[test]
    fn hosts_groups_children_ranges_and_vars() {
        let inv = inv();
        assert_eq!(
            resolve(&inv, &["@room_a"]),
            [
                "lab-01=lab-01:7500",
                "lab-02=lab-02:7500",
                "lab-03=lab-03:7500",
                "lab-04=10.0.1.4:7500"
            ],
            "ansible_port (SSH) is never the agent's port"
        );
        assert_eq!(
            resolve(&inv, &["@room_b"]),
            [
                "lab-ba=lab-ba:7600",
                "lab-bb=lab-bb:7600",
                "lab-bc=lab-bc:7600",
                "printer.example.edu=10.0.2.9:7600"
            ],
            "group vars, quotes, host:port ignored"
        );
        assert_eq!(resolve(&inv, &["@rooms"]).len(), 8, "children");
        assert_eq!(
            resolve(&inv, &["@ungrouped"]),
            ["gateway.example.edu=10.0.0.1:7500"]
        );
        assert_eq!(resolve(&inv, &["all"]).len(), 9);
        assert_eq!(
            inv.host("lab-02").unwrap().macs[0].to_string(),
            "52:54:00:00:00:aa"
        );
        assert_eq!(
            inv.host("lab-04").unwrap().macs[0].to_string(),
            "52:54:00:00:00:04"
        );
        assert_eq!(resolve(&inv, &["10.0.1.4"]), ["lab-04=10.0.1.4:7500"]);
    }

    #[test]
    fn ansible_ssh_host_is_the_address_unless_ansible_host_is_set() {
        let text = "[room]\nold ansible_ssh_host=10.0.3.1\nboth ansible_ssh_host=10.0.3.2 ansible_host=10.0.3.3\nquoted ansible_ssh_host='10.0.3.4'\n";
        let inv = Inventory::from_ansible(text, Path::new("hosts")).unwrap();
        assert_eq!(
            resolve(&inv, &["@room"]),
            [
                "old=10.0.3.1:7474",
                "both=10.0.3.3:7474",
                "quoted=10.0.3.4:7474"
            ],
            "the older name is honoured; ansible_host wins when both are set"
        );
        assert_eq!(resolve(&inv, &["10.0.3.1"]), ["old=10.0.3.1:7474"]);
    }

    #[test]
    fn chosen_by_extension_or_content() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["hosts", "inventory", "lab.ini"] {
            let path = dir.path().join(name);
            std::fs::write(&path, INI).unwrap();
            let inv = Inventory::load(&path).unwrap();
            assert_eq!(inv.format, Some(Format::Ansible), "{name}");
        }
        let path = dir.path().join("inventory");
        std::fs::write(&path, "[hosts.a]\naddress = \"10.0.0.1\"\n").unwrap();
        assert_eq!(Inventory::load(&path).unwrap().format, Some(Format::Toml));
    }

    #[test]
    fn cycles_and_malformed_lines() {
        let cyclic = "[a:children]\nb\n[b:children]\na\n";
        let err = Inventory::from_ansible(cyclic, Path::new("h"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cycle"), "{err}");
        for (text, needle) in [
            ("[room\nlab-01\n", "line 1"),
            ("[room]\nlab-01 ansible_port=ssh\n", "line 2"),
            ("[room]\nlab-[05:01]\n", "range"),
            ("[room]\nlab-01 'unterminated\n", "quote"),
            ("[room:hostvars]\n", "section kind"),
            ("[room]\nlab-01 lightsout_mac=nope\n", "lightsout_mac"),
            ("[room]\nlab-[0:99999]\n", "more than"),
        ] {
            let err = Inventory::from_ansible(text, Path::new("h"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn ranges() {
        assert_eq!(expand_ranges("n[1:3]").unwrap(), ["n1", "n2", "n3"]);
        assert_eq!(expand_ranges("n[08:10]").unwrap(), ["n08", "n09", "n10"]);
        assert_eq!(expand_ranges("n[0:6:3]").unwrap(), ["n0", "n3", "n6"]);
        assert_eq!(
            expand_ranges("r[a:b]-[1:2].x").unwrap(),
            ["ra-1.x", "ra-2.x", "rb-1.x", "rb-2.x"]
        );
    }
}
