//! The lab inventory: named hosts and groups of them, read from a TOML file or an Ansible
//! inventory (INI, YAML, or a directory, with `host_vars/` and `group_vars/`), and the resolution of TARGET expressions to the hosts a command contacts.
//!
//! A TARGET is one of:
//! - `all`: every host of the inventory;
//! - `@group`: the group's hosts (groups may contain groups; cycles are refused at load);
//! - `name` or `name:port`: an inventory host (the port overrides its own);
//! - an address, `address:port`, `[v6]:port`: the inventory host with that address if there
//!   is one (so its MAC and TLS name apply), else that address as is;
//! - any other name with a dot or a port (`lab-01.example.edu`, `lab-99:7474`): dialled as is.
//!
//! When an inventory is loaded, a plain name that is in it neither as a host nor as a group is
//! an error (a typo must not silently reach another machine, or none); without an inventory
//! every name is dialled as typed.
//!
//! # Layout
//! - [`toml_file`]: the TOML format, and editing it in place (`learn`, `discover`).
//! - [`ansible`]: Ansible's inventories: the INI and YAML formats, inventory directories,
//!   `host_vars/` and `group_vars/`.

pub mod ansible;
pub mod toml_file;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use lightsout_protocol::{DEFAULT_PORT, MacAddr};

use crate::target::Target;
use crate::text::{natural_cmp, suggest};

/// File name of the default inventory, in the lightsout home directory.
pub const DEFAULT_FILE: &str = "inventory.toml";
/// Longest host or group name.
const MAX_NAME_LEN: usize = 253;

/// One host as the inventory describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEntry {
    /// The name used in targets and reports.
    pub name: String,
    /// Address or DNS name to dial; the name itself when absent.
    pub address: Option<String>,
    /// Agent port; the inventory's default when absent.
    pub port: Option<u16>,
    /// Wake-on-LAN MAC addresses (a machine may have several cards).
    pub macs: Vec<MacAddr>,
    /// Name the agent's certificate must match, when not the address dialled.
    pub tls_name: Option<String>,
    /// Where the address is set (`ansible_host in group_vars/room.yml`), when it is.
    pub address_source: Option<String>,
}

impl HostEntry {
    /// A host with only a name.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            address: None,
            port: None,
            macs: Vec::new(),
            tls_name: None,
            address_source: None,
        }
    }

    /// What is dialled: the address, else the name.
    pub fn dial_host(&self) -> &str {
        self.address.as_deref().unwrap_or(&self.name)
    }
}

/// A member of a group.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Member {
    /// A host, by name.
    Host(String),
    /// A nested group, by name (`@name` in the TOML file).
    Group(String),
}

/// Which syntax an inventory file uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// lightsout's own TOML (see `inventory.example.toml`).
    Toml,
    /// Ansible's INI inventory.
    Ansible,
    /// Ansible's YAML inventory.
    AnsibleYaml,
    /// A directory of Ansible inventory files.
    AnsibleDirectory,
}

impl Format {
    /// One of Ansible's: lightsout reads it but does not write it.
    pub fn is_ansible(self) -> bool {
        self != Format::Toml
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Toml => "TOML",
            Format::Ansible => "Ansible INI",
            Format::AnsibleYaml => "Ansible YAML",
            Format::AnsibleDirectory => "Ansible inventory directory",
        })
    }
}

/// One host a command contacts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// The inventory name, when the host is in the inventory.
    pub name: Option<String>,
    /// Where to connect.
    pub target: Target,
    /// Name the agent's certificate must match instead of the host dialled.
    pub tls_name: Option<String>,
    /// Wake-on-LAN MAC addresses.
    pub macs: Vec<MacAddr>,
    /// Where the inventory sets the address (`ansible_host in host_vars/lab-01.yml`); `None`
    /// when the name is dialled, or outside an inventory.
    pub address_source: Option<String>,
    /// Named directly on the command line, not reached through a group or `all`.
    pub explicit: bool,
}

impl Host {
    /// A host outside any inventory.
    pub fn adhoc(target: Target) -> Self {
        Self {
            name: None,
            target,
            tls_name: None,
            macs: Vec::new(),
            address_source: None,
            explicit: true,
        }
    }

