//! lightsout's TOML inventory (see `inventory.example.toml`), and editing it in place.
//!
//! ```toml
//! [defaults]
//! port = 7474                      # agents' port unless a host says otherwise
//!
//! [hosts.lab-01]
//! address = "10.0.0.21"            # default: the name itself (a DNS name)
//! mac = "52:54:00:12:34:56"        # or a list, for machines with several cards
//!
//! [groups]
//! room-a = ["lab-01", "lab-02"]
//! building = ["@room-a", "@room-b"] # groups of groups
//! ```
//!
//! Unknown keys are errors (a typo must not silently drop a setting). Edits — MACs learnt
//! from agents, hosts found by discovery — go through `toml_edit`, so comments, order and
//! formatting of everything else are preserved, and the result is validated before the file
//! is replaced (atomically).

use std::collections::BTreeMap;
use std::path::Path;

use lightsout_protocol::{DEFAULT_PORT, MacAddr};
use serde::Deserialize;

use super::{Format, HostEntry, Inventory, InventoryError, Member};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    #[serde(default)]
    defaults: Defaults,
    #[serde(default)]
    hosts: BTreeMap<String, HostDoc>,
    #[serde(default)]
    groups: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Defaults {
    port: Option<u16>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostDoc {
    address: Option<String>,
    port: Option<u16>,
    mac: Option<OneOrMany>,
    tls_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// Parses the TOML format (without the cross-checks of [`Inventory::validate`]).
///
/// # Errors
/// [`InventoryError::Invalid`] naming the line or key.
pub(super) fn parse(text: &str, path: &Path) -> Result<Inventory, InventoryError> {
    let invalid = |message: String| InventoryError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let doc: FileDoc = toml::from_str(text).map_err(|e| invalid(e.to_string().trim().into()))?;
    let port_ok = |key: &str, p: Option<u16>| match p {
        Some(0) => Err(invalid(format!("{key}: port must be 1-65535"))),
        _ => Ok(()),
    };
    port_ok("defaults.port", doc.defaults.port)?;
    let mut hosts = BTreeMap::new();
    for (name, h) in doc.hosts {
        port_ok(&format!("hosts.{name}.port"), h.port)?;
        if let Some(address) = &h.address {
            check_address(address).map_err(|e| invalid(format!("hosts.{name}.address: {e}")))?;
        }
        let macs = match h.mac {
            None => Vec::new(),
            Some(OneOrMany::One(m)) => vec![m],
            Some(OneOrMany::Many(ms)) => ms,
        }
        .iter()
        .map(|m| MacAddr::parse(m).map_err(|e| invalid(format!("hosts.{name}.mac: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
        hosts.insert(
            name.clone(),
            HostEntry {
                address_source: h.address.as_ref().map(|_| format!("hosts.{name}.address")),
                name,
                address: h.address,
                port: h.port,
                macs,
                tls_name: h.tls_name,
            },
        );
    }
    let groups = doc
        .groups
        .into_iter()
        .map(|(g, members)| {
            let members = members
                .into_iter()
                .map(|m| match m.strip_prefix('@') {
                    Some(group) => Member::Group(group.to_owned()),
                    None => Member::Host(m),
                })
                .collect();
            (g, members)
        })
        .collect();
    Ok(Inventory::from_parts(
        path,
        Format::Toml,
        doc.defaults.port.unwrap_or(DEFAULT_PORT),
        hosts,
        groups,
    ))
}

/// Why an address is not an IP address or a DNS name without a port.
#[derive(Debug, thiserror::Error)]
pub(super) enum AddressError {
    #[error("{0:?}: give the address alone and the port in `port`")]
    WithPort(String),
    #[error("{0:?} is neither an IP address nor a DNS name")]
    NotAnAddress(String),
}

/// An address is an IP address or a DNS name, without a port.
pub(super) fn check_address(address: &str) -> Result<(), AddressError> {
    if address.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    if address.contains(':') {
        return Err(AddressError::WithPort(address.to_owned()));
    }
    let dns_ok = !address.is_empty()
        && address.len() <= 253
        && address
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if dns_ok {
        Ok(())
    } else {
        Err(AddressError::NotAnAddress(address.to_owned()))
    }
}

/// A host to add to the file.
#[derive(Debug, Clone)]
pub struct NewHost {
    /// Its name.
    pub name: String,
    /// Its address.
    pub address: String,
    /// Its port, when not the default.
    pub port: Option<u16>,
    /// The name its certificate is valid for, when different from the address.
    pub tls_name: Option<String>,
    /// A comment line written above the entry.
    pub comment: Option<String>,
}

fn read_document(path: &Path) -> Result<toml_edit::DocumentMut, InventoryError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(InventoryError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    text.parse::<toml_edit::DocumentMut>()
        .map_err(|e| InventoryError::Invalid {
            path: path.to_path_buf(),
            message: e.to_string().trim().to_owned(),
        })
}

fn write_document(path: &Path, doc: &toml_edit::DocumentMut) -> Result<(), InventoryError> {
    let text = doc.to_string();
    // Never leave an inventory that does not load.
    Inventory::from_toml(&text, path)?;
    lightsout_pki::ca::write_file(path, text.as_bytes(), false).map_err(|e| {
        InventoryError::Invalid {
            path: path.to_path_buf(),
            message: format!("cannot write: {e}"),
        }
    })
}

fn hosts_table<'d>(
    doc: &'d mut toml_edit::DocumentMut,
    path: &Path,
) -> Result<&'d mut toml_edit::Table, InventoryError> {
    let item = doc.entry("hosts").or_insert_with(|| {
        let mut t = toml_edit::Table::new();
        t.set_implicit(true);
        toml_edit::Item::Table(t)
    });
    item.as_table_mut().ok_or_else(|| InventoryError::Invalid {
        path: path.to_path_buf(),
        message: "`hosts` must be a table of [hosts.NAME] entries".into(),
    })
}

/// Sets the `mac` of existing hosts (one MAC as a string, several as a list), leaving
/// everything else in the file as it was.
///
/// # Errors
/// The file cannot be read, parsed or written, or a host is not in it.
pub fn record_macs(path: &Path, updates: &[(String, Vec<MacAddr>)]) -> Result<(), InventoryError> {
    let mut doc = read_document(path)?;
    let hosts = hosts_table(&mut doc, path)?;
    for (name, macs) in updates {
        let entry = hosts
            .get_mut(name)
            .and_then(toml_edit::Item::as_table_like_mut)
            .ok_or_else(|| InventoryError::Invalid {
                path: path.to_path_buf(),
                message: format!("host {name:?} is not a [hosts.{name}] entry"),
            })?;
        let value: toml_edit::Value = match macs.as_slice() {
            [one] => one.to_string().into(),
            many => many
                .iter()
                .map(ToString::to_string)
                .collect::<toml_edit::Array>()
                .into(),
        };
        entry.insert("mac", toml_edit::Item::Value(value));
    }
    write_document(path, &doc)
}

/// Adds hosts (creating the file if needed), and with `group` puts them in that group
/// (created if needed, its other members kept). Hosts whose name is taken are left alone.
///
/// # Errors
/// The file cannot be read, parsed or written, or `groups` or the group is not a list.
pub fn add_hosts(path: &Path, new: &[NewHost], group: Option<&str>) -> Result<(), InventoryError> {
    let mut doc = read_document(path)?;
    let hosts = hosts_table(&mut doc, path)?;
    let mut added = Vec::new();
    for h in new {
        if hosts.contains_key(&h.name) {
            continue;
        }
        added.push(h.name.clone());
        let mut t = toml_edit::Table::new();
        t.insert("address", toml_edit::value(h.address.clone()));
        if let Some(port) = h.port {
            t.insert("port", toml_edit::value(i64::from(port)));
        }
        if let Some(tls) = &h.tls_name {
            t.insert("tls_name", toml_edit::value(tls.clone()));
        }
        if let Some(comment) = &h.comment {
            let clean: String = comment.chars().filter(|c| !c.is_control()).collect();
            t.decor_mut().set_prefix(format!("\n# {clean}\n"));
        }
        hosts.insert(&h.name, toml_edit::Item::Table(t));
    }
    if let Some(group) = group.filter(|_| !added.is_empty()) {
        let invalid = |message: String| InventoryError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let groups = doc
            .entry("groups")
            .or_insert_with(|| toml_edit::Item::Table(toml_edit::Table::new()))
            .as_table_like_mut()
            .ok_or_else(|| invalid("`groups` must be a table of NAME = [members]".into()))?;
        let members = groups
            .entry(group)
            .or_insert(toml_edit::Item::Value(toml_edit::Array::new().into()))
            .as_array_mut()
            .ok_or_else(|| invalid(format!("group {group:?} must be a list of members")))?;
        for name in added {
            if !members.iter().any(|m| m.as_str() == Some(name.as_str())) {
                members.push(name);
            }
        }
    }
    write_document(path, &doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_loads() {
        let text = include_str!("../../../inventory.example.toml");
        let inv = Inventory::from_toml(text, Path::new("inventory.example.toml")).unwrap();
        assert!(inv.hosts().count() >= 3);
        assert!(!inv.groups().is_empty());
    }

    #[test]
    fn bad_values_name_their_key() {
        for (text, needle) in [
            ("[hosts.a]\nmac = \"nope\"\n", "hosts.a.mac"),
            ("[hosts.a]\nport = 0\n", "hosts.a.port"),
            ("[hosts.a]\naddress = \"10.0.0.1:7474\"\n", "port in `port`"),
            ("[hosts.a]\nadress = \"10.0.0.1\"\n", "adress"),
            ("[defaults]\nport = 70000\n", "port"),
            ("[hosts.\"bad name\"]\n", "invalid host name"),
        ] {
            let err = Inventory::from_toml(text, Path::new("x.toml"))
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("x.toml: ") && err.contains(needle),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn edits_preserve_the_rest_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inventory.toml");
        let original = "# Room 101\n[hosts.lab-01] # front row\naddress = \"10.0.0.21\"\n\n[hosts.lab-02]\naddress = \"10.0.0.22\"\nmac = \"52:54:00:00:00:99\"\n\n[groups]\nroom = [\"lab-01\", \"lab-02\"] # all of it\n";
        std::fs::write(&path, original).unwrap();
        let mac = |s: &str| MacAddr::parse(s).unwrap();
        record_macs(
            &path,
            &[
                ("lab-01".into(), vec![mac("52:54:00:00:00:21")]),
                (
                    "lab-02".into(),
                    vec![mac("52:54:00:00:00:22"), mac("52:54:00:00:01:22")],
                ),
            ],
        )
        .unwrap();
        add_hosts(
            &path,
            &[
                NewHost {
                    name: "lab-03".into(),
                    address: "10.0.0.23".into(),
                    port: Some(7500),
                    tls_name: Some("lab-03".into()),
                    comment: Some("found by discovery".into()),
                },
                NewHost {
                    name: "lab-01".into(),
                    address: "10.9.9.9".into(),
                    port: None,
                    tls_name: None,
                    comment: None,
                },
            ],
            None,
        )
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        for kept in ["# Room 101", "# front row", "# all of it"] {
            assert!(text.contains(kept), "{text}");
        }
        assert!(
            !text.contains("10.9.9.9"),
            "existing hosts are not replaced: {text}"
        );
        let inv = Inventory::load(&path).unwrap();
        assert_eq!(inv.host("lab-01").unwrap().macs, [mac("52:54:00:00:00:21")]);
        assert_eq!(inv.host("lab-02").unwrap().macs.len(), 2);
        let new = inv.host("lab-03").unwrap();
        assert_eq!(
            (new.address.as_deref(), new.port),
            (Some("10.0.0.23"), Some(7500))
        );
        assert!(
            text.contains("# found by discovery\n[hosts.lab-03]"),
            "{text}"
        );
        // A new file is created.
        let fresh = dir.path().join("new.toml");
        add_hosts(
            &fresh,
            &[NewHost {
                name: "a".into(),
                address: "10.0.0.1".into(),
                port: None,
                tls_name: None,
                comment: None,
            }],
            None,
        )
        .unwrap();
        assert_eq!(Inventory::load(&fresh).unwrap().hosts().count(), 1);
        // Unknown hosts are an error and leave the file untouched.
        let before = std::fs::read_to_string(&path).unwrap();
        assert!(record_macs(&path, &[("ghost".into(), vec![mac("52:54:00:00:00:01")])]).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
    }

    #[test]
    fn new_hosts_join_a_group_created_or_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inventory.toml");
        std::fs::write(
            &path,
            "[hosts.lab-01]\naddress = \"10.0.0.21\"\n\n[groups]\nroom = [\"lab-01\"] # front\n",
        )
        .unwrap();
        let host = |name: &str, address: &str| NewHost {
            name: name.into(),
            address: address.into(),
            port: None,
            tls_name: None,
            comment: None,
        };
        add_hosts(&path, &[host("lab-02", "10.0.0.22")], Some("room")).unwrap();
        add_hosts(
            &path,
            &[host("lab-03", "10.0.0.23"), host("lab-01", "10.9.9.9")],
            Some("found"),
        )
        .unwrap();
        let inv = Inventory::load(&path).unwrap();
        let members = |expr: &str| -> Vec<String> {
            inv.resolve(&[expr.to_owned()])
                .unwrap()
                .into_iter()
                .filter_map(|h| h.name)
                .collect()
        };
        assert_eq!(members("@room"), ["lab-01", "lab-02"]);
        assert_eq!(
            members("@found"),
            ["lab-03"],
            "a host already in the file is not new"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("# front"), "{text}");
        // A group that is not a list is an error naming it, and the file stays as it was.
        std::fs::write(&path, "[groups.odd]\nx = 1\n").unwrap();
        let err = add_hosts(&path, &[host("lab-04", "10.0.0.24")], Some("odd")).unwrap_err();
        assert!(
            err.to_string().contains("group \"odd\" must be a list"),
            "{err}"
        );
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "[groups.odd]\nx = 1\n"
        );
    }
}
