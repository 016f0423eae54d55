//! Ansible inventories, read as Ansible reads them, so a lab that already has one uses it
//! unchanged: the INI format, the YAML format, `host_vars/` and `group_vars/` beside the
//! inventory, and inventory directories holding several files.
//!
//! Both formats fill one [`Model`] (groups with hosts, children and variables; hosts with
//! variables); the variables lightsout uses are then resolved for each host with Ansible's
//! precedence, lowest first:
//!
//! 1. `[all:vars]` / `all: vars:` in the inventory;
//! 2. the other groups' inventory variables, parents before children (by depth, then name);
//! 3. `group_vars/all`;
//! 4. `group_vars/GROUP`, in the same order as 2;
//! 5. the host's own inventory variables;
//! 6. `host_vars/HOST`.
//!
//! Variables used: `ansible_host` or `ansible_ssh_host` (the address; when both are set and
//! differ, lightsout refuses: in ansible-core 2.18 the ssh and paramiko connections dial
//! `ansible_ssh_host`, winrm and psrp `ansible_host`),
//! `lightsout_port`, `lightsout_mac` (a list, or comma-separated), `lightsout_tls_name`.
//! `ansible_port` and `host:port` are Ansible's SSH port: read, never dialled.
//!
//! Where lightsout could not dial what Ansible would (a Jinja template, a value that is not an
//! address), the inventory is refused with the file and the fix.
//!
//! # Layout
//! - [`ini`]: the INI format.
//! - [`yaml`]: the YAML format, and the YAML variable files of `host_vars/` and `group_vars/`.

mod ini;
mod yaml;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use lightsout_protocol::{DEFAULT_PORT, MacAddr};
use serde_json::Value;

use super::{Format, HostEntry, Inventory, InventoryError, Member};

pub use ini::LineError;

/// File name endings Ansible skips in an inventory directory (`INVENTORY_IGNORE_EXTS`).
const IGNORED_ENDINGS: [&str; 12] = [
    ".pyc", ".pyo", ".swp", ".bak", "~", ".rpm", ".md", ".txt", ".rst", ".orig", ".cfg", ".retry",
];
/// Endings of YAML (and JSON) files, for inventories and variable files.
const YAML_ENDINGS: [&str; 3] = [".yml", ".yaml", ".json"];

/// Why an Ansible inventory is not read.
#[derive(Debug, thiserror::Error)]
pub enum AnsibleError {
    /// A line of an INI inventory.
    #[error("{}:{line}: {problem}", .path.display())]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based.
        line: usize,
        /// What is wrong.
        problem: LineError,
    },
    /// A YAML inventory or variable file that does not parse.
    #[error("{}: not valid YAML: {message}", .path.display())]
    Yaml {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A YAML document whose shape is not an inventory (or a variables file).
    #[error("{}: {problem}", .path.display())]
    Shape {
        /// The file.
        path: PathBuf,
        /// Where in the document, and what is expected.
        problem: String,
    },
    /// A file of an inventory directory that lightsout does not read.
    #[error("{}: {why}; move it out of the inventory directory or convert it to INI or YAML", .path.display())]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What it is.
        why: &'static str,
    },
    /// The file or directory cannot be read.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `ansible_host` and `ansible_ssh_host` name different machines.
    #[error(
        "host {host:?}: ansible_host={host_value:?} ({host_from}) and ansible_ssh_host={ssh_value:?} ({ssh_from}) disagree; Ansible's ssh connection would dial ansible_ssh_host and its winrm connection ansible_host, so lightsout will not guess: keep one of them"
    )]
    AddressConflict {
        /// The host.
        host: String,
        /// `ansible_host`.
        host_value: String,
        /// Where it is set.
        host_from: String,
        /// `ansible_ssh_host`.
        ssh_value: String,
        /// Where it is set.
        ssh_from: String,
    },
    /// Two hosts Ansible tells apart only by their SSH port would reach the same agent.
    #[error(
        "hosts {first:?} and {second:?} would both be dialled at {address}:{port}, but Ansible reaches them on different SSH ports ({first_ssh} and {second_ssh}): they may be different machines behind one address; give each its own lightsout_port (or address)"
    )]
    SharedAgent {
        /// One host.
        first: String,
        /// The other.
        second: String,
        /// The address both dial.
        address: String,
        /// The agent port both dial.
        port: u16,
        /// The first's SSH port.
        first_ssh: String,
        /// The second's.
        second_ssh: String,
    },
    /// A variable lightsout uses holds a Jinja template.
    #[error(
        "host {host:?}: {key}={value:?} ({from}) is a Jinja template; lightsout does not evaluate templates and will not dial a guess: set the value literally (in host_vars/{host}.yml, say)"
    )]
    Templated {
        /// The host.
        host: String,
        /// The variable.
        key: &'static str,
        /// Its value.
        value: String,
        /// Where it is set.
        from: String,
    },
    /// A variable lightsout uses has a value it cannot use.
    #[error("host {host:?}: {key}={value} ({from}): {problem}")]
    BadValue {
        /// The host.
        host: String,
        /// The variable.
        key: &'static str,
        /// Its value, as JSON.
        value: String,
        /// Where it is set.
        from: String,
        /// What is wrong, and what to do.
        problem: &'static str,
    },
}

