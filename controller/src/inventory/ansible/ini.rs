//! Ansible's INI inventory format, read by the rules of Ansible's `ini` inventory plugin.
//!
//! - Lines starting with `#` or `;` are comments; a section header may end in `# comment`.
//! - Hosts before any section are in `ungrouped`; `[group]` lists hosts, `[group:children]`
//!   group names (each defined by its own section somewhere in the file), `[group:vars]`
//!   `key=value` lines (the group must be defined in the file).
//! - A host line is split like a shell line (quotes, backslashes, `#` starts a comment; `;`
//!   does not): a host pattern, then `key=value` variables. The pattern may carry the SSH
//!   port (`host:2222`, `[2001:db8::8]:2222`), be a bare IPv6 address, or hold ranges
//!   (`web[01:20]`, `db-[a:f]`, `[1:20:2]`).
//! - Values are read like Python literals when they are one (`7500` is a number, `"x"` a
//!   string) and as text otherwise. In `[group:vars]` the whole rest of the line is the
//!   value: `key=value # note` keeps `# note`, as Ansible does.

use std::path::Path;

use serde_json::Value;

use super::{Model, Var, Vars, split_port};

/// Most hosts one range pattern may produce.
const MAX_RANGE_HOSTS: usize = 10_000;
/// Most ranges in one host pattern (each is a level of recursion).
const MAX_RANGES: usize = 8;

/// What is wrong with one line of an INI inventory.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    /// `[name:kind]` with a kind other than `children` or `vars`.
    #[error(
        "section [{group}:{kind}] has an unknown kind (use [{group}], [{group}:children] or [{group}:vars])"
    )]
    SectionKind {
        /// The group.
        group: String,
        /// The kind.
        kind: String,
    },
    /// A line in brackets that is not a section header.
    #[error(
        "{0:?} is not a section header: write [group], [group:children] or [group:vars], without spaces"
    )]
    BadSection(String),
    /// A quote is not closed, or a backslash ends the line.
    #[error("{line:?}: {problem}")]
    Split {
        /// The line.
        line: String,
        /// What the shell-like split found.
        problem: &'static str,
    },
    /// A word after the host pattern that is not `key=value`.
    #[error("expected key=value host variable assignment, got {0:?}")]
    NotAssignment(String),
    /// A `[group:vars]` line without `=`.
    #[error("expected key=value, got {0:?}")]
    NotVariable(String),
    /// A `[group:children]` line that is not one group name.
    #[error("expected a group name, got {0:?}")]
    NotGroupName(String),
    /// A host range that cannot be expanded.
    #[error("{pattern:?}: {problem}")]
    Range {
        /// The host pattern.
        pattern: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A range that expands to too many hosts.
    #[error("{0:?}: more than {MAX_RANGE_HOSTS} hosts")]
    TooManyHosts(String),
    /// A pattern with too many ranges.
    #[error("{0:?}: more than {MAX_RANGES} ranges in one host pattern")]
    TooManyRanges(String),
    /// A host or group name lightsout cannot use.
    #[error(transparent)]
    Name(#[from] crate::inventory::NameError),
    /// `[group:vars]` for a group that no section defines.
    #[error("section [{0}:vars] is for a group the file does not define: add a [{0}] section")]
    VarsOfUndefinedGroup(String),
    /// `[parent:children]` naming a group that no section defines.
    #[error(
        "section [{parent}:children] includes {child:?}, which the file does not define: add a [{child}] section"
    )]
    UndefinedChild {
        /// The parent group.
        parent: String,
        /// The child group.
        child: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Hosts,
    Children,
    Vars,
}

/// A reference that must be satisfied by a section later in the file.
#[derive(Debug)]
enum Pending {
    Vars { line: usize },
    Children { line: usize, parents: Vec<String> },
}

