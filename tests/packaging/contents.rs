//! What the packages hold: binaries that run, the unit where systemd looks for it, the
//! conffiles, the example files, a man page per subcommand that renders, and every path a man
//! page or `--help` names.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::CommandFactory;
use lightsout_tests::{have, skip_missing};

use crate::Installed;

/// Paths the pages and `--help` may name although no package holds them, each for a reason.
const NOT_PACKAGED: &[(&str, &str)] = &[
    (
        "/etc/lightsout/agent-bundle.pem",
        "this machine's bundle: the administrator installs it (the README's rollout)",
    ),
    (
        "/var/lib/lightsout",
        "the service's state directory: created by postinst and by StateDirectory=",
    ),
    (
        "/var/lib/lightsout/audit.jsonl",
        "the audit log: the agent creates it at its first line",
    ),
];

/// The control files of `deb` (`dpkg-deb -e`), extracted into `dir`.
fn control_files(deb: &Path, dir: &Path) -> PathBuf {
    let out = dir.join("DEBIAN");
    let status = Command::new("dpkg-deb")
        .arg("-e")
        .arg(deb)
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    out
}

/// `file` in the root, or its gzipped form (cargo-deb compresses man pages).
fn packaged(installed: &Installed, file: &str) -> Option<PathBuf> {
    let plain = installed.path(file);
    let gz = installed.path(&format!("{file}.gz"));
    [plain, gz].into_iter().find(|p| p.exists())
}

/// The text of `path`, gunzipped if it ends in `.gz`.
fn read_maybe_gz(path: &Path) -> String {
    if path.extension().is_some_and(|e| e == "gz") {
        let out = Command::new("gzip").arg("-dc").arg(path).output().unwrap();
        assert!(out.status.success(), "gzip -dc {}", path.display());
        String::from_utf8(out.stdout).unwrap()
    } else {
        std::fs::read_to_string(path).unwrap()
    }
}

#[test]
fn packages_hold_the_binaries_unit_configs_and_docs() {
    let Some(installed) = Installed::new() else {
        return;
    };
    for file in [
        "/usr/bin/lightsout",
        "/usr/bin/lightsout-agent",
        "/usr/lib/systemd/system/lightsout-agent.service",
        "/etc/lightsout/agent.toml",
        "/etc/logrotate.d/lightsout-agent",
        "/usr/share/doc/lightsout-agent/agent.example.toml",
        "/usr/share/doc/lightsout/inventory.example.toml",
        "/usr/share/man/man1/lightsout.1",
        "/usr/share/man/man8/lightsout-agent.8",
        "/usr/share/bash-completion/completions/lightsout",
        "/usr/share/zsh/vendor-completions/_lightsout-agent",
        "/usr/share/fish/vendor_completions.d/lightsout.fish",
    ] {
        assert!(
            packaged(&installed, file).is_some(),
            "{file} missing from the packages"
        );
    }
    // The unit where systemd looks on a merged-/usr system, and nowhere else.
    assert!(
        !installed.path("/lib/systemd").exists(),
        "the unit belongs under /usr/lib/systemd/system"
    );
    // The shipped example is the configuration installed as /etc/lightsout/agent.toml.
    assert_eq!(
        std::fs::read(installed.path("/etc/lightsout/agent.toml")).unwrap(),
        std::fs::read(installed.path("/usr/share/doc/lightsout-agent/agent.example.toml")).unwrap()
    );

    // The configuration files are conffiles: upgrades keep the administrator's edits.
    let scratch = installed.scratch();
    let control = control_files(&installed.debs.agent, &scratch);
    let conffiles = std::fs::read_to_string(control.join("conffiles")).unwrap();
    let conffiles: BTreeSet<&str> = conffiles.lines().map(str::trim).collect();
    for conffile in [
        "/etc/lightsout/agent.toml",
        "/etc/logrotate.d/lightsout-agent",
    ] {
        assert!(conffiles.contains(conffile), "{conffile}: {conffiles:?}");
    }
    let fields = std::fs::read_to_string(control.join("control")).unwrap();
    assert!(fields.contains("Package: lightsout-agent"), "{fields}");

    // The installed binaries run.
    for b in ["lightsout", "lightsout-agent"] {
        let out = Command::new(installed.path(&format!("/usr/bin/{b}")))
            .arg("--version")
            .output()
            .unwrap();
        assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).starts_with(b));
    }
}