/// One variable and where it is set (for messages and `inventory list`).
#[derive(Debug, Clone)]
struct Var {
    value: Value,
    from: String,
}

type Vars = BTreeMap<String, Var>;

#[derive(Debug, Default)]
struct Group {
    hosts: Vec<String>,
    children: Vec<String>,
    vars: Vars,
}

/// An Ansible inventory as its files say it, before variables are resolved.
#[derive(Debug)]
struct Model {
    /// Every host and its inventory variables (merged over the files that name it).
    hosts: BTreeMap<String, Vars>,
    /// Every group, `all` and `ungrouped` included.
    groups: BTreeMap<String, Group>,
}

impl Model {
    fn new() -> Self {
        let mut groups = BTreeMap::new();
        groups.insert("all".to_owned(), Group::default());
        groups.insert("ungrouped".to_owned(), Group::default());
        Self {
            hosts: BTreeMap::new(),
            groups,
        }
    }

    fn add_group(&mut self, name: &str) {
        self.groups.entry(name.to_owned()).or_default();
    }

    /// Adds `host` to `group` (and the group if new); `vars` override earlier ones.
    fn add_host(&mut self, group: &str, host: &str, vars: Vars) {
        self.hosts.entry(host.to_owned()).or_default().extend(vars);
        let members = &mut self.groups.entry(group.to_owned()).or_default().hosts;
        if !members.iter().any(|h| h == host) {
            members.push(host.to_owned());
        }
    }

    fn add_child(&mut self, parent: &str, child: &str) {
        self.add_group(child);
        let children = &mut self.groups.entry(parent.to_owned()).or_default().children;
        if !children.iter().any(|c| c == child) {
            children.push(child.to_owned());
        }
    }

    fn set_group_var(&mut self, group: &str, key: &str, var: Var) {
        self.groups
            .entry(group.to_owned())
            .or_default()
            .vars
            .insert(key.to_owned(), var);
    }

    /// The groups for [`Inventory`]: every group but `all` (which holds every host
    /// implicitly), and `ungrouped` holding exactly the hosts in no other group, as after
    /// Ansible's reconciliation.
    fn member_lists(&self) -> BTreeMap<String, Vec<Member>> {
        let grouped: HashSet<&str> = self
            .groups
            .iter()
            .filter(|(g, _)| *g != "all" && *g != "ungrouped")
            .flat_map(|(_, group)| group.hosts.iter().map(String::as_str))
            .collect();
        let mut out = BTreeMap::new();
        for (name, group) in &self.groups {
            if name == "all" || name == "ungrouped" {
                continue;
            }
            let mut members: Vec<Member> = group.hosts.iter().cloned().map(Member::Host).collect();
            members.extend(
                group
                    .children
                    .iter()
                    .filter(|c| *c != "all")
                    .cloned()
                    .map(Member::Group),
            );
            out.insert(name.clone(), members);
        }
        let mut ungrouped: Vec<Member> = self
            .hosts
            .keys()
            .filter(|h| !grouped.contains(h.as_str()))
            .cloned()
            .map(Member::Host)
            .collect();
        if let Some(group) = self.groups.get("ungrouped") {
            ungrouped.extend(group.children.iter().cloned().map(Member::Group));
        }
        if !ungrouped.is_empty() {
            out.insert("ungrouped".to_owned(), ungrouped);
        }
        out
    }
}