/// Parses an INI inventory into `model`.
///
/// # Errors
/// [`super::AnsibleError::Line`] naming the file and line.
pub(super) fn parse_into(
    model: &mut Model,
    path: &Path,
    text: &str,
) -> Result<(), super::AnsibleError> {
    let shown = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let at = |line: usize, problem: LineError| super::AnsibleError::Line {
        path: path.to_path_buf(),
        line,
        problem,
    };
    let mut group = "ungrouped".to_owned();
    let mut section = Section::Hosts;
    let mut pending: Vec<(String, Pending)> = Vec::new();

    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some((name, kind)) = section_header(line) {
            section = match kind {
                None => Section::Hosts,
                Some("children") => Section::Children,
                Some("vars") => Section::Vars,
                Some(other) => {
                    return Err(at(
                        line_no,
                        LineError::SectionKind {
                            group: name.to_owned(),
                            kind: other.to_owned(),
                        },
                    ));
                }
            };
            check_group(name).map_err(|e| at(line_no, e))?;
            group = name.to_owned();
            if !model.groups.contains_key(name) {
                // [g:vars] alone does not define g: it must be defined somewhere in the file.
                if section == Section::Vars && !pending.iter().any(|(g, _)| g == name) {
                    pending.push((name.to_owned(), Pending::Vars { line: line_no }));
                }
                model.add_group(name);
            }
            if section != Section::Vars {
                if let Some(i) = pending.iter().position(|(g, _)| g == name) {
                    if let (_, Pending::Children { parents, .. }) = pending.remove(i) {
                        for parent in parents {
                            model.add_child(&parent, name);
                        }
                    }
                }
            }
            continue;
        }
        if line.starts_with('[') && line.ends_with(']') {
            return Err(at(line_no, LineError::BadSection(line.to_owned())));
        }
        match section {
            Section::Hosts => {
                let tokens = shell_split(line).map_err(|e| at(line_no, e))?;
                let Some((pattern, assignments)) = tokens.split_first() else {
                    continue;
                };
                let from = format!("{shown} line {line_no}");
                let mut vars = Vars::new();
                for token in assignments {
                    let (k, v) = token
                        .split_once('=')
                        .ok_or_else(|| at(line_no, LineError::NotAssignment(token.clone())))?;
                    vars.insert(
                        k.to_owned(),
                        Var {
                            value: literal(v),
                            from: from.clone(),
                        },
                    );
                }
                let (pattern, port) = split_port(pattern);
                if let Some(port) = port {
                    vars.insert(
                        "ansible_port".to_owned(),
                        Var {
                            value: literal(port),
                            from: from.clone(),
                        },
                    );
                }
                let names = if pattern.parse::<std::net::Ipv6Addr>().is_ok() {
                    vec![pattern.to_owned()]
                } else {
                    expand_ranges(pattern).map_err(|e| at(line_no, e))?
                };
                for name in names {
                    crate::inventory::check_name("host", &name)
                        .map_err(|e| at(line_no, e.into()))?;
                    model.add_host(&group, &name, vars.clone());
                }
            }
            Section::Children => {
                let child = group_name_line(line)
                    .ok_or_else(|| at(line_no, LineError::NotGroupName(line.to_owned())))?;
                check_group(child).map_err(|e| at(line_no, e))?;
                if model.groups.contains_key(child) {
                    model.add_child(&group, child);
                } else {
                    match pending.iter_mut().find(|(g, _)| g == child) {
                        Some((_, Pending::Children { parents, .. })) => parents.push(group.clone()),
                        Some(_) => {}
                        None => pending.push((
                            child.to_owned(),
                            Pending::Children {
                                line: line_no,
                                parents: vec![group.clone()],
                            },
                        )),
                    }
                }
            }
            Section::Vars => {
                let (key, value) = line
                    .split_once('=')
                    .ok_or_else(|| at(line_no, LineError::NotVariable(line.to_owned())))?;
                model.set_group_var(
                    &group,
                    key.trim(),
                    Var {
                        value: literal(value.trim()),
                        from: format!("[{group}:vars] in {shown} line {line_no}"),
                    },
                );
            }
        }
    }
    match pending.into_iter().next() {
        None => Ok(()),
        Some((name, Pending::Vars { line })) => {
            Err(at(line, LineError::VarsOfUndefinedGroup(name)))
        }
        Some((child, Pending::Children { line, mut parents })) => Err(at(
            line,
            LineError::UndefinedChild {
                parent: parents.pop().unwrap_or_default(),
                child,
            },
        )),
    }
}

