//! The substitution table: the README's lines that cannot run as written on this host, and
//! what the test does instead, with why. Printed with the results of every run. Every other
//! command runs as written, inside its machine; a command with no rule that cannot run there
//! fails the test (the forbidden programs — `systemctl`, `dpkg`, `shutdown`, … — are shadowed
//! by stand-ins that fail, see `lab.rs`).

use std::fmt::Write as _;

/// What the test does for a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `cargo install cargo-deb --locked`: check it is there, install nothing.
    CheckCargoDeb,
    /// `packaging/build-debs`: the packages built once for the test run.
    CopyDebs,
    /// `dpkg -i FILE...`: extract into the machine's root.
    ExtractDebs,
    /// `systemctl enable --now lightsout-agent`: start the unit's `ExecStart`, in dry-run.
    StartUnit,
    /// `systemctl reload lightsout-agent`: the unit's `ExecReload` (SIGHUP).
    ReloadUnit,
    /// Not run, for the reason given.
    NotRun,
}

/// How a rule recognises a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// The whole command (comment stripped, spaces collapsed).
    Exact(&'static str),
    /// The command's first words.
    Prefix(&'static str),
}

/// One row of the table.
#[derive(Debug)]
pub struct Rule {
    /// The line as the README has it.
    pub says: Match,
    /// What the test does.
    pub action: Action,
    /// In words, for the printed table.
    pub does: &'static str,
    /// Why.
    pub why: &'static str,
}

/// A leading `sudo `: dropped, then the rest is matched. The test runs as root.
pub const SUDO: &str = "sudo ";

/// The table.
pub const RULES: &[Rule] = &[
    Rule {
        says: Match::Exact("cargo install cargo-deb --locked"),
        action: Action::CheckCargoDeb,
        does: "checks `cargo deb --version` (or that the packages come from LIGHTSOUT_DEB_DIR)",
        why: "installing tools on the host is .ci/run's job, which runs this very line",
    },
    Rule {
        says: Match::Exact("packaging/build-debs"),
        action: Action::CopyDebs,
        does: "copies the packages into ./target/debian: built once per test run by this same \
               script, or CI's one release build (LIGHTSOUT_DEB_DIR)",
        why: "one release build serves every suite",
    },
    Rule {
        says: Match::Prefix("dpkg -i "),
        action: Action::ExtractDebs,
        does: "dpkg-deb -x each FILE into the machine's root; its etc/ and var/ are copied onto \
               the machine's /etc and /var; its usr/bin is first on the machine's PATH; then the \
               package's postinst runs with `configure` inside the machine (its systemd parts \
               find no systemd and do nothing)",
        why: "dpkg -i would change this host's package database; the maintainer scripts run \
              with systemd in the VM suite",
    },
    Rule {
        says: Match::Exact("systemctl enable --now lightsout-agent"),
        action: Action::StartUnit,
        does: "reads lightsout-agent.service from the package, creates its State/Configuration/\
               LogsDirectory, and runs its ExecStart inside the machine with its Environment= \
               and UMask=, plus --dry-run",
        why: "no systemd here; SAFETY: --dry-run, so no power action can ever run on this host",
    },
    Rule {
        says: Match::Exact("systemctl reload lightsout-agent"),
        action: Action::ReloadUnit,
        does: "runs the unit's ExecReload with $MAINPID = that machine's agent (SIGHUP), and \
               waits for the agent's log line saying the reload is done",
        why: "no systemd here",
    },
    Rule {
        says: Match::Exact("cargo test --workspace --locked"),
        action: Action::NotRun,
        does: "not run",
        why: "it is the everyday suite, which .ci/run runs just before this one; here it would \
              run this test inside itself",
    },
];

/// How each machine is set up, printed with the table.
pub const SETTING: &[(&str, &str)] = &[
    (
        "sudo CMD",
        "CMD (a stand-in `sudo` runs its arguments: the test is root)",
    ),
    (
        "On the administrator's laptop",
        "network namespace `laptop` (the bridge of the lab's /24, address .1), HOME of its own",
    ),
    (
        "On each lab machine, here `lab-01`",
        "the block runs once per host of the inventory the laptop's block wrote, in its own \
         network namespace at the inventory's address, with `lab-01` replaced by the host's name",
    ),
    (
        "copy ... over ssh, a USB stick",
        "before a lab machine's block: the files it names (globs too) are copied from the \
         laptop's directory into the machine's",
    ),
    (
        "/etc/..., /var/...",
        "as written: inside each machine, /etc and /var are overlays whose changes stay in \
         that machine's directory; the host's are untouched",
    ),
    (
        "./quickstart",
        "as written, in this checkout, with LIGHTSOUT_HOME set to a fresh directory",
    ),
    (
        "systemctl, dpkg, apt, shutdown, reboot, ssh, ... (anything else)",
        "stand-ins that fail the test: a line with no rule runs as written, or fails",
    ),
];

/// The rule for `command` (its single line, comment stripped): whether a `sudo` was dropped,
/// the rule if any, and the command that is left.
pub fn find(line: &str) -> (bool, Option<&'static Rule>, String) {
    let (sudo, rest) = match line.strip_prefix(SUDO) {
        Some(rest) => (true, rest.trim()),
        None => (false, line),
    };
    let rule = RULES.iter().find(|r| match r.says {
        Match::Exact(s) => rest == s,
        Match::Prefix(p) => rest.starts_with(p),
    });
    (sudo, rule, rest.to_owned())
}

/// The table as printed.
pub fn table() -> String {
    let mut out = String::from(
        "docs: substitution table (tests/docs/rules.rs) — every other line runs as written\n",
    );
    for rule in RULES {
        let says = match rule.says {
            Match::Exact(s) => s.to_owned(),
            Match::Prefix(p) => format!("{p}..."),
        };
        let _ = writeln!(
            out,
            "  {says}\n      → {}\n      why: {}",
            rule.does, rule.why
        );
    }
    out.push_str("docs: machines\n");
    for (says, does) in SETTING {
        let _ = writeln!(out, "  {says}\n      → {does}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sudo_is_dropped_and_the_rest_matched() {
        let (sudo, rule, rest) = find("sudo systemctl enable --now lightsout-agent");
        assert!(sudo);
        assert_eq!(rule.unwrap().action, Action::StartUnit);
        assert_eq!(rest, "systemctl enable --now lightsout-agent");
        let (_, rule, _) = find("sudo dpkg -i lightsout-agent_*.deb");
        assert_eq!(rule.unwrap().action, Action::ExtractDebs);
        let (sudo, rule, _) = find("lightsout pki init");
        assert!(!sudo && rule.is_none());
    }

    #[test]
    fn near_misses_get_no_rule() {
        // A different unit, another verb, extra words: no rule, so they run as written and
        // meet the failing stand-ins.
        for line in [
            "systemctl enable --now other",
            "systemctl restart lightsout-agent",
            "systemctl reload lightsout-agent extra",
            "packaging/build-debs /tmp/out",
            "cargo test --workspace",
        ] {
            assert!(find(line).1.is_none(), "{line}");
        }
    }

    #[test]
    fn the_table_names_every_rule_and_the_safety_measure() {
        let table = table();
        for rule in RULES {
            assert!(table.contains(rule.why), "{table}");
        }
        assert!(table.contains("SAFETY: --dry-run"), "{table}");
    }
}