/// Every page a command tree should have: `NAME` (the command's full name, as clap builds
/// it: `lightsout-pki-issue-agent`), for the command and each visible subcommand, at every
/// level.
fn expected_pages(cmd: clap::Command) -> Vec<String> {
    fn walk(cmd: &clap::Command, pages: &mut Vec<String>) {
        pages.push(
            cmd.get_display_name()
                .unwrap_or_else(|| cmd.get_name())
                .to_owned(),
        );
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            walk(sub, pages);
        }
    }
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let mut pages = Vec::new();
    walk(&cmd, &mut pages);
    pages
}

/// `(name, section, text)` of every lightsout man page in the root.
fn pages(installed: &Installed) -> Vec<(String, &'static str, String)> {
    let mut found = Vec::new();
    for section in ["1", "8"] {
        let dir = installed.path(&format!("/usr/share/man/man{section}"));
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            let name = file
                .trim_end_matches(".gz")
                .trim_end_matches(&format!(".{section}"))
                .to_owned();
            found.push((name, section, read_maybe_gz(&path)));
        }
    }
    found
}

#[test]
fn every_subcommand_has_a_man_page_that_renders() {
    let Some(installed) = Installed::new() else {
        return;
    };
    let found = pages(&installed);
    let names: BTreeSet<&str> = found.iter().map(|(n, _, _)| n.as_str()).collect();
    let controller = expected_pages(lightsout_controller::cli::Cli::command());
    let agent = expected_pages(lightsout_agent::cli::Args::command());
    assert!(
        controller.len() > 15 && agent.len() >= 4,
        "{controller:?} {agent:?}"
    );
    for (pages, section) in [(&controller, "1"), (&agent, "8")] {
        for page in pages {
            assert!(
                found.iter().any(|(n, s, _)| n == page && *s == section),
                "no man page {page}({section}) in the packages: {names:?}"
            );
        }
    }
    // Nothing stale: every page packaged belongs to a command that exists.
    for (name, section, _) in &found {
        assert!(
            controller.contains(name) || agent.contains(name),
            "{name}({section}) is packaged but no such command exists"
        );
    }

    let groff = have("groff", "--version");
    if !groff {
        skip_missing(
            "groff",
            ".ci/run installs groff-base; checking only that pages parse",
        );
    }
    for (name, section, text) in &found {
        // The title line (roff string definitions may come first).
        let title = text
            .lines()
            .find(|l| l.starts_with(".TH "))
            .unwrap_or_default();
        assert!(
            title.starts_with(&format!(".TH {name} {section} ")),
            "{name}: {}",
            &text[..text.len().min(300)]
        );
        // Every page a page refers to (SUBCOMMANDS, SEE ALSO) is one of ours and exists.
        for reference in references(text) {
            if reference.starts_with("lightsout") {
                assert!(
                    found
                        .iter()
                        .any(|(n, s, _)| format!("{n}({s})") == reference),
                    "{name}({section}) refers to {reference}, which is not packaged"
                );
            }
        }
        if groff {
            // -k: through preconv, as man(1) does; -ww -z: every warning, no output.
            let dir = tempfile::tempdir().unwrap();
            let page = dir.path().join("page");
            std::fs::write(&page, text).unwrap();
            let out = Command::new("groff")
                .args(["-k", "-man", "-Tutf8", "-ww", "-z"])
                .arg(&page)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success() && stderr.trim().is_empty(),
                "{name}({section}) does not render cleanly:\n{stderr}"
            );
        }
    }
}

/// The `NAME(SECTION)` references in a page's roff source.
fn references(roff: &str) -> Vec<String> {
    let text = unescape(roff);
    let mut refs = Vec::new();
    for word in text.split(|c: char| c.is_whitespace() || c == ',') {
        if let Some(open) = word.find('(') {
            let (name, rest) = word.split_at(open);
            let section = rest.as_bytes().get(1).copied();
            if rest.len() == 3
                && rest.ends_with(')')
                && section.is_some_and(|s| s.is_ascii_digit())
                && !name.is_empty()
            {
                refs.push(word.to_owned());
            }
        }
    }
    refs
}