/// Group names: ours, plus Ansible's two implicit groups.
fn check_group(name: &str) -> Result<(), LineError> {
    if name == "all" || name == "ungrouped" {
        return Ok(());
    }
    crate::inventory::check_name("group", name).map_err(LineError::from)
}

/// `[name]` or `[name:kind]`, then optional spaces and `# comment` (Ansible's section regex:
/// the name has no `:`, `]` or whitespace, the kind is word characters).
fn section_header(line: &str) -> Option<(&str, Option<&str>)> {
    let inner = line.strip_prefix('[')?;
    let close = inner.find(']')?;
    let (head, after) = (&inner[..close], inner[close + 1..].trim_start());
    if !(after.is_empty() || after.starts_with('#')) {
        return None;
    }
    let (name, kind) = match head.split_once(':') {
        Some((n, k)) => (n, Some(k)),
        None => (head, None),
    };
    let name_ok = !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == ']');
    let kind_ok =
        kind.is_none_or(|k| !k.is_empty() && k.chars().all(|c| c.is_alphanumeric() || c == '_'));
    (name_ok && kind_ok).then_some((name, kind))
}

/// A `[group:children]` line: one name, then optional spaces and `# comment`.
fn group_name_line(line: &str) -> Option<&str> {
    let end = line
        .find(|c: char| c.is_whitespace() || c == '#')
        .unwrap_or(line.len());
    let (name, rest) = line.split_at(end);
    let rest = rest.trim_start();
    let ok = !name.is_empty()
        && !name.contains([':', ']'])
        && (rest.is_empty() || rest.starts_with('#'));
    ok.then_some(name)
}

/// Splits a host line as Python's `shlex.split(line, comments=True)` does: whitespace
/// separates words; single quotes keep everything; double quotes keep everything but `\"`
/// and `\\`; a backslash outside quotes keeps the next character; `#` ends the line.
fn shell_split(line: &str) -> Result<Vec<String>, LineError> {
    let err = |problem| LineError::Split {
        line: line.to_owned(),
        problem,
    };
    let mut tokens = Vec::new();
    let mut current = String::new();
    let mut in_token = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_token {
                    tokens.push(std::mem::take(&mut current));
                    in_token = false;
                }
            }
            '#' => break,
            '\'' => {
                in_token = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => current.push(c),
                        None => return Err(err("no closing quotation")),
                    }
                }
            }
            '"' => {
                in_token = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(e @ ('"' | '\\')) => current.push(e),
                            Some(other) => {
                                current.push('\\');
                                current.push(other);
                            }
                            None => return Err(err("no closing quotation")),
                        },
                        Some(c) => current.push(c),
                        None => return Err(err("no closing quotation")),
                    }
                }
            }
            '\\' => {
                in_token = true;
                current.push(chars.next().ok_or_else(|| err("no escaped character"))?);
            }
            c => {
                in_token = true;
                current.push(c);
            }
        }
    }
    if in_token {
        tokens.push(current);
    }
    Ok(tokens)
}

/// A value as Ansible's `ast.literal_eval` reads the few literals that matter here: a quoted
/// string (a trailing `# comment` after it is dropped, as Python does), an integer, `True`,
/// `False`, `None`; anything else is the text itself.
fn literal(v: &str) -> Value {
    let v = v.trim();
    let without_comment = |rest: &str| {
        let rest = rest.trim_start();
        rest.is_empty() || rest.starts_with('#')
    };
    for q in ['"', '\''] {
        if let Some(body) = v.strip_prefix(q) {
            if let Some(end) = body.find(q) {
                if without_comment(&body[end + 1..]) && !body[..end].contains('\\') {
                    return Value::String(body[..end].to_owned());
                }
            }
        }
    }
    let head = v.split('#').next().unwrap_or("").trim();
    if without_comment(&v[head.len()..]) {
        let digits = head.strip_prefix('-').unwrap_or(head);
        let decimal = !digits.is_empty()
            && digits.chars().all(|c| c.is_ascii_digit())
            && (digits == "0" || !digits.starts_with('0'));
        if decimal {
            if let Ok(n) = head.parse::<i64>() {
                return Value::from(n);
            }
        }
        match head {
            "True" => return Value::Bool(true),
            "False" => return Value::Bool(false),
            "None" => return Value::Null,
            _ => {}
        }
    }
    Value::String(v.to_owned())
}

