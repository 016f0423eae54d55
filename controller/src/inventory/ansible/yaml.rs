//! Ansible's YAML inventory format, read by the rules of Ansible's `yaml` inventory plugin,
//! and the YAML (or JSON) files of `host_vars/` and `group_vars/`.
//!
//! ```yaml
//! all:                    # top-level keys are groups
//!   hosts:
//!     gateway.example.edu:
//!   children:
//!     room_a:
//!       hosts:
//!         lab-[01:20]:    # ranges and host:port as in the INI format
//!           lightsout_mac: 52:54:00:00:00:01
//!       vars:
//!         lightsout_port: 7500
//! ```
//!
//! A group is a mapping of `hosts`, `children` and `vars` (or empty); a host is a mapping of
//! variables (or empty). Other keys of a group are ignored, as Ansible ignores them (with a
//! warning). A file whose top level has `plugin:` configures an Ansible inventory plugin,
//! which lightsout does not run.

use std::path::Path;

use serde_json::{Map, Value};

use super::{AnsibleError, Model, Var, Vars, split_port};

/// Parses a YAML document (YAML 1.2, so JSON too) into a JSON value.
fn parse(path: &Path, text: &str) -> Result<Value, AnsibleError> {
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_saphyr::from_str(text).map_err(|e| AnsibleError::Yaml {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Parses a YAML inventory into `model`.
///
/// # Errors
/// [`AnsibleError::Yaml`] or [`AnsibleError::Shape`] naming the file (and the group or host).
pub(super) fn parse_into(model: &mut Model, path: &Path, text: &str) -> Result<(), AnsibleError> {
    let shown = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let shape = |problem: String| AnsibleError::Shape {
        path: path.to_path_buf(),
        problem,
    };
    let groups = match parse(path, text)? {
        Value::Null => return Ok(()),
        Value::Object(groups) => groups,
        _ => {
            return Err(shape(
                "the top level of a YAML inventory is a mapping of groups (all: …)".into(),
            ));
        }
    };
    if groups.contains_key("plugin") {
        return Err(shape(
            "a `plugin:` file configures an Ansible inventory plugin, which lightsout does not run; list the hosts in an INI or YAML inventory".into(),
        ));
    }
    let reader = Reader {
        shown: &shown,
        shape: &shape,
    };
    for (name, data) in &groups {
        reader.group(model, name, data)?;
    }
    Ok(())
}

struct Reader<'a> {
    shown: &'a str,
    shape: &'a dyn Fn(String) -> AnsibleError,
}

impl Reader<'_> {
    fn group(&self, model: &mut Model, name: &str, data: &Value) -> Result<(), AnsibleError> {
        check_group(name).map_err(|e| (self.shape)(e.to_string()))?;
        model.add_group(name);
        let data = match data {
            Value::Null => return Ok(()),
            Value::Object(data) => data,
            other => {
                return Err((self.shape)(format!(
                    "group {name:?} is {}, not a mapping of hosts, children and vars",
                    kind(other)
                )));
            }
        };
        for section in ["vars", "children", "hosts"] {
            let Some(value) = data.get(section) else {
                continue;
            };
            let entries: Map<String, Value> = match value {
                Value::Null => continue,
                // Ansible accepts a single name as a one-entry mapping.
                Value::String(s) => Map::from_iter([(s.clone(), Value::Null)]),
                Value::Object(m) => m.clone(),
                other => {
                    return Err((self.shape)(format!(
                        "the {section:?} of group {name:?} is {}; it must be a mapping",
                        kind(other)
                    )));
                }
            };
            match section {
                "vars" => {
                    for (key, value) in entries {
                        model.set_group_var(
                            name,
                            &key,
                            Var {
                                value,
                                from: format!("{} (vars of group {name})", self.shown),
                            },
                        );
                    }
                }
                "children" => {
                    for (child, child_data) in &entries {
                        self.group(model, child, child_data)?;
                        model.add_child(name, child);
                    }
                }
                _ => {
                    for (pattern, host_data) in &entries {
                        self.hosts(model, name, pattern, host_data)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn hosts(
        &self,
        model: &mut Model,
        group: &str,
        pattern: &str,
        data: &Value,
    ) -> Result<(), AnsibleError> {
        let from = format!("{} (host {pattern} in group {group})", self.shown);
        let mut vars = Vars::new();
        match data {
            Value::Null => {}
            Value::Object(map) => {
                for (key, value) in map {
                    vars.insert(
                        key.clone(),
                        Var {
                            value: value.clone(),
                            from: from.clone(),
                        },
                    );
                }
            }
            other => {
                return Err((self.shape)(format!(
                    "host {pattern:?} in group {group:?} is {}; its variables must be a mapping (or nothing)",
                    kind(other)
                )));
            }
        }
        let (host_pattern, port) = split_port(pattern);
        if let Some(port) = port {
            let value = port
                .parse::<u64>()
                .map_or_else(|_| Value::from(port), Value::from);
            vars.insert("ansible_port".to_owned(), Var { value, from });
        }
        let names = if host_pattern.parse::<std::net::Ipv6Addr>().is_ok() {
            vec![host_pattern.to_owned()]
        } else {
            super::ini::expand_ranges(host_pattern).map_err(|e| (self.shape)(e.to_string()))?
        };
        for name in names {
            crate::inventory::check_name("host", &name).map_err(|e| (self.shape)(e.to_string()))?;
            model.add_host(group, &name, vars.clone());
        }
        Ok(())
    }
}

fn check_group(name: &str) -> Result<(), crate::inventory::NameError> {
    if name == "all" || name == "ungrouped" {
        return Ok(());
    }
    crate::inventory::check_name("group", name)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "empty",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// The variables of one `host_vars/` or `group_vars/` file: a mapping (an empty file is none).
///
/// # Errors
/// Not YAML, or not a mapping.
pub(super) fn parse_vars_file(path: &Path, text: &str) -> Result<Map<String, Value>, AnsibleError> {
    match parse(path, text)? {
        Value::Null => Ok(Map::new()),
        Value::Object(map) => Ok(map),
        other => Err(AnsibleError::Shape {
            path: path.to_path_buf(),
            problem: format!(
                "a variables file is a mapping of names to values, not {}",
                kind(&other)
            ),
        }),
    }
}