    /// How reports name the host: its inventory name, else `address:port`.
    pub fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.target.to_string())
    }
}

/// Why an inventory cannot be used, or a target not resolved.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// The inventory named with `--inventory` (or `LIGHTSOUT_INVENTORY`) does not exist.
    #[error(
        "no inventory at {}: create it (see inventory.example.toml), or point --inventory (or LIGHTSOUT_INVENTORY) at an existing file or directory",
        .0.display()
    )]
    Missing(PathBuf),
    /// The file cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid in its format, or names something it does not define.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        message: String,
    },
    /// An Ansible inventory that lightsout does not read, or would not read as Ansible does.
    #[error(transparent)]
    Ansible(Box<ansible::AnsibleError>),
    /// A target expression matches nothing, or is malformed.
    #[error("{0}")]
    Target(String),
}

impl From<ansible::AnsibleError> for InventoryError {
    fn from(e: ansible::AnsibleError) -> Self {
        InventoryError::Ansible(Box::new(e))
    }
}

/// Why a host or group name is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Characters outside letters, digits, `.`, `_`, `-`, or too long.
    #[error(
        "invalid {what} name {name:?}: use letters, digits, '.', '_' and '-' (at most {MAX_NAME_LEN})"
    )]
    Invalid {
        /// `host` or `group`.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// `all` means every host.
    #[error("{what} name \"all\" is reserved (it means every host)")]
    Reserved {
        /// `host` or `group`.
        what: &'static str,
    },
}

/// Why the hosts and groups of an inventory do not fit together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// A host or group name.
    #[error(transparent)]
    Name(#[from] NameError),
    /// A group lists a host that is not defined.
    #[error("group {group:?}: unknown host {host:?}{}", group_hint(.host, *.is_a_group))]
    UnknownHost {
        /// The group.
        group: String,
        /// The member.
        host: String,
        /// The member is a group, written without `@`.
        is_a_group: bool,
    },
    /// A group lists a group that is not defined.
    #[error("group {group:?}: unknown group \"@{member}\"")]
    UnknownGroup {
        /// The group.
        group: String,
        /// The member.
        member: String,
    },
    /// Groups that contain each other, as the path `@a -> @b -> @a`.
    #[error("groups form a cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
}

fn group_hint(host: &str, is_a_group: bool) -> String {
    if is_a_group {
        format!(" (write \"@{host}\" for the group)")
    } else {
        String::new()
    }
}

/// The hosts and groups of a lab.
#[derive(Debug, Clone)]
pub struct Inventory {
    /// Where it was read from (or would be, for an absent default file).
    pub path: PathBuf,
    /// The syntax; `None` when no file was loaded.
    pub format: Option<Format>,
    /// Port of hosts that do not give one.
    pub default_port: u16,
    hosts: BTreeMap<String, HostEntry>,
    groups: BTreeMap<String, Vec<Member>>,
}

