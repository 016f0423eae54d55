//! Running one procedure on one place, command by command: through the substitution table's
//! rule when one matches, as written otherwise; each command's result goes to the report.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use lightsout_tests::AgentProcess;
use lightsout_tests::debs::{Debs, extract};

use crate::commands;
use crate::lab::Machine;
use crate::rules::{self, Action};
use crate::unit;

/// What the whole run printed, kept to be shown again with a failure.
#[derive(Debug, Default)]
pub struct Report {
    text: String,
}

impl Report {
    /// Prints `line` and keeps it.
    pub fn line(&mut self, line: &str) {
        println!("{line}");
        self.text.push_str(line);
        self.text.push('\n');
    }

    /// Everything so far.
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// Where a procedure runs.
pub enum Place<'a> {
    /// This checkout, with extra environment.
    Checkout {
        dir: PathBuf,
        env: Vec<(String, String)>,
    },
    /// A machine of the lab.
    Machine(&'a mut Machine),
}

impl Place<'_> {
    fn name(&self) -> String {
        match self {
            Place::Checkout { .. } => "checkout".into(),
            Place::Machine(m) => m.name.clone(),
        }
    }

    fn work(&self) -> PathBuf {
        match self {
            Place::Checkout { dir, .. } => dir.clone(),
            Place::Machine(m) => m.work(),
        }
    }

    fn shell(&self, script: &str) -> Command {
        match self {
            Place::Checkout { dir, env } => {
                let mut cmd = Command::new("sh");
                cmd.args(["-e", "-c", script])
                    .current_dir(dir)
                    .envs(env.iter().map(|(k, v)| (k, v)));
                cmd
            }
            Place::Machine(m) => m.shell(script),
        }
    }

    fn machine(&mut self, rule: &str) -> Result<&mut Machine, String> {
        match self {
            Place::Machine(m) => Ok(m),
            Place::Checkout { .. } => Err(format!(
                "the rule for `{rule}` needs a lab machine, and this procedure runs in the checkout"
            )),
        }
    }
}

/// The packages, where a rule needs them.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    /// The Debian packages (`packaging/build-debs`).
    pub debs: Option<&'static Debs>,
}

/// Runs the procedure `name` (its text `body`) on `place`, command by command, and returns
/// what the commands printed on stdout.
///
/// # Errors
/// A command failed, had no rule and could not run, or the block ends mid-command; the
/// message names the command, the place and what it printed.
pub fn procedure(
    name: &str,
    body: &str,
    place: &mut Place<'_>,
    ctx: Context,
    report: &mut Report,
) -> Result<String, String> {
    report.line(&format!("docs: procedure {name} on {}", place.name()));
    let mut stdout = String::new();
    for command in commands::split(body).map_err(|e| format!("procedure {name}: {e}"))? {
        let started = Instant::now();
        let shown = command.trim_end().replace('\n', "\n        ");
        let result = match commands::one_line(&command).map(|l| rules::find(&l)) {
            Some((_, Some(rule), rest)) => apply(rule.action, &rest, place, ctx)
                .map(|detail| format!("(substituted, see the table)\n{detail}")),
            _ => as_written(&command, place),
        };
        let secs = started.elapsed().as_secs_f64();
        match result {
            Ok(detail) => {
                report.line(&format!("  ok {secs:5.1}s  {shown}"));
                for line in detail.lines().filter(|l| !l.trim().is_empty()).take(12) {
                    report.line(&format!("        | {line}"));
                }
                stdout.push_str(&detail);
            }
            Err(e) => {
                report.line(&format!("  FAILED {secs:.1}s  {shown}"));
                return Err(format!(
                    "procedure {name} on {}: `{}` failed:\n{e}",
                    place.name(),
                    command.trim_end()
                ));
            }
        }
    }
    Ok(stdout)
}