/// roff source made plain enough to find names and paths in: `\-` is `-`, font changes go.
fn unescape(roff: &str) -> String {
    let mut text = roff.replace("\\-", "-").replace("\\(aq", "'");
    for font in ["\\fB", "\\fI", "\\fR", "\\fP"] {
        text = text.replace(font, "");
    }
    text
}

/// Every absolute path in `text`: a `/` at the start of a word (after a space, quote,
/// bracket or `=`) followed by a letter, up to the first character that cannot be in one.
/// `HOME/ca.pem`, `~/.config`, `TCP/UDP` and an IPv6 `/64` are not absolute paths.
fn absolute_paths(text: &str) -> BTreeSet<String> {
    let mut paths = BTreeSet::new();
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let at_word_start = i == 0
            || matches!(
                chars[i - 1],
                ' ' | '\t' | '\n' | '"' | '\'' | '`' | '(' | '[' | '='
            );
        if c != '/' || !at_word_start || !chars.get(i + 1).is_some_and(char::is_ascii_alphabetic) {
            continue;
        }
        let path: String = chars[i..]
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '+'))
            .collect();
        paths.insert(path.trim_end_matches('.').to_owned());
    }
    paths
}

/// `--help` of every subcommand of `binary` (its command tree `cmd`), as run from the root.
fn every_help(binary: &Path, cmd: clap::Command) -> Vec<(String, String)> {
    fn walk(cmd: &clap::Command, path: &mut Vec<String>, all: &mut Vec<Vec<String>>) {
        all.push(path.clone());
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            path.push(sub.get_name().to_owned());
            walk(sub, path, all);
            path.pop();
        }
    }
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let mut all = Vec::new();
    walk(&cmd, &mut Vec::new(), &mut all);
    all.into_iter()
        .map(|words| {
            let out = Command::new(binary)
                .args(&words)
                .arg("--help")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{} {words:?} --help",
                binary.display()
            );
            (words.join(" "), String::from_utf8(out.stdout).unwrap())
        })
        .collect()
}

#[test]
fn every_path_a_man_page_or_help_mentions_exists_in_the_packages() {
    let Some(installed) = Installed::new() else {
        return;
    };
    let mut mentioned: Vec<(String, String)> = Vec::new();
    for (name, section, text) in pages(&installed) {
        for path in absolute_paths(&unescape(&text)) {
            mentioned.push((path, format!("man page {name}({section})")));
        }
    }
    let helps = every_help(
        &installed.path("/usr/bin/lightsout"),
        lightsout_controller::cli::Cli::command(),
    )
    .into_iter()
    .map(|(words, text)| (format!("lightsout {words} --help"), text))
    .chain(
        every_help(
            &installed.path("/usr/bin/lightsout-agent"),
            lightsout_agent::cli::Args::command(),
        )
        .into_iter()
        .map(|(words, text)| (format!("lightsout-agent {words} --help"), text)),
    );
    for (source, text) in helps {
        for path in absolute_paths(&text) {
            mentioned.push((path, source.clone()));
        }
    }
    // The pages name the packaged files: an empty list would mean the scan is broken.
    assert!(
        mentioned
            .iter()
            .any(|(p, _)| p == "/usr/share/doc/lightsout/inventory.example.toml"),
        "{mentioned:?}"
    );
    let mut missing = Vec::new();
    for (path, source) in &mentioned {
        let bare = path.trim_end_matches('/');
        if NOT_PACKAGED.iter().any(|(allowed, _)| *allowed == bare) {
            continue;
        }
        if packaged(&installed, bare).is_none() {
            missing.push(format!("{path} (in {source})"));
        }
    }
    assert!(
        missing.is_empty(),
        "paths named but not in the packages (package them, or add them to NOT_PACKAGED with the reason):\n{}",
        missing.join("\n")
    );
}

#[test]
fn absolute_paths_are_found_and_look_alikes_are_not() {
    let found = absolute_paths(
        "see /etc/lightsout/agent.toml. HOME/ca.pem ~/.config/x TCP/UDP an IPv6 /64 `/usr/bin/x` (/var/lib/y/)",
    );
    let expected: BTreeSet<String> = ["/etc/lightsout/agent.toml", "/usr/bin/x", "/var/lib/y/"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(found, expected);
    assert_eq!(
        references("\\fBlightsout\\-agent\\fR(8), lightsout(1) f(x)"),
        ["lightsout-agent(8)", "lightsout(1)"]
    );
}