/// Variables from `host_vars/` and `group_vars/` beside the inventory.
#[derive(Debug, Default)]
struct VarsDirs {
    hosts: HashMap<String, Vars>,
    groups: HashMap<String, Vars>,
}

/// Reads an Ansible inventory file (INI, or YAML by its ending) with the `host_vars/` and
/// `group_vars/` beside it.
///
/// # Errors
/// [`InventoryError::Ansible`] naming the file (and line) and what to change.
pub(super) fn load_file(
    path: &Path,
    text: &str,
    format: Format,
) -> Result<Inventory, InventoryError> {
    let mut model = Model::new();
    parse_into(&mut model, path, text, format)?;
    let base = path.parent().unwrap_or(Path::new("."));
    finish(path, format, &model, base)
}

/// Reads an inventory directory as Ansible does: every file in name order (subdirectories
/// too), skipping hidden files, `host_vars`, `group_vars` and the endings Ansible skips; YAML
/// by ending, INI otherwise; then `DIR/host_vars` and `DIR/group_vars`.
///
/// # Errors
/// [`InventoryError::Ansible`]: a file cannot be read, is invalid, or is of a kind lightsout
/// does not read (a script, Ansible's TOML format).
pub(super) fn load_dir(dir: &Path) -> Result<Inventory, InventoryError> {
    let mut model = Model::new();
    read_dir_into(&mut model, dir)?;
    finish(dir, Format::AnsibleDirectory, &model, dir)
}

/// The entries of `dir`, sorted by name (Ansible reads a directory in that order).
fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, AnsibleError> {
    let io = |source| AnsibleError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(io)?;
    entries.sort();
    Ok(entries)
}

fn read_dir_into(model: &mut Model, dir: &Path) -> Result<(), AnsibleError> {
    let entries = sorted_entries(dir)?;
    for path in entries {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.starts_with('.')
            || matches!(name, "host_vars" | "group_vars" | "vars_plugins")
            || IGNORED_ENDINGS.iter().any(|e| name.ends_with(e))
        {
            continue;
        }
        if path.is_dir() {
            read_dir_into(model, &path)?;
            continue;
        }
        if name.ends_with(".toml") {
            return Err(AnsibleError::Unsupported {
                path,
                why: "Ansible's TOML inventory format is not read by lightsout (its own TOML inventory is a single file)",
            });
        }
        if is_executable(&path) {
            return Err(AnsibleError::Unsupported {
                path,
                why: "an executable file is a dynamic inventory script, which lightsout does not run",
            });
        }
        let text = std::fs::read_to_string(&path).map_err(|source| AnsibleError::Io {
            path: path.clone(),
            source,
        })?;
        let format = if YAML_ENDINGS.iter().any(|e| name.ends_with(e)) {
            Format::AnsibleYaml
        } else {
            Format::Ansible
        };
        parse_into(model, &path, &text, format)?;
    }
    Ok(())
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(_path: &Path) -> bool {
    false
}

fn parse_into(
    model: &mut Model,
    path: &Path,
    text: &str,
    format: Format,
) -> Result<(), AnsibleError> {
    match format {
        Format::AnsibleYaml => yaml::parse_into(model, path, text),
        _ => ini::parse_into(model, path, text),
    }
}

/// Reads the variable files of every host and group of `model` under `base`.
fn read_vars_dirs(model: &Model, base: &Path) -> Result<VarsDirs, AnsibleError> {
    let mut dirs = VarsDirs::default();
    for group in model.groups.keys() {
        let vars = read_vars_files(base, "group_vars", group)?;
        if !vars.is_empty() {
            dirs.groups.insert(group.clone(), vars);
        }
    }
    for host in model.hosts.keys() {
        let vars = read_vars_files(base, "host_vars", host)?;
        if !vars.is_empty() {
            dirs.hosts.insert(host.clone(), vars);
        }
    }
    Ok(dirs)
}

/// `base/kind/NAME`, `NAME.yml`, `NAME.yaml`, `NAME.json`, and a directory `NAME/` (its
/// files in name order, recursively), as Ansible's `host_group_vars` plugin finds them.
fn read_vars_files(base: &Path, kind: &str, name: &str) -> Result<Vars, AnsibleError> {
    let dir = base.join(kind);
    let mut vars = Vars::new();
    if !dir.is_dir() {
        return Ok(vars);
    }
    for ending in ["", ".yml", ".yaml", ".json"] {
        let path = dir.join(format!("{name}{ending}"));
        if path.is_dir() {
            read_vars_tree(&path, base, &mut vars)?;
        } else if path.is_file() {
            read_vars_file(&path, base, &mut vars)?;
        }
    }
    Ok(vars)
}

fn read_vars_tree(dir: &Path, base: &Path, vars: &mut Vars) -> Result<(), AnsibleError> {
    let entries = sorted_entries(dir)?;
    for path in entries {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            read_vars_tree(&path, base, vars)?;
        } else if !name.contains('.') || YAML_ENDINGS.iter().any(|e| name.ends_with(e)) {
            read_vars_file(&path, base, vars)?;
        }
    }
    Ok(())
}