/// Runs `command` as written; its stdout on success.
fn as_written(command: &str, place: &Place<'_>) -> Result<String, String> {
    let out = place
        .shell(command)
        .output()
        .map_err(|e| format!("cannot run sh: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "no rule in the substitution table, run as written: {}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn apply(
    action: Action,
    rest: &str,
    place: &mut Place<'_>,
    ctx: Context,
) -> Result<String, String> {
    match action {
        Action::NotRun => Ok("not run".into()),
        Action::CheckCargoDeb => {
            let out = Command::new("cargo").args(["deb", "--version"]).output();
            match out {
                Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).into_owned()),
                _ if std::env::var_os("LIGHTSOUT_DEB_DIR").is_some() => Ok(
                    "cargo-deb is not installed here; the packages come from LIGHTSOUT_DEB_DIR"
                        .into(),
                ),
                _ => Err("cargo-deb is not installed (`cargo deb --version` fails)".into()),
            }
        }
        Action::CopyDebs => {
            let debs = ctx.debs.ok_or("no packages")?;
            let dir = place.work().join("target/debian");
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            let mut copied = String::new();
            for deb in [&debs.agent, &debs.controller] {
                let name = deb.file_name().ok_or("no file name")?;
                std::fs::copy(deb, dir.join(name)).map_err(|e| e.to_string())?;
                let _ = writeln!(copied, "target/debian/{}", name.to_string_lossy());
            }
            Ok(copied)
        }
        Action::ExtractDebs => {
            let machine = place.machine(rest)?;
            extract_debs(machine, rest)
        }
        Action::StartUnit => start_unit(place.machine(rest)?),
        Action::ReloadUnit => reload_unit(place.machine(rest)?),
    }
}

/// `dpkg -i FILE...`: each file (globs expanded in the machine's directory) extracted into
/// its root, and the root's `etc/` and `var/` copied onto the machine's `/etc` and `/var`.
fn extract_debs(machine: &Machine, rest: &str) -> Result<String, String> {
    let mut files = Vec::new();
    for arg in rest.split_whitespace().skip(2) {
        let matched = expand(&machine.work(), arg)?;
        if matched.is_empty() {
            return Err(format!(
                "dpkg -i: no file matches {arg} in {}",
                machine.work().display()
            ));
        }
        files.extend(matched);
    }
    let mut detail = String::new();
    for deb in &files {
        extract(deb, &machine.root());
        let _ = writeln!(detail, "extracted {}", deb.display());
    }
    for top in ["etc", "var"] {
        let dir = machine.root().join(top);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            machine.run(
                "cp",
                &["-a", &path.display().to_string(), &format!("/{top}/")],
            )?;
            let _ = writeln!(
                detail,
                "copied onto /{top}/{}",
                entry.file_name().to_string_lossy()
            );
        }
    }
    // What dpkg does next: the package's own postinst, `configure` (it creates the service's
    // home, which --check-config opens). Its systemd parts find no systemd here and do nothing.
    for deb in &files {
        let control = machine.work().join(format!(
            "control-{}",
            deb.file_stem().unwrap_or_default().to_string_lossy()
        ));
        let status = std::process::Command::new("dpkg-deb")
            .arg("-e")
            .arg(deb)
            .arg(&control)
            .status()
            .map_err(|e| format!("dpkg-deb -e: {e}"))?;
        if !status.success() {
            return Err(format!("dpkg-deb -e {} failed", deb.display()));
        }
        let postinst = control.join("postinst");
        if postinst.exists() {
            machine.run("sh", &[&postinst.display().to_string(), "configure"])?;
            let _ = writeln!(detail, "ran {} configure", postinst.display());
        }
    }
    Ok(detail)
}

/// The files in `dir` that `arg` names (a path relative to `dir`, `*` and `?` allowed in its
/// last part).
fn expand(dir: &Path, arg: &str) -> Result<Vec<PathBuf>, String> {
    let path = dir.join(arg);
    let parent = path.parent().ok_or("no parent")?.to_path_buf();
    let pattern = path
        .file_name()
        .ok_or("no file name")?
        .to_string_lossy()
        .into_owned();
    let mut found: Vec<PathBuf> = std::fs::read_dir(&parent)
        .map_err(|e| format!("{}: {e}", parent.display()))?
        .flatten()
        .filter(|e| glob_match(&pattern, &e.file_name().to_string_lossy()))
        .map(|e| e.path())
        .collect();
    found.sort();
    Ok(found)
}

/// Whether `name` matches the shell pattern `pattern` (`*`, `?`; no brackets).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some('*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some('?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

/// `systemctl enable --now lightsout-agent`, as systemd would run the packaged unit, with
/// `--dry-run` added.
fn start_unit(machine: &mut Machine) -> Result<String, String> {
    if machine.agent.is_some() {
        return Err("the agent is already running on this machine".into());
    }
    let unit = unit::read(&unit::find(&machine.root())?)?;
    let mut detail = format!(
        "unit {}\n",
        unit.path
            .strip_prefix(machine.root())
            .unwrap_or(&unit.path)
            .display()
    );
    for (dir, mode) in &unit.directories {
        machine.run("install", &["-d", "-m", mode, &dir.display().to_string()])?;
        let _ = writeln!(detail, "created {} (mode {mode})", dir.display());
    }
    let (program, args) = unit.exec_start.split_first().ok_or("empty ExecStart")?;
    // The package's binary, from the machine's root (where `dpkg -i` put it).
    let binary = machine.root().join(program.trim_start_matches('/'));
    if !binary.exists() {
        return Err(format!(
            "ExecStart names {program}, which the package did not install ({} is missing)",
            binary.display()
        ));
    }
    let umask = unit.umask.clone().unwrap_or_else(|| "0022".into());
    let mut cmd = machine.command_with("sh", &unit.environment);
    cmd.args(["-c", &format!("umask {umask} && exec \"$0\" \"$@\"")])
        .arg(&binary);
    // SAFETY: --dry-run is what makes this agent unable to run any power action.
    let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
    all.push("--dry-run");
    let agent = AgentProcess::start_as_configured(cmd, &all);
    let _ = writeln!(
        detail,
        "ExecStart {} --dry-run: pid {}, listening on {}",
        unit.exec_start.join(" "),
        agent.child.id(),
        agent.addr
    );
    machine.agent = Some(agent);
    Ok(detail)
}