impl Inventory {
    /// No inventory (the default file does not exist): every name is dialled as typed.
    pub fn absent(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            format: None,
            default_port: DEFAULT_PORT,
            hosts: BTreeMap::new(),
            groups: BTreeMap::new(),
        }
    }

    /// Whether a file was loaded.
    pub fn is_loaded(&self) -> bool {
        self.format.is_some()
    }

    /// The inventory for a command: `explicit` (`--inventory`) must exist; the default file
    /// in the home directory is optional.
    ///
    /// # Errors
    /// The file cannot be read or is invalid.
    pub fn open(explicit: Option<&Path>, home_dir: &Path) -> Result<Self, InventoryError> {
        match explicit {
            Some(path) => Self::load(path),
            None => {
                let path = home_dir.join(DEFAULT_FILE);
                if path.exists() {
                    Self::load(&path)
                } else {
                    Ok(Self::absent(path))
                }
            }
        }
    }

    /// Reads `path`: a directory as an Ansible inventory directory; a file as TOML when it
    /// ends in `.toml`, Ansible YAML when in `.yml`, `.yaml` or `.json`, Ansible INI when in
    /// `.ini`, `.cfg` or named `hosts`; otherwise TOML if it parses as TOML, else Ansible INI.
    /// An Ansible inventory file brings the `host_vars/` and `group_vars/` beside it.
    ///
    /// # Errors
    /// The file cannot be read or is invalid.
    pub fn load(path: &Path) -> Result<Self, InventoryError> {
        if path.is_dir() {
            return ansible::load_dir(path);
        }
        let text = std::fs::read_to_string(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                InventoryError::Missing(path.to_path_buf())
            } else {
                InventoryError::Io {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let named_hosts = path.file_name().is_some_and(|n| n == "hosts");
        match ext.as_deref() {
            Some("toml") => Self::from_toml(&text, path),
            Some("yml" | "yaml" | "json") => ansible::load_file(path, &text, Format::AnsibleYaml),
            Some("ini" | "cfg") => Self::from_ansible(&text, path),
            _ if named_hosts => Self::from_ansible(&text, path),
            _ => Self::from_toml(&text, path).or_else(|toml_err| {
                Self::from_ansible(&text, path).map_err(|ini_err| InventoryError::Invalid {
                    path: path.to_path_buf(),
                    message: format!(
                        "neither a TOML inventory ({}) nor an Ansible INI inventory ({})",
                        strip_path(&toml_err),
                        strip_path(&ini_err)
                    ),
                })
            }),
        }
    }

    /// Parses lightsout's TOML format.
    ///
    /// # Errors
    /// Not valid TOML, unknown keys, invalid names or MACs, unknown group members, cycles.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, InventoryError> {
        let inv = toml_file::parse(text, path)?;
        inv.validate().map_err(|e| InventoryError::Invalid {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Ok(inv)
    }

    /// Parses an Ansible INI inventory, with the `host_vars/` and `group_vars/` beside `path`.
    ///
    /// # Errors
    /// Malformed lines, invalid names, cycles, addresses lightsout would not dial as Ansible
    /// does.
    pub fn from_ansible(text: &str, path: &Path) -> Result<Self, InventoryError> {
        ansible::load_file(path, text, Format::Ansible)
    }

    /// An inventory built in memory (parsers, tests); call [`Inventory::validate`] after.
    pub(crate) fn from_parts(
        path: &Path,
        format: Format,
        default_port: u16,
        hosts: BTreeMap<String, HostEntry>,
        groups: BTreeMap<String, Vec<Member>>,
    ) -> Self {
        Self {
            path: path.to_path_buf(),
            format: Some(format),
            default_port,
            hosts,
            groups,
        }
    }

    /// Checks names, group members and the absence of cycles.
    ///
    /// # Errors
    /// The first problem, naming the host or group.
    pub fn validate(&self) -> Result<(), ValidationError> {
        for name in self.hosts.keys() {
            check_name("host", name)?;
        }
        for (group, members) in &self.groups {
            check_name("group", group)?;
            for m in members {
                match m {
                    Member::Host(h) if !self.hosts.contains_key(h) => {
                        return Err(ValidationError::UnknownHost {
                            group: group.clone(),
                            host: h.clone(),
                            is_a_group: self.groups.contains_key(h),
                        });
                    }
                    Member::Group(g) if !self.groups.contains_key(g) => {
                        return Err(ValidationError::UnknownGroup {
                            group: group.clone(),
                            member: g.clone(),
                        });
                    }
                    _ => {}
                }
            }
        }
        // Depth-first search for a cycle; report it as a path.
        let mut done: HashSet<&str> = HashSet::new();
        for start in self.groups.keys() {
            let mut stack: Vec<&str> = Vec::new();
            self.find_cycle(start, &mut stack, &mut done)?;
        }
        Ok(())
    }

    fn find_cycle<'a>(
        &'a self,
        group: &'a str,
        stack: &mut Vec<&'a str>,
        done: &mut HashSet<&'a str>,
    ) -> Result<(), ValidationError> {
        if let Some(at) = stack.iter().position(|g| *g == group) {
            let mut cycle: Vec<String> = stack[at..].iter().map(|g| format!("@{g}")).collect();
            cycle.push(format!("@{group}"));
            return Err(ValidationError::Cycle(cycle));
        }
        if done.contains(group) {
            return Ok(());
        }
        stack.push(group);
        for m in self.groups.get(group).into_iter().flatten() {
            if let Member::Group(child) = m {
                self.find_cycle(child, stack, done)?;
            }
        }
        stack.pop();
        done.insert(group);
        Ok(())
    }

    /// Every host, by name.
    pub fn hosts(&self) -> impl Iterator<Item = &HostEntry> {
        self.hosts.values()
    }

    /// One host by name.
    pub fn host(&self, name: &str) -> Option<&HostEntry> {
        self.hosts.get(name)
    }

    /// Every group and its members.
    pub fn groups(&self) -> &BTreeMap<String, Vec<Member>> {
        &self.groups
    }

    /// The groups that list `host` directly.
    pub fn groups_of(&self, host: &str) -> Vec<&str> {
        self.groups
            .iter()
            .filter(|(_, members)| members.contains(&Member::Host(host.to_owned())))
            .map(|(g, _)| g.as_str())
            .collect()
    }

    fn to_host(&self, entry: &HostEntry, port: Option<u16>, explicit: bool) -> Host {
        Host {
            name: Some(entry.name.clone()),
            target: Target {
                host: entry.dial_host().to_owned(),
                port: port.or(entry.port).unwrap_or(self.default_port),
            },
            tls_name: entry.tls_name.clone(),
            macs: entry.macs.clone(),
            address_source: entry.address_source.clone(),
            explicit,
        }
    }

    /// Resolves TARGET expressions to hosts: in the order given, each host once (a host named
    /// explicitly anywhere counts as explicit).
    ///
    /// # Errors
    /// [`InventoryError::Target`] for an unknown name or group, `all` or `@group` without an
    /// inventory, or a malformed target.
    pub fn resolve(&self, exprs: &[String]) -> Result<Vec<Host>, InventoryError> {
        let mut out: Vec<Host> = Vec::new();
        for expr in exprs {
            for host in self.resolve_one(expr.trim())? {
                match out.iter_mut().find(|h| h.target == host.target) {
                    Some(existing) => existing.explicit |= host.explicit,
                    None => out.push(host),
                }
            }
        }
        Ok(out)
    }

    fn resolve_one(&self, expr: &str) -> Result<Vec<Host>, InventoryError> {
        let err = InventoryError::Target;
        if (expr == "all" || expr.starts_with('@')) && !self.is_loaded() {
            return Err(err(format!(
                "{expr:?} needs an inventory, and there is none at {} (create it — see inventory.example.toml — or pass --inventory FILE)",
                self.path.display()
            )));
        }
        if expr == "all" {
            let mut entries: Vec<&HostEntry> = self.hosts.values().collect();
            entries.sort_by(|a, b| natural_cmp(&a.name, &b.name));
            return Ok(entries
                .into_iter()
                .map(|e| self.to_host(e, None, false))
                .collect());
        }
        if let Some(group) = expr.strip_prefix('@') {
            if !self.groups.contains_key(group) {
                return Err(err(format!(
                    "unknown group \"@{group}\" in {}{}",
                    self.path.display(),
                    suggest(group, self.groups.keys().map(String::as_str), "@")
                )));
            }
            let mut names = Vec::new();
            let mut visited = HashSet::new();
            self.expand(group, &mut names, &mut visited);
            return Ok(names
                .iter()
                .filter_map(|n| self.hosts.get(n))
                .map(|e| self.to_host(e, None, false))
                .collect());
        }
        let (host, port) = Target::split(expr).map_err(|e| err(format!("invalid target {e}")))?;
        if let Some(entry) = self.hosts.get(&host) {
            return Ok(vec![self.to_host(entry, port, true)]);
        }
        // An address (or DNS name) that an inventory host has: use that host's entry.
        if let Some(entry) = self.hosts.values().find(|e| {
            e.address.as_deref() == Some(host.as_str())
                && port.is_none_or(|p| p == e.port.unwrap_or(self.default_port))
        }) {
            return Ok(vec![self.to_host(entry, port, true)]);
        }
        let literal = host.contains(['.', ':'])
            || host.parse::<std::net::IpAddr>().is_ok()
            || port.is_some()
            || host == "localhost";
        if self.is_loaded() && !literal {
            let mut hint = suggest(&host, self.hosts.keys().map(String::as_str), "");
            if hint.is_empty() && self.groups.contains_key(&host) {
                hint = format!(" (for the group, write \"@{host}\")");
            }
            return Err(err(format!(
                "unknown host {host:?}: not in the inventory {}{hint}; to dial a machine outside it, give its address, full DNS name or a port",
                self.path.display()
            )));
        }
        Ok(vec![Host::adhoc(Target {
            host,
            port: port.unwrap_or(self.default_port),
        })])
    }

    /// Appends the hosts of `group` (depth first, members in order) to `out`, once each.
    fn expand(&self, group: &str, out: &mut Vec<String>, visited: &mut HashSet<String>) {
        if !visited.insert(group.to_owned()) {
            return;
        }
        for m in self.groups.get(group).into_iter().flatten() {
            match m {
                Member::Host(h) => {
                    if !out.contains(h) {
                        out.push(h.clone());
                    }
                }
                Member::Group(g) => self.expand(g, out, visited),
            }
        }
    }
}

fn strip_path(e: &InventoryError) -> String {
    match e {
        InventoryError::Invalid { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// Host and group names: a letter or digit, then letters, digits, `.`, `_`, `-`; `all` is
/// reserved. A host may also be named by an IPv6 address.
///
/// # Errors
/// [`NameError`]: why `name` is not one.
pub fn check_name(what: &'static str, name: &str) -> Result<(), NameError> {
    // Ansible names hosts by bare IPv6 addresses (`2001:db8::7`); they are dialled as such.
    if what == "host" && name.parse::<std::net::Ipv6Addr>().is_ok() {
        return Ok(());
    }
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !valid {
        return Err(NameError::Invalid {
            what,
            name: name.to_owned(),
        });
    }
    if name == "all" {
        return Err(NameError::Reserved { what });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAB: &str = r#"
[defaults]
port = 7500

[hosts.lab-01]
address = "10.0.0.21"
mac = "52:54:00:00:00:21"

[hosts.lab-02]
address = "10.0.0.22"
port = 9000
mac = ["52:54:00:00:00:22", "52:54:00:00:01:22"]

[hosts.lab-10]
address = "10.0.0.30"
tls_name = "lab-10.example.edu"

[hosts.printer]

[groups]
room-a = ["lab-01", "lab-02"]
room-b = ["lab-10"]
rooms = ["@room-a", "@room-b"]
everything = ["@rooms", "printer", "lab-01"]
"#;

    fn lab() -> Inventory {
        Inventory::from_toml(LAB, Path::new("inv.toml")).unwrap()
    }

    fn labels(hosts: &[Host]) -> Vec<String> {
        hosts.iter().map(Host::label).collect()
    }

    fn resolve(inv: &Inventory, exprs: &[&str]) -> Result<Vec<Host>, String> {
        let exprs: Vec<String> = exprs.iter().map(|s| (*s).to_owned()).collect();
        inv.resolve(&exprs).map_err(|e| e.to_string())
    }

    #[test]
    fn names_groups_nested_groups_and_all() {
        let inv = lab();
        let hosts = resolve(&inv, &["lab-01"]).unwrap();
        assert_eq!(hosts[0].target.to_string(), "10.0.0.21:7500");
        assert!(hosts[0].explicit);
        assert_eq!(hosts[0].macs.len(), 1);
        let hosts = resolve(&inv, &["lab-02"]).unwrap();
        assert_eq!(hosts[0].target.to_string(), "10.0.0.22:9000");
        assert_eq!(hosts[0].macs.len(), 2);
        let hosts = resolve(&inv, &["lab-02:9100"]).unwrap();
        assert_eq!(
            hosts[0].target.to_string(),
            "10.0.0.22:9100",
            "port override"
        );

        assert_eq!(
            labels(&resolve(&inv, &["@rooms"]).unwrap()),
            ["lab-01", "lab-02", "lab-10"]
        );
        assert!(
            resolve(&inv, &["@rooms"])
                .unwrap()
                .iter()
                .all(|h| !h.explicit)
        );
        assert_eq!(
            labels(&resolve(&inv, &["@everything"]).unwrap()),
            ["lab-01", "lab-02", "lab-10", "printer"],
            "nested, each host once"
        );
        assert_eq!(
            labels(&resolve(&inv, &["all"]).unwrap()),
            ["lab-01", "lab-02", "lab-10", "printer"],
            "natural order"
        );
        // Named explicitly anywhere makes it explicit.
        let hosts = resolve(&inv, &["@room-a", "lab-02"]).unwrap();
        assert_eq!(labels(&hosts), ["lab-01", "lab-02"]);
        assert!(!hosts[0].explicit && hosts[1].explicit);
        // The host without an address is dialled by name; the TLS name is carried.
        let hosts = resolve(&inv, &["printer", "lab-10"]).unwrap();
        assert_eq!(hosts[0].target.to_string(), "printer:7500");
        assert_eq!(hosts[1].tls_name.as_deref(), Some("lab-10.example.edu"));
    }

    #[test]
    fn addresses_find_their_inventory_entry() {
        let inv = lab();
        let hosts = resolve(
            &inv,
            &["10.0.0.21", "10.0.0.99", "[::1]:80", "box.example.edu"],
        )
        .unwrap();
        assert_eq!(hosts[0].name.as_deref(), Some("lab-01"));
        assert_eq!(hosts[0].macs.len(), 1);
        assert_eq!(hosts[1].name, None);
        assert_eq!(hosts[1].target.to_string(), "10.0.0.99:7500");
        assert_eq!(hosts[2].target.to_string(), "[::1]:80");
        assert_eq!(hosts[3].target.to_string(), "box.example.edu:7500");
        // The same address twice is one host.
        assert_eq!(resolve(&inv, &["lab-01", "10.0.0.21"]).unwrap().len(), 1);
    }

    #[test]
    fn unknown_names_are_clear_errors() {
        let inv = lab();
        let err = resolve(&inv, &["lab-1"]).unwrap_err();
        assert!(err.contains("unknown host \"lab-1\""), "{err}");
        assert!(err.contains("did you mean \"lab-01\""), "{err}");
        let err = resolve(&inv, &["@room-c"]).unwrap_err();
        assert!(
            err.contains("unknown group \"@room-c\"") && err.contains("\"@room-a\""),
            "{err}"
        );
        let err = resolve(&inv, &["rooms"]).unwrap_err();
        assert!(err.contains("write \"@rooms\""), "{err}");
        assert!(resolve(&inv, &["lab-01:0"]).is_err());
        // A port or a dot means "dial as typed".
        assert!(resolve(&inv, &["lab-99:7474", "lab-99.example.edu"]).is_ok());
        // Without an inventory, names are dialled as typed, and groups need one.
        let none = Inventory::absent("/nowhere/inventory.toml");
        assert_eq!(
            resolve(&none, &["lab-1"]).unwrap()[0].target.to_string(),
            "lab-1:7474"
        );
        let err = resolve(&none, &["@room-a"]).unwrap_err();
        assert!(
            err.contains("needs an inventory") && err.contains("/nowhere"),
            "{err}"
        );
        assert!(resolve(&none, &["all"]).is_err());
    }

    #[test]
    fn cycles_and_bad_members_are_refused_at_load() {
        let cyclic = "[hosts.a]\n[groups]\nx = [\"@y\"]\ny = [\"a\", \"@z\"]\nz = [\"@x\"]\n";
        let err = Inventory::from_toml(cyclic, Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cycle") && err.contains("@x -> @y -> @z -> @x"),
            "{err}"
        );
        let own = "[groups]\nx = [\"@x\"]\n";
        assert!(Inventory::from_toml(own, Path::new("c.toml")).is_err());

        let err = Inventory::from_toml("[groups]\nx = [\"nobody\"]\n", Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown host \"nobody\""), "{err}");
        let err = Inventory::from_toml("[groups]\nx = [\"@nothing\"]\n", Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown group \"@nothing\""), "{err}");
        let err = Inventory::from_toml("[hosts.all]\n", Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("reserved"), "{err}");
    }
}