fn read_vars_file(path: &Path, base: &Path, vars: &mut Vars) -> Result<(), AnsibleError> {
    let text = std::fs::read_to_string(path).map_err(|source| AnsibleError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let shown = path
        .strip_prefix(base)
        .unwrap_or(path)
        .display()
        .to_string();
    for (key, value) in yaml::parse_vars_file(path, &text)? {
        vars.insert(
            key,
            Var {
                value,
                from: shown.clone(),
            },
        );
    }
    Ok(())
}

/// Resolves every host's variables and builds the [`Inventory`].
fn finish(
    path: &Path,
    format: Format,
    model: &Model,
    base: &Path,
) -> Result<Inventory, InventoryError> {
    let groups = model.member_lists();
    let names: BTreeMap<String, HostEntry> = model
        .hosts
        .keys()
        .map(|h| (h.clone(), HostEntry::named(h.clone())))
        .collect();
    // Names, members and cycles first: depths below assume no cycle.
    Inventory::from_parts(path, format, DEFAULT_PORT, names, groups.clone())
        .validate()
        .map_err(|e| InventoryError::Invalid {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    let dirs = read_vars_dirs(model, base)?;
    let parents = Parents::new(&groups);
    let mut depths = HashMap::new();
    let all_dir = dirs.groups.get("all");

    let mut all_vars = model
        .groups
        .get("all")
        .map(|g| g.vars.clone())
        .unwrap_or_default();
    all_vars.extend(all_dir.cloned().unwrap_or_default());
    let default_port = match all_vars.get("lightsout_port") {
        Some(var) => port_value("all", var)?,
        None => DEFAULT_PORT,
    };

    let mut hosts = BTreeMap::new();
    let mut ssh_ports: HashMap<String, Option<String>> = HashMap::new();
    for (name, own) in &model.hosts {
        // Ansible's order: by depth, then by name; later groups override earlier ones.
        let mut ancestors: Vec<(usize, &str)> = parents
            .ancestors(name)
            .into_iter()
            .map(|g| (parents.depth(g, &mut depths), g))
            .collect();
        ancestors.sort_unstable();
        let ancestors: Vec<&str> = ancestors.into_iter().map(|(_, g)| g).collect();
        let mut vars = model
            .groups
            .get("all")
            .map(|g| g.vars.clone())
            .unwrap_or_default();
        for g in &ancestors {
            vars.extend(
                model
                    .groups
                    .get(*g)
                    .map(|g| g.vars.clone())
                    .unwrap_or_default(),
            );
        }
        vars.extend(all_dir.cloned().unwrap_or_default());
        for g in &ancestors {
            vars.extend(dirs.groups.get(*g).cloned().unwrap_or_default());
        }
        vars.extend(own.clone());
        vars.extend(dirs.hosts.get(name).cloned().unwrap_or_default());
        ssh_ports.insert(
            name.clone(),
            vars.get("ansible_port").map(|v| v.value.to_string()),
        );
        hosts.insert(name.clone(), host_entry(name, &vars)?);
    }
    check_shared_agents(&hosts, &ssh_ports, default_port)?;
    Ok(Inventory::from_parts(
        path,
        format,
        default_port,
        hosts,
        groups,
    ))
}

/// The groups of an inventory seen upwards: each host's groups, each group's parents
/// (`all` is implicit: the parent of every top-level group).
#[derive(Debug)]
struct Parents<'a> {
    of_host: HashMap<&'a str, Vec<&'a str>>,
    of_group: HashMap<&'a str, Vec<&'a str>>,
}

impl<'a> Parents<'a> {
    fn new(groups: &'a BTreeMap<String, Vec<Member>>) -> Self {
        let mut of_host: HashMap<&str, Vec<&str>> = HashMap::new();
        let mut of_group: HashMap<&str, Vec<&str>> = HashMap::new();
        for (group, members) in groups {
            for m in members {
                match m {
                    Member::Host(h) => of_host.entry(h).or_default().push(group),
                    Member::Group(g) => of_group.entry(g).or_default().push(group),
                }
            }
        }
        Self { of_host, of_group }
    }

    /// Every group `host` is in, directly or through children (`all` aside), as after
    /// Ansible's reconciliation (`ungrouped` only for hosts in no other group).
    fn ancestors(&self, host: &str) -> Vec<&'a str> {
        let mut out: Vec<&str> = Vec::new();
        let mut queue: Vec<&str> = self.of_host.get(host).cloned().unwrap_or_default();
        while let Some(g) = queue.pop() {
            if out.contains(&g) {
                continue;
            }
            queue.extend(self.of_group.get(g).into_iter().flatten());
            out.push(g);
        }
        out
    }

    /// Ansible's group depth: `all` is 0, a group is one deeper than its deepest parent.
    /// Cycles are refused before this runs.
    fn depth(&self, group: &str, memo: &mut HashMap<String, usize>) -> usize {
        if let Some(d) = memo.get(group) {
            return *d;
        }
        let d = self
            .of_group
            .get(group)
            .into_iter()
            .flatten()
            .map(|p| self.depth(p, memo) + 1)
            .max()
            .unwrap_or(1);
        memo.insert(group.to_owned(), d);
        d
    }
}

/// Two hosts that Ansible reaches on different SSH ports of one address (machines behind one
/// NAT address, say) would both be dialled at the same agent: refused, since a power action
/// meant for one would reach whichever machine answers there.
fn check_shared_agents(
    hosts: &BTreeMap<String, HostEntry>,
    ssh_ports: &HashMap<String, Option<String>>,
    default_port: u16,
) -> Result<(), AnsibleError> {
    let mut by_agent: HashMap<(&str, u16), &str> = HashMap::new();
    for (name, entry) in hosts {
        let agent = (entry.dial_host(), entry.port.unwrap_or(default_port));
        match by_agent.get(&agent) {
            Some(first) if ssh_ports.get(*first) != ssh_ports.get(name) => {
                let ssh = |h: &str| {
                    ssh_ports
                        .get(h)
                        .cloned()
                        .flatten()
                        .unwrap_or_else(|| "the default".to_owned())
                };
                return Err(AnsibleError::SharedAgent {
                    first: (*first).to_owned(),
                    second: name.clone(),
                    address: agent.0.to_owned(),
                    port: agent.1,
                    first_ssh: ssh(first),
                    second_ssh: ssh(name),
                });
            }
            Some(_) => {}
            None => {
                by_agent.insert(agent, name);
            }
        }
    }
    Ok(())
}

/// The values lightsout uses, from a host's resolved variables.
fn host_entry(name: &str, vars: &Vars) -> Result<HostEntry, AnsibleError> {
    let mut entry = HostEntry::named(name);
    let address = text_var(name, "ansible_host", vars.get("ansible_host"))?;
    let ssh_address = text_var(name, "ansible_ssh_host", vars.get("ansible_ssh_host"))?;
    let chosen = match (address, ssh_address) {
        (Some((a, a_from)), Some((b, b_from))) if a != b => {
            return Err(AnsibleError::AddressConflict {
                host: name.to_owned(),
                host_value: a,
                host_from: a_from,
                ssh_value: b,
                ssh_from: b_from,
            });
        }
        (Some((a, from)), _) => Some(("ansible_host", a, from)),
        (None, Some((b, from))) => Some(("ansible_ssh_host", b, from)),
        (None, None) => None,
    };
    if let Some((key, value, from)) = chosen {
        if super::toml_file::check_address(&value).is_err() {
            return Err(AnsibleError::BadValue {
                host: name.to_owned(),
                key,
                value: Value::String(value.clone()).to_string(),
                from,
                problem: if value.contains('#') {
                    "not an address: in a [group:vars] section, Ansible keeps a trailing comment as part of the value; move the comment to its own line"
                } else {
                    "not an IP address or a DNS name"
                },
            });
        }
        entry.address_source = Some(format!("{key} in {from}"));
        entry.address = Some(value);
    }
    if let Some(var) = vars.get("lightsout_port") {
        entry.port = Some(port_value(name, var)?);
    }
    if let Some(var) = vars.get("lightsout_mac") {
        let bad = |problem| AnsibleError::BadValue {
            host: name.to_owned(),
            key: "lightsout_mac",
            value: var.value.to_string(),
            from: var.from.clone(),
            problem,
        };
        let texts: Vec<String> = match &var.value {
            Value::String(s) => s.split(',').map(|m| m.trim().to_owned()).collect(),
            Value::Array(items) => items
                .iter()
                .map(|m| m.as_str().map(str::to_owned))
                .collect::<Option<_>>()
                .ok_or_else(|| bad("a list of MAC addresses is a list of strings"))?,
            _ => {
                return Err(bad(
                    "give MAC addresses as a string (comma-separated) or a list",
                ));
            }
        };
        entry.macs = texts
            .iter()
            .map(|m| MacAddr::parse(m))
            .collect::<Result<_, _>>()
            .map_err(|_| bad("not a MAC address (write it as 52:54:00:12:34:56)"))?;
    }
    entry.tls_name =
        text_var(name, "lightsout_tls_name", vars.get("lightsout_tls_name"))?.map(|(v, _)| v);
    Ok(entry)
}

/// A variable that must be plain text (a string or a number), not a template.
fn text_var(
    host: &str,
    key: &'static str,
    var: Option<&Var>,
) -> Result<Option<(String, String)>, AnsibleError> {
    let Some(var) = var else { return Ok(None) };
    let text = match &var.value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => {
            return Err(AnsibleError::BadValue {
                host: host.to_owned(),
                key,
                value: other.to_string(),
                from: var.from.clone(),
                problem: "expected a string",
            });
        }
    };
    if text.contains("{{") || text.contains("{%") {
        return Err(AnsibleError::Templated {
            host: host.to_owned(),
            key,
            value: text,
            from: var.from.clone(),
        });
    }
    Ok(Some((text, var.from.clone())))
}