/// How many reloads the agent has finished (one log line each, success or failure).
pub fn reloads(logs: &str) -> usize {
    logs.matches("SIGHUP: reload").count()
}

/// `systemctl reload lightsout-agent`: the unit's `ExecReload` with `$MAINPID`, then the wait
/// for the agent to say it reloaded (systemd does not wait for that; a person typing the next
/// command is slower than the agent).
fn reload_unit(machine: &mut Machine) -> Result<String, String> {
    let unit = unit::read(&unit::find(&machine.root())?)?;
    let agent = machine
        .agent
        .as_ref()
        .ok_or("systemctl reload before the agent was started")?;
    let pid = agent.child.id().to_string();
    let before = reloads(&agent.logs());
    let argv: Vec<String> = unit
        .exec_reload
        .iter()
        .map(|w| w.replace("${MAINPID}", &pid).replace("$MAINPID", &pid))
        .collect();
    let (program, args) = argv.split_first().ok_or("empty ExecReload")?;
    let status = Command::new(program)
        .args(args)
        .status()
        .map_err(|e| format!("{program}: {e}"))?;
    if !status.success() {
        return Err(format!("ExecReload {}: {status}", argv.join(" ")));
    }
    let logs = agent.wait_for_logs("the end of the reload", |l| reloads(l) > before);
    let last = logs
        .lines()
        .rfind(|l| l.contains("SIGHUP: reload"))
        .unwrap_or_default()
        .to_owned();
    if last.contains("failed") {
        return Err(format!("the agent's reload failed: {last}"));
    }
    Ok(format!("ExecReload {}\nagent: {last}", argv.join(" ")))
}

/// Copies into `to` the files under `from` (the laptop's directory) that `body` names by file
/// name or glob: what the README says to carry to a machine. Returns their names.
pub fn carry(from: &Path, to: &Path, body: &str) -> Result<Vec<String>, String> {
    let words: Vec<&str> = body
        .split(|c: char| c.is_whitespace() || "'\";|&<>".contains(c))
        .filter(|w| !w.is_empty())
        .map(|w| w.rsplit('/').next().unwrap_or(w))
        .collect();
    let mut carried = Vec::new();
    let mut dirs = vec![from.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .flatten()
        {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(path);
            } else if words.iter().any(|w| glob_match(w, &name)) {
                std::fs::copy(&path, to.join(&name)).map_err(|e| e.to_string())?;
                carried.push(name);
            }
        }
    }
    carried.sort();
    Ok(carried)
}

/// `lightsout inventory list --json` on the laptop: the lab's hosts and their addresses, as
/// the README's inventory says.
pub fn inventory(laptop: &Machine) -> Result<Vec<(String, String)>, String> {
    let out: Output = laptop
        .shell("lightsout inventory list --json")
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "lightsout inventory list: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let doc: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("inventory list --json: {e}"))?;
    let hosts = doc["hosts"].as_array().ok_or("inventory list: no hosts")?;
    hosts
        .iter()
        .map(|h| {
            Ok((
                h["name"]
                    .as_str()
                    .ok_or("a host without a name")?
                    .to_owned(),
                h["address"]
                    .as_str()
                    .ok_or("a host without an address")?
                    .to_owned(),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_as_the_shell_does() {
        assert!(glob_match(
            "lightsout-agent_*.deb",
            "lightsout-agent_0.1.0_amd64.deb"
        ));
        assert!(!glob_match(
            "lightsout_*.deb",
            "lightsout-agent_0.1.0_amd64.deb"
        ));
        assert!(glob_match("lab-0?.pem", "lab-01.pem"));
        assert!(!glob_match("lab-01.pem", "lab-02.pem"));
        assert!(glob_match("*", "x"));
    }

    #[test]
    fn only_what_the_block_names_is_carried() {
        let from = tempfile::tempdir().unwrap();
        let to = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(from.path().join("target/debian")).unwrap();
        for f in [
            "target/debian/lightsout-agent_0.1_amd64.deb",
            "target/debian/lightsout_0.1_amd64.deb",
            "lab-01.pem",
            "lab-02.pem",
        ] {
            std::fs::write(from.path().join(f), "x").unwrap();
        }
        let body = "sudo dpkg -i lightsout-agent_*.deb\nsudo install -m 600 lab-02.pem /etc/lightsout/agent-bundle.pem\n";
        let carried = carry(from.path(), to.path(), body).unwrap();
        assert_eq!(carried, ["lab-02.pem", "lightsout-agent_0.1_amd64.deb"]);
        assert!(!to.path().join("lab-01.pem").exists());
    }
}
