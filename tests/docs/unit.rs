//! The agent's systemd unit as the package ships it: found anywhere in the extracted root
//! (its directory is the packaging's business), and read for what `systemctl enable --now`
//! and `systemctl reload` would do with it. A directive that changes how the agent runs and
//! that is not reproduced here is an error naming it, so the stand-in never silently differs
//! from systemd.

use std::path::{Path, PathBuf};

/// The unit file's name.
pub const NAME: &str = "lightsout-agent.service";

/// What the unit says about starting, reloading and preparing the agent.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Unit {
    /// Where it was found, inside the machine's root.
    pub path: PathBuf,
    /// `ExecStart=`, split into words.
    pub exec_start: Vec<String>,
    /// `ExecReload=`, split into words (`$MAINPID` left in).
    pub exec_reload: Vec<String>,
    /// `Environment=` assignments.
    pub environment: Vec<(String, String)>,
    /// Directories systemd creates before the start (`StateDirectory=` under `/var/lib`,
    /// `ConfigurationDirectory=` under `/etc`, `LogsDirectory=` under `/var/log`), with modes.
    pub directories: Vec<(PathBuf, String)>,
    /// `UMask=`.
    pub umask: Option<String>,
}

/// Directives that would change how the agent runs and that the stand-in does not reproduce.
const NOT_REPRODUCED: &[&str] = &[
    "User",
    "Group",
    "DynamicUser",
    "ExecStartPre",
    "ExecStartPost",
    "EnvironmentFile",
    "WorkingDirectory",
    "RootDirectory",
    "RuntimeDirectory",
    "CacheDirectory",
];

/// The unit file in `root`, wherever the package put it.
///
/// # Errors
/// None, or more than one, is there.
pub fn find(root: &Path) -> Result<PathBuf, String> {
    let mut found = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(path);
            } else if entry.file_name() == NAME {
                found.push(path);
            }
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(format!(
            "no {NAME} in the package's files under {}",
            root.display()
        )),
        _ => Err(format!("several {NAME} in the package's files: {found:?}")),
    }
}

/// Reads the unit at `path`.
///
/// # Errors
/// It cannot be read, has no `ExecStart=`/`ExecReload=`, uses quoting, or uses a directive
/// in [`NOT_REPRODUCED`].
pub fn read(path: &Path) -> Result<Unit, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut unit = parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    unit.path = path.to_path_buf();
    Ok(unit)
}