fn port_value(host: &str, var: &Var) -> Result<u16, AnsibleError> {
    let port = match &var.value {
        Value::Number(n) => n.as_u64().and_then(|p| u16::try_from(p).ok()),
        Value::String(s) => s.trim().parse::<u16>().ok(),
        _ => None,
    };
    match port {
        Some(p) if p != 0 => Ok(p),
        _ => Err(AnsibleError::BadValue {
            host: host.to_owned(),
            key: "lightsout_port",
            value: var.value.to_string(),
            from: var.from.clone(),
            problem: "not a port (1-65535)",
        }),
    }
}

/// Splits Ansible's `host:port` (the SSH port), `[v6]:port`, a bare IPv6 address, or a range
/// pattern with a port (`web[1:3]:2222`) into the host pattern and the port.
fn split_port(pattern: &str) -> (&str, Option<&str>) {
    if let Some(rest) = pattern.strip_prefix('[') {
        if let Some((inner, after)) = rest.split_once(']') {
            if inner.parse::<std::net::Ipv6Addr>().is_ok() {
                match after.strip_prefix(':') {
                    Some(port) if port.chars().all(|c| c.is_ascii_digit()) && !port.is_empty() => {
                        return (inner, Some(port));
                    }
                    None if after.is_empty() => return (inner, None),
                    _ => {}
                }
            }
        }
    }
    if pattern.parse::<std::net::Ipv6Addr>().is_ok() {
        return (pattern, None);
    }
    if let Some((host, port)) = pattern.rsplit_once(':') {
        let outside_ranges: String = {
            let mut depth = 0;
            host.chars()
                .filter(|c| {
                    match c {
                        '[' => depth += 1,
                        ']' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .collect()
        };
        if !port.is_empty()
            && port.chars().all(|c| c.is_ascii_digit())
            && !outside_ranges.contains(':')
        {
            return (host, Some(port));
        }
    }
    (pattern, None)
}

/// Ready-to-paste text for an Ansible inventory, which lightsout reads but does not edit:
/// for INI, one host line per host (`lab-01 lightsout_mac=…`); for YAML, entries for a
/// group's `hosts:` mapping. Values are quoted so that YAML 1.1 (Ansible's) reads them as
/// strings (an unquoted MAC of digits would be a base-60 number).
pub fn paste_snippet(format: Format, hosts: &[(String, Vec<(&'static str, String)>)]) -> String {
    let mut out = String::new();
    for (name, vars) in hosts {
        if format == Format::Ansible {
            out.push_str(name);
            for (key, value) in vars {
                let quoted = if value.chars().any(|c| c.is_whitespace() || c == '#') {
                    format!("{value:?}")
                } else {
                    value.clone()
                };
                out.push_str(&format!(" {key}={quoted}"));
            }
            out.push('\n');
        } else {
            out.push_str(&format!("{}:\n", Value::String(name.clone())));
            for (key, value) in vars {
                out.push_str(&format!("  {key}: {}\n", Value::String(value.clone())));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, files: &[(&str, &str)]) {
        for (name, text) in files {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
    }

    fn address(inv: &Inventory, host: &str) -> (String, Option<String>) {
        let h = inv.host(host).unwrap();
        (h.dial_host().to_owned(), h.address_source.clone())
    }

    #[test]
    fn variables_follow_ansibles_precedence() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &[
                (
                    "hosts",
                    "[room]\nlab-01\nlab-02 lightsout_port=7603\nlab-03\n[floor:children]\nroom\n[floor]\n[floor:vars]\nlightsout_port=7601\nansible_host=10.9.9.9\n[room:vars]\nlightsout_port=7602\n[all:vars]\nlightsout_port=7600\n",
                ),
                ("group_vars/all.yml", "lightsout_tls_name: lab\n"),
                ("group_vars/room/addresses.yml", "ansible_host: 10.0.0.1\n"),
                (
                    "host_vars/lab-03.yaml",
                    "ansible_host: '10.0.0.3'\nlightsout_mac: ['52:54:00:00:00:03']\n",
                ),
            ],
        );
        let inv = Inventory::load(&dir.path().join("hosts")).unwrap();
        assert_eq!(inv.default_port, 7600);
        let port = |h: &str| inv.host(h).unwrap().port;
        assert_eq!(
            port("lab-01"),
            Some(7602),
            "child group over parent over all"
        );
        assert_eq!(port("lab-02"), Some(7603), "host over groups");
        assert_eq!(
            address(&inv, "lab-01"),
            (
                "10.0.0.1".into(),
                Some("ansible_host in group_vars/room/addresses.yml".into())
            ),
            "group_vars over any group's inventory variables"
        );
        assert_eq!(
            address(&inv, "lab-03"),
            (
                "10.0.0.3".into(),
                Some("ansible_host in host_vars/lab-03.yaml".into())
            )
        );
        assert_eq!(inv.host("lab-03").unwrap().macs.len(), 1);
        assert_eq!(inv.host("lab-02").unwrap().tls_name.as_deref(), Some("lab"));
    }

    #[test]
    fn yaml_inventories_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &[
                (
                    "inv/10-lab.yml",
                    "all:\n  hosts:\n    gateway:\n      ansible_host: 10.0.0.254\n  children:\n    room:\n      hosts:\n        lab-[01:02]:\n        '[2001:db8::8]:2222':\n      vars:\n        lightsout_mac: \"52:54:00:00:00:01\"\n    everything:\n      children:\n        room:\n",
                ),
                ("inv/20-more", "[room]\nlab-03 ansible_host=10.0.0.3\n"),
                ("inv/README.md", "not an inventory\n"),
                ("inv/group_vars/room.yml", "lightsout_port: 7500\n"),
            ],
        );
        let inv = Inventory::load(&dir.path().join("inv")).unwrap();
        assert_eq!(inv.format, Some(Format::AnsibleDirectory));
        let names: Vec<&str> = inv.hosts().map(|h| h.name.as_str()).collect();
        assert_eq!(
            names,
            ["2001:db8::8", "gateway", "lab-01", "lab-02", "lab-03"]
        );
        assert_eq!(inv.groups_of("gateway"), ["ungrouped"]);
        assert_eq!(inv.groups_of("lab-03"), ["room"]);
        assert_eq!(inv.host("lab-03").unwrap().port, Some(7500));
        assert_eq!(inv.host("lab-01").unwrap().macs.len(), 1);

        let file = dir.path().join("inv/10-lab.yml");
        let one = Inventory::load(&file).unwrap();
        assert_eq!(one.format, Some(Format::AnsibleYaml));
        assert_eq!(one.hosts().count(), 4);

        for (text, needle) in [
            ("all: [a, b]\n", "group \"all\" is a list"),
            ("all:\n  hosts: [a]\n", "must be a mapping"),
            ("plugin: aws_ec2\n", "does not run"),
            (
                "all:\n  hosts:\n    a:\n      ansible_host: '{{ lookup }}'\n",
                "Jinja",
            ),
            ("all:\n  hosts: {\n", "not valid YAML"),
            (
                "all:\n  hosts:\n    a:\n      ansible_host: 10.0.0.1\n      ansible_host: 10.0.0.2\n",
                "duplicate mapping key",
            ),
        ] {
            std::fs::write(&file, text).unwrap();
            let err = Inventory::load(&file).unwrap_err().to_string();
            assert!(
                err.contains(needle) && err.contains("10-lab.yml"),
                "{text:?}: {err}"
            );
        }
    }

    #[test]
    fn addresses_lightsout_would_not_dial_as_ansible_does_are_refused() {
        for (text, needle) in [
            (
                "[r]\na\n[r:vars]\nansible_host=10.0.0.5 # the db\n",
                "trailing comment",
            ),
            (
                "[r]\na ansible_host=\"{{ inventory_hostname }}.lab\"\n",
                "Jinja template",
            ),
            (
                "[r]\na ansible_host=10.0.0.1\n[r:vars]\nansible_ssh_host=10.0.0.2\n",
                "disagree",
            ),
        ] {
            let err = Inventory::from_ansible(text, Path::new("hosts"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
        // Behind one NAT address, told apart by their SSH ports: one agent cannot be both.
        let text = "h1 ansible_host=10.0.0.9 ansible_port=2201\nh2 ansible_host=10.0.0.9 ansible_port=2202\n";
        let err = Inventory::from_ansible(text, Path::new("hosts"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"h1\" and \"h2\"")
                && err.contains("10.0.0.9:7474")
                && err.contains("2201 and 2202"),
            "{err}"
        );
        let text = "h1 ansible_host=10.0.0.9 ansible_port=2201 lightsout_port=7501\nh2 ansible_host=10.0.0.9 ansible_port=2202 lightsout_port=7502\nh3 ansible_host=10.0.0.9 ansible_port=2202 lightsout_port=7502\n";
        assert!(
            Inventory::from_ansible(text, Path::new("hosts")).is_ok(),
            "their own agent ports; two names for one endpoint are one machine"
        );
        let text = "[r]\na\n[r:vars]\nansible_host='10.0.0.5' # the db\n";
        let inv = Inventory::from_ansible(text, Path::new("hosts")).unwrap();
        assert_eq!(
            inv.host("a").unwrap().dial_host(),
            "10.0.0.5",
            "a Python literal"
        );
    }

    #[test]
    fn pasted_lines_read_back_as_written() {
        let hosts = vec![(
            "lab-01".to_owned(),
            vec![(
                "lightsout_mac",
                "52:54:00:00:00:01,52:54:00:00:00:02".to_owned(),
            )],
        )];
        let ini = paste_snippet(Format::Ansible, &hosts);
        assert_eq!(
            ini,
            "lab-01 lightsout_mac=52:54:00:00:00:01,52:54:00:00:00:02\n"
        );
        let inv = Inventory::from_ansible(&format!("[r]\n{ini}"), Path::new("hosts")).unwrap();
        assert_eq!(inv.host("lab-01").unwrap().macs.len(), 2);
        let yaml = paste_snippet(Format::AnsibleYaml, &hosts);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inv.yml");
        let indented: String = yaml.lines().map(|l| format!("        {l}\n")).collect();
        std::fs::write(
            &path,
            format!("all:\n  children:\n    r:\n      hosts:\n{indented}"),
        )
        .unwrap();
        let inv = Inventory::load(&path).unwrap();
        assert_eq!(inv.host("lab-01").unwrap().macs.len(), 2);
    }
}