/// Expands Ansible host ranges like Ansible's `expand_hostname_range`: `lab-[01:03]` → lab-01,
/// lab-02, lab-03; `[a:c]`; a step `[1:9:2]`; an empty start is 0; a zero-padded start needs
/// an end of the same width; ranges may follow each other (`r[a:b]-[1:2]`).
pub(super) fn expand_ranges(pattern: &str) -> Result<Vec<String>, LineError> {
    if pattern.matches('[').count() > MAX_RANGES {
        return Err(LineError::TooManyRanges(pattern.to_owned()));
    }
    let Some(open) = pattern.find('[') else {
        return Ok(vec![pattern.to_owned()]);
    };
    let bad = |problem| LineError::Range {
        pattern: pattern.to_owned(),
        problem,
    };
    let close = pattern[open..]
        .find(']')
        .map(|i| open + i)
        .ok_or_else(|| bad("unclosed '['"))?;
    let (prefix, spec, rest) = (
        &pattern[..open],
        &pattern[open + 1..close],
        &pattern[close + 1..],
    );
    let parts: Vec<&str> = spec.split(':').collect();
    let (start, end) = match parts.as_slice() {
        [s, e] | [s, e, _] => (if s.is_empty() { "0" } else { *s }, *e),
        _ => return Err(bad("a range is [START:END] or [START:END:STEP]")),
    };
    if end.is_empty() {
        return Err(bad("a range needs an end"));
    }
    let step: usize = match parts.get(2) {
        Some(s) => s
            .parse()
            .ok()
            .filter(|s| *s > 0)
            .ok_or_else(|| bad("the step of a range is a positive number"))?,
        None => 1,
    };
    const LETTERS: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let width = if start.len() > 1 && start.starts_with('0') {
        if start.len() != end.len() {
            return Err(bad(
                "a zero-padded range needs a start and an end of the same width",
            ));
        }
        start.len()
    } else {
        0
    };
    let letter = |s: &str| (s.len() == 1).then(|| LETTERS.find(s)).flatten();
    let items: Vec<String> = if let (Some(a), Some(b)) = (letter(start), letter(end)) {
        if a > b {
            return Err(bad("a range's start comes after its end"));
        }
        LETTERS[a..=b]
            .chars()
            .step_by(step)
            .map(String::from)
            .collect()
    } else if let (Ok(a), Ok(b)) = (start.parse::<u64>(), end.parse::<u64>()) {
        // Ansible expands a reversed range to no host at all; a line that names no host is
        // more likely a mistake than a wish, so it is refused.
        if a > b {
            return Err(bad(
                "a range's start comes after its end (Ansible would read no host)",
            ));
        }
        if (b - a) as usize / step >= MAX_RANGE_HOSTS {
            return Err(LineError::TooManyHosts(pattern.to_owned()));
        }
        (a..=b)
            .step_by(step)
            .map(|n| format!("{n:0width$}"))
            .collect()
    } else {
        return Err(bad("a range is of numbers or of single letters"));
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
    use crate::inventory::{Format, Inventory};

    const INI: &str = r#"
# The teaching lab, as the Ansible playbooks see it.
gateway.example.edu ansible_host=10.0.0.1

[room_a]
lab-[01:03] lightsout_mac=52:54:00:00:00:aa
lab-04 ansible_host=10.0.1.4 ansible_port=2222 lightsout_mac="52:54:00:00:00:04"

[room_b]
lab-b[a:c]   # letters
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
    fn ansible_ssh_host_is_the_address_and_a_disagreeing_ansible_host_is_refused() {
        let text = "[room]\nold ansible_ssh_host=10.0.3.1\nboth ansible_ssh_host=10.0.3.3 ansible_host=10.0.3.3\nquoted ansible_ssh_host='10.0.3.4'\n";
        let inv = Inventory::from_ansible(text, Path::new("hosts")).unwrap();
        assert_eq!(
            resolve(&inv, &["@room"]),
            [
                "old=10.0.3.1:7474",
                "both=10.0.3.3:7474",
                "quoted=10.0.3.4:7474"
            ],
            "the older name is honoured, alone or agreeing with ansible_host"
        );
        assert_eq!(resolve(&inv, &["10.0.3.1"]), ["old=10.0.3.1:7474"]);
        assert_eq!(
            inv.host("old").unwrap().address_source.as_deref(),
            Some("ansible_ssh_host in hosts line 2")
        );
        // Ansible's ssh connection dials ansible_ssh_host, its winrm connection ansible_host:
        // when they differ, lightsout refuses instead of picking one.
        let text = "[room]\nboth ansible_ssh_host=10.0.3.2 ansible_host=10.0.3.3\n";
        let err = Inventory::from_ansible(text, Path::new("hosts"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"both\"") && err.contains("disagree") && err.contains("keep one"),
            "{err}"
        );
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
            ("[room\nlab-01\n", "h:1: "),
            ("[room]\nlab-01 ssh\n", "h:2: expected key=value"),
            ("[room]\nlab-01 ; note\n", "h:2: expected key=value"),
            ("[room]\nlab-[05:01]\n", "start comes after"),
            ("[room]\nlab-[01:5]\n", "same width"),
            ("[room]\nlab-01 'unterminated\n", "quotation"),
            ("[room:hostvars]\n", "unknown kind"),
            ("[room with space]\n", "not a section header"),
            (
                "[room:vars]\nx=1\n",
                "h:1: section [room:vars] is for a group the file does not define",
            ),
            (
                "[rooms:children]\nroom\n",
                "h:2: section [rooms:children] includes \"room\"",
            ),
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
        assert_eq!(expand_ranges("n[:2]").unwrap(), ["n0", "n1", "n2"]);
        assert_eq!(expand_ranges("n[y:B]").unwrap(), ["ny", "nz", "nA", "nB"]);
        assert_eq!(expand_ranges("n[a:e:2]").unwrap(), ["na", "nc", "ne"]);
        assert!(
            expand_ranges(&"[0:0]".repeat(100_000)).is_err(),
            "bounded recursion"
        );
    }

    proptest::proptest! {
        /// Whatever the text, the reader answers with an inventory or an error, never a panic.
        #[test]
        fn any_text_is_read_or_refused(text in "[\\[\\]:#;=a-c0-2 '\"\\\\\n\u{e9}]{0,80}") {
            let _ = Inventory::from_ansible(&text, Path::new("h"));
        }
    }

    #[test]
    fn host_lines_split_like_a_shell() {
        assert_eq!(
            shell_split(r#"a b="x y"c d='q # r' e=f#g h"#).unwrap(),
            ["a", "b=x yc", "d=q # r", "e=f"]
        );
        assert_eq!(
            shell_split(r#"a b="say \"hi\"" c=\ d"#).unwrap(),
            ["a", r#"b=say "hi""#, "c= d"]
        );
        assert_eq!(literal("7500"), Value::from(7500));
        assert_eq!(
            literal("'10.0.0.1'  # the gateway"),
            Value::from("10.0.0.1")
        );
        assert_eq!(
            literal("10.0.0.1 # the gateway"),
            Value::from("10.0.0.1 # the gateway")
        );
        assert_eq!(literal("0755"), Value::from("0755"));
        assert_eq!(literal("True"), Value::Bool(true));
    }

    #[test]
    fn header_comments_ipv6_hosts_and_ports() {
        let text = "[dbserver] #group\ndb-[1:2]:2200\n2001:db8::7\n[2001:db8::8]:2222 lightsout_tls_name=db8\n\n[forum:children] #groups of groups\ndbserver # the databases\n";
        let inv = Inventory::from_ansible(text, Path::new("hosts")).unwrap();
        assert_eq!(
            resolve(&inv, &["@forum"]),
            [
                "db-1=db-1:7474",
                "db-2=db-2:7474",
                "2001:db8::7=[2001:db8::7]:7474",
                "2001:db8::8=[2001:db8::8]:7474"
            ],
            "SSH ports are not the agent's"
        );
        assert_eq!(
            resolve(&inv, &["2001:db8::8"]),
            ["2001:db8::8=[2001:db8::8]:7474"]
        );
        assert_eq!(inv.groups_of("db-1"), ["dbserver"]);
    }
}