/// Parses a unit's text (the `[Service]` section).
///
/// # Errors
/// As [`read`].
pub fn parse(text: &str) -> Result<Unit, String> {
    let mut unit = Unit::default();
    let mut section = "";
    let mut modes: Vec<(String, String)> = Vec::new();
    let mut dirs: Vec<(String, &str)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            section = line;
            continue;
        }
        if section != "[Service]" {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("line {}: not KEY=VALUE: {line}", i + 1));
        };
        let (key, value) = (key.trim(), value.trim());
        if NOT_REPRODUCED.contains(&key) {
            return Err(format!(
                "line {}: {key}= is not reproduced by the docs test's stand-in for systemd \
                 (tests/docs/unit.rs): teach it, or the README's procedures are not tested as \
                 the unit runs them",
                i + 1
            ));
        }
        let words = || -> Result<Vec<String>, String> {
            if value.contains(['"', '\'', '\\']) {
                return Err(format!(
                    "line {}: {key}= uses quoting, which the docs test does not parse",
                    i + 1
                ));
            }
            Ok(value.split_whitespace().map(str::to_owned).collect())
        };
        match key {
            "ExecStart" => {
                let mut w = words()?;
                // Prefixes (`-`, `@`, `+`, `!`, `:`) change how systemd runs it: refuse them
                // rather than pretend.
                if w.first()
                    .is_some_and(|p| p.starts_with(['-', '@', '+', '!', ':']))
                {
                    return Err(format!(
                        "line {}: ExecStart= with a prefix is not reproduced",
                        i + 1
                    ));
                }
                unit.exec_start = std::mem::take(&mut w);
            }
            "ExecReload" => unit.exec_reload = words()?,
            "Environment" => {
                for assignment in words()? {
                    let Some((k, v)) = assignment.split_once('=') else {
                        return Err(format!("line {}: Environment={assignment}", i + 1));
                    };
                    unit.environment.push((k.to_owned(), v.to_owned()));
                }
            }
            "StateDirectory" => dirs.extend(words()?.into_iter().map(|d| (d, "/var/lib"))),
            "ConfigurationDirectory" => dirs.extend(words()?.into_iter().map(|d| (d, "/etc"))),
            "LogsDirectory" => dirs.extend(words()?.into_iter().map(|d| (d, "/var/log"))),
            "StateDirectoryMode" | "ConfigurationDirectoryMode" | "LogsDirectoryMode" => {
                modes.push((key.trim_end_matches("Mode").to_owned(), value.to_owned()));
            }
            "UMask" => unit.umask = Some(value.to_owned()),
            _ => {}
        }
    }
    for (dir, base) in dirs {
        let kind = match base {
            "/var/lib" => "StateDirectory",
            "/etc" => "ConfigurationDirectory",
            _ => "LogsDirectory",
        };
        let mode = modes
            .iter()
            .find(|(k, _)| k == kind)
            .map_or_else(|| "0755".to_owned(), |(_, m)| m.clone());
        unit.directories.push((Path::new(base).join(dir), mode));
    }
    if unit.exec_start.is_empty() {
        return Err("no ExecStart= in [Service]".into());
    }
    if unit.exec_reload.is_empty() {
        return Err("no ExecReload= in [Service]: `systemctl reload` would fail".into());
    }
    Ok(unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNIT: &str = "\
[Unit]
Description=x
[Service]
Type=exec
Environment=LIGHTSOUT_HOME=/var/lib/lightsout
ExecStart=/usr/bin/lightsout-agent --config /etc/lightsout/agent.toml
ExecReload=/bin/kill -HUP $MAINPID
StateDirectory=lightsout
StateDirectoryMode=0700
LogsDirectory=lightsout
UMask=0077
ProtectSystem=strict
[Install]
WantedBy=multi-user.target
";

    #[test]
    fn the_unit_says_how_to_start_reload_and_prepare() {
        let unit = parse(UNIT).unwrap();
        assert_eq!(
            unit.exec_start,
            [
                "/usr/bin/lightsout-agent",
                "--config",
                "/etc/lightsout/agent.toml"
            ]
        );
        assert_eq!(unit.exec_reload, ["/bin/kill", "-HUP", "$MAINPID"]);
        assert_eq!(
            unit.environment,
            [("LIGHTSOUT_HOME".to_owned(), "/var/lib/lightsout".to_owned())]
        );
        assert_eq!(
            unit.directories,
            [
                (PathBuf::from("/var/lib/lightsout"), "0700".to_owned()),
                (PathBuf::from("/var/log/lightsout"), "0755".to_owned()),
            ]
        );
        assert_eq!(unit.umask.as_deref(), Some("0077"));
    }

    #[test]
    fn what_the_stand_in_cannot_reproduce_is_refused_by_name() {
        for (extra, expected) in [
            ("User=lightsout\n", "User="),
            ("RuntimeDirectory=lightsout\n", "RuntimeDirectory="),
            ("ExecStartPre=/bin/true\n", "ExecStartPre="),
        ] {
            let text = UNIT.replace("[Install]", &format!("{extra}[Install]"));
            let err = parse(&text).unwrap_err();
            assert!(err.contains(expected), "{err}");
        }
        let err = parse(&UNIT.replace("ExecStart=/usr", "ExecStart=-/usr")).unwrap_err();
        assert!(err.contains("prefix"), "{err}");
        let err = parse(&UNIT.replace("ExecReload=/bin/kill -HUP $MAINPID\n", "")).unwrap_err();
        assert!(err.contains("ExecReload"), "{err}");
        let err = parse(&UNIT.replace(
            "Environment=LIGHTSOUT_HOME=/var/lib/lightsout",
            "Environment=\"A=b c\"",
        ))
        .unwrap_err();
        assert!(err.contains("quoting"), "{err}");
    }

    #[test]
    fn the_unit_is_found_wherever_the_package_puts_it() {
        let root = tempfile::tempdir().unwrap();
        assert!(
            find(root.path())
                .unwrap_err()
                .contains("no lightsout-agent")
        );
        let dir = root.path().join("usr/lib/systemd/system");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(NAME), UNIT).unwrap();
        assert_eq!(find(root.path()).unwrap(), dir.join(NAME));
        let other = root.path().join("lib/systemd/system");
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(other.join(NAME), UNIT).unwrap();
        assert!(find(root.path()).unwrap_err().contains("several"));
    }
}
