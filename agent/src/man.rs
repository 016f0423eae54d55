//! The agent's man pages: `lightsout-agent(8)` and one page per subcommand at every level
//! (`lightsout-agent-audit-tail(8)`), walked and written by [`lightsout_cli::man`]. clap
//! knows the options; what it cannot know (the packaged files, signals, exit status,
//! environment) is written here and added to the pages it concerns.

use clap::CommandFactory;
use lightsout_cli::man::roff::{Roff, roman};
use lightsout_cli::man::{Manual, item, page_name, section, subcommands};

/// The agent is a system daemon: section 8, its subcommands with it.
const SECTION: &str = "8";

/// The manual the `lightsout-agent man` subcommand writes ([`Manual::run`]): every page
/// as `NAME.8`.
#[must_use]
pub fn manual() -> Manual {
    Manual::new(crate::cli::Args::command(), SECTION, our_sections)
}

/// The sections a page gets, by what its command does.
fn our_sections(cmd: &clap::Command, roff: &mut Roff) {
    let name = page_name(cmd);
    if name == "lightsout-agent" {
        signals(roff);
        environment(roff);
    }
    exit_status(roff);
    if name == "lightsout-agent" || name.starts_with("lightsout-agent-audit") {
        files(roff);
    }
    see_also(cmd, name == "lightsout-agent", roff);
}

fn signals(roff: &mut Roff) {
    roff.control("SH", ["SIGNALS"]);
    item(
        roff,
        "SIGHUP",
        [roman(
            "Re-read the configuration file and apply its [policy] and [tls] crl (and the \
             CRL itself), and reopen the audit log (after log rotation). Other keys that \
             changed are logged as taking effect at the next start. A reload that fails \
             keeps everything as it was. systemctl reload lightsout-agent sends it.",
        )],
    );
    item(
        roff,
        "SIGTERM, SIGINT",
        [roman(
            "Stop accepting, let in-flight requests finish (--shutdown-grace), exit 0. A \
             power action still waiting for its delay is handed to the system first.",
        )],
    );
}

fn environment(roff: &mut Roff) {
    roff.control("SH", ["ENVIRONMENT"]);
    for (name, what) in [
        ("LIGHTSOUT_CONFIG", "The configuration file, as --config."),
        (
            "LIGHTSOUT_HOME",
            "The home directory, as --home; over the configuration file's home.",
        ),
        ("LIGHTSOUT_LISTEN", "The listen address, as --listen."),
        ("LIGHTSOUT_LOG_FORMAT", "text or json, as --log-format."),
        ("LIGHTSOUT_WAKE_PORTS", "As --wake-ports."),
        (
            "RUST_LOG",
            "The log level on stderr, overriding -v and -q (e.g. debug).",
        ),
    ] {
        item(roff, name, [roman(what)]);
    }
}

fn exit_status(roff: &mut Roff) {
    roff.control("SH", ["EXIT STATUS"]);
    item(
        roff,
        "0",
        [roman(
            "Stopped by SIGTERM or SIGINT; --check-config found the configuration usable; \
             the subcommand succeeded.",
        )],
    );
    item(
        roff,
        "2",
        [roman(
            "The configuration cannot be used (the message names the file, line and key, or \
             the option), the audit log cannot be opened for writing, or the subcommand \
             failed.",
        )],
    );
}

fn files(roff: &mut Roff) {
    roff.control("SH", ["FILES"]);
    item(
        roff,
        "/etc/lightsout/agent.toml",
        [roman(
            "The packaged service's configuration (a conffile; every key is described in the \
             example below). audit tail reads it when given no --config, --home or \
             --audit-log.",
        )],
    );
    item(
        roff,
        "/etc/lightsout/agent-bundle.pem",
        [roman(
            "This machine's certificate, the lab CA and the key, installed by the \
             administrator (lightsout pki issue agent NAME --bundle FILE, then install -m 600). \
             The service does not start until it exists.",
        )],
    );
    item(
        roff,
        "/var/lib/lightsout/",
        [roman(
            "The service's home (the configuration's home): the replay memory, the last \
             accepted action and the audit log.",
        )],
    );
    item(
        roff,
        "/var/lib/lightsout/audit.jsonl",
        [roman(
            "The audit log, one JSON line per request; rotated weekly by \
             /etc/logrotate.d/lightsout-agent, which reopens it with SIGHUP.",
        )],
    );
    item(
        roff,
        "/usr/share/doc/lightsout-agent/agent.example.toml",
        [roman("The configuration with every key commented.")],
    );
    item(
        roff,
        "/usr/lib/systemd/system/lightsout-agent.service",
        [roman(
            "The hardened systemd unit: started by nobody on installation, restarted on \
             upgrade if it runs, stopped on removal.",
        )],
    );
}

fn see_also(cmd: &clap::Command, main: bool, roff: &mut Roff) {
    let mut pages: Vec<String> = vec!["lightsout(1)".into()];
    if !main {
        pages.push(format!("lightsout-agent({SECTION})"));
    }
    pages.extend(subcommands(cmd).map(|s| format!("{}({SECTION})", page_name(s))));
    pages.push("logrotate(8)".into());
    section(roff, "SEE ALSO", [roman(pages.join(", "))]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `.TH` line (roff may put string definitions before it).
    fn title(page: &str) -> &str {
        page.lines()
            .find(|l| l.starts_with(".TH "))
            .unwrap_or_default()
    }

    #[test]
    fn every_subcommand_gets_a_page_in_section_8() {
        let dir = tempfile::tempdir().unwrap();
        let written = manual().write_all(dir.path()).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for page in [
            "lightsout-agent.8",
            "lightsout-agent-audit.8",
            "lightsout-agent-audit-tail.8",
            "lightsout-agent-man.8",
        ] {
            assert!(names.iter().any(|n| n == page), "{page} in {names:?}");
        }
        let main = std::fs::read_to_string(dir.path().join("lightsout-agent.8")).unwrap();
        assert!(title(&main).starts_with(".TH lightsout-agent 8"), "{main}");
        assert!(main.contains(".SH SIGNALS") && main.contains("/etc/lightsout/agent.toml"));
        let tail =
            std::fs::read_to_string(dir.path().join("lightsout-agent-audit-tail.8")).unwrap();
        assert!(
            title(&tail).starts_with(".TH lightsout-agent-audit-tail 8"),
            "{tail}"
        );
        assert!(tail.contains(".SH FILES"));
    }
}
