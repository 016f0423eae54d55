//! Man pages, generated from the clap definitions ([`crate::cli`]) with clap_mangen:
//! `lightsout-agent(8)` and one page per subcommand at every level
//! (`lightsout-agent-audit-tail(8)`), so that every name a SUBCOMMANDS section lists is a page
//! that exists. clap knows the options; what it cannot know (the packaged files, signals,
//! exit status, environment) is written here and added to the pages it concerns.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_mangen::Man;
use clap_mangen::roff::{Inline, Roff, bold, roman};

/// The agent is a system daemon: section 8, its subcommands with it.
const SECTION: &str = "8";

/// The `lightsout-agent man` subcommand: the main page on stdout, or every page into
/// `out_dir`.
///
/// # Errors
/// Writing fails.
pub fn run(out_dir: Option<&Path>) -> io::Result<()> {
    match out_dir {
        None => {
            // Into memory first, then through the one stdout writer: a closed pipe
            // (`man | head`) is a normal end there, not an error.
            let mut page = Vec::new();
            render(&command(), &mut page)?;
            crate::stdout::bytes(&page);
            Ok(())
        }
        Some(dir) => write_all(dir).map(drop),
    }
}

/// Writes every page into `dir` (created if missing), as `NAME.8`; returns their paths.
///
/// # Errors
/// The directory or a page cannot be written.
pub fn write_all(dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| naming(dir, e))?;
    let mut written = Vec::new();
    write_tree(&command(), dir, &mut written)?;
    Ok(written)
}

/// The command tree as the pages show it: built, so that each subcommand knows its full
/// name (`lightsout-agent-audit`), and without clap's `help` subcommand, which has no page.
fn command() -> clap::Command {
    let mut cmd = crate::cli::Args::command().disable_help_subcommand(true);
    cmd.build();
    cmd
}

fn page_name(cmd: &clap::Command) -> &str {
    cmd.get_display_name().unwrap_or_else(|| cmd.get_name())
}

fn subcommands(cmd: &clap::Command) -> impl Iterator<Item = &clap::Command> {
    cmd.get_subcommands().filter(|s| !s.is_hide_set())
}

/// `e`, with the file or directory it concerns in its message (`--out-dir` may be wrong).
fn naming(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("--out-dir: {}: {e}", path.display()))
}

fn write_tree(cmd: &clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> io::Result<()> {
    let path = dir.join(format!("{}.{SECTION}", page_name(cmd)));
    let write = || {
        let mut file = io::BufWriter::new(std::fs::File::create(&path)?);
        render(cmd, &mut file)?;
        file.flush()
    };
    write().map_err(|e| naming(&path, e))?;
    written.push(path);
    for sub in subcommands(cmd) {
        write_tree(sub, dir, written)?;
    }
    Ok(())
}

/// One page: clap_mangen's sections in its order, ours before VERSION.
fn render(cmd: &clap::Command, w: &mut dyn Write) -> io::Result<()> {
    let man = Man::new(cmd.clone())
        .section(SECTION)
        .manual("lightsout manual");
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(w)?;
    }
    if subcommands(cmd).next().is_some() {
        man.render_subcommands_section(w)?;
    }
    if cmd.get_after_help().is_some() || cmd.get_after_long_help().is_some() {
        man.render_extra_section(w)?;
    }
    let mut roff = Roff::new();
    let name = page_name(cmd);
    if name == "lightsout-agent" {
        signals(&mut roff);
        environment(&mut roff);
    }
    exit_status(&mut roff);
    if name == "lightsout-agent" || name.starts_with("lightsout-agent-audit") {
        files(&mut roff);
    }
    see_also(cmd, name == "lightsout-agent", &mut roff);
    roff.to_writer(w)?;
    // Subcommands carry no version of their own (clap_mangen would panic on them).
    if cmd.get_version().is_some() {
        man.render_version_section(w)?;
    }
    Ok(())
}

fn section(roff: &mut Roff, title: &str, paragraph: impl Into<Vec<Inline>>) {
    roff.control("SH", [title]);
    roff.text(paragraph);
}

/// A tagged paragraph: `tag` in bold, then its explanation.
fn item(roff: &mut Roff, tag: &str, text: impl Into<Vec<Inline>>) {
    roff.control("TP", []);
    roff.text([bold(tag)]);
    roff.text(text);
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
    fn an_unusable_out_dir_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        let err = write_all(&file.join("man")).unwrap_err().to_string();
        assert!(
            err.starts_with("--out-dir: ") && err.contains(&file.join("man").display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn every_subcommand_gets_a_page_in_section_8() {
        let dir = tempfile::tempdir().unwrap();
        let written = write_all(dir.path()).unwrap();
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
