//! The controller's man pages: `lightsout(1)` and one page per subcommand at every level
//! (`lightsout-shutdown(1)`, `lightsout-pki-issue-agent(1)`), walked and written by
//! [`lightsout_cli::man`]. clap knows the options; the sections it cannot know (targets,
//! durations, exit status, the inventory format, files, environment) are written here, once,
//! and added to the pages they concern.

use clap::CommandFactory;
use lightsout_cli::man::roff::{Roff, bold, italic, roman};
use lightsout_cli::man::{Manual, item, page_name, section, subcommands, verbatim};

/// Every page of the controller is in section 1 (user commands).
const SECTION: &str = "1";

/// The manual the `lightsout man` subcommand writes (`Manual::run`): every page as `NAME.1`.
#[must_use]
pub fn manual() -> Manual {
    Manual::new(crate::cli::Cli::command(), SECTION, our_sections)
}

/// The sections a page gets, by what its command does.
fn our_sections(cmd: &clap::Command, roff: &mut Roff) {
    let name = page_name(cmd);
    let main = name == "lightsout";
    let takes_targets = cmd.get_arguments().any(|a| a.get_id() == "targets");
    let about_inventory =
        main || name.starts_with("lightsout-inventory") || name == "lightsout-discover";
    let about_home = main || name.starts_with("lightsout-pki");
    if main || takes_targets {
        targets(roff);
    }
    durations(roff);
    if about_inventory {
        inventory(roff);
    }
    exit_status(roff);
    if main {
        environment(roff);
    }
    if about_home || about_inventory {
        files(roff);
    }
    see_also(cmd, main, roff);
}

fn targets(roff: &mut Roff) {
    section(
        roff,
        "TARGETS",
        [roman(
            "Each TARGET is one of: a host NAME from the inventory; @GROUP, every host of a \
             group (groups of groups included); all, every host of the inventory; an ADDRESS \
             or DNS name; HOST:PORT; [IPv6]:PORT. Without a port the inventory's or the \
             default port 7474 is used. An unknown name is refused before anything is sent \
             (exit status 2), with the nearest known names.",
        )],
    );
}

fn durations(roff: &mut Roff) {
    section(
        roff,
        "DURATIONS",
        [
            roman("A DURATION ("),
            bold("--timeout"),
            roman(", "),
            bold("--delay"),
            roman(", "),
            bold("--stagger"),
            roman(", "),
            bold("--wait-timeout"),
            roman(
                ") is written 90, 90s, 500ms, 5m, 1h or 1h30m; a bare number is seconds. \
                 On Linux and macOS the system's shutdown counts whole minutes, so the agent \
                 waits the remaining seconds of a --delay itself: an accepted action never \
                 happens early.",
            ),
        ],
    );
}

fn inventory(roff: &mut Roff) {
    section(
        roff,
        "INVENTORY",
        [
            roman("The inventory names the lab's machines and groups them. It is "),
            italic("HOME"),
            roman("/inventory.toml, or the file given with "),
            bold("--inventory"),
            roman(
                " or LIGHTSOUT_INVENTORY (an Ansible inventory is read too: INI, YAML, or a \
                 directory with host_vars and group_vars). The TOML format:",
            ),
        ],
    );
    verbatim(
        roff,
        "[defaults]\n\
         port = 7474                      # the agents' port unless a host gives one\n\
         \n\
         [hosts.lab-01]\n\
         address = \"10.0.0.21\"            # default: the host's name, as a DNS name\n\
         mac = \"52:54:00:12:34:01\"        # Wake-on-LAN; a list for several cards\n\
         [hosts.lab-03]\n\
         address = \"10.0.0.23\"\n\
         port = 7500\n\
         tls_name = \"lab-03\"              # the name in its certificate, if not the address\n\
         \n\
         [groups]\n\
         room-101 = [\"lab-01\", \"lab-02\"]\n\
         students = [\"@room-101\", \"@room-102\"]   # groups of groups; cycles are refused",
    );
    roff.control("PP", []);
    roff.text([roman(
        "Unknown keys, invalid MACs, group members that do not exist and cycles between \
         groups are errors at load, naming the file and the key (exit status 2). A complete \
         example is /usr/share/doc/lightsout/inventory.example.toml.",
    )]);
}

fn exit_status(roff: &mut Roff) {
    roff.control("SH", ["EXIT STATUS"]);
    item(
        roff,
        "0",
        [roman(
            "Every host succeeded (skipped hosts are not failures).",
        )],
    );
    item(roff, "1", [roman("At least one host failed.")]);
    item(
        roff,
        "2",
        [roman(
            "A usage or configuration error, or a refusal before anything was sent (an \
             unknown target, no confirmation, this machine named without --include-self).",
        )],
    );
}

fn environment(roff: &mut Roff) {
    roff.control("SH", ["ENVIRONMENT"]);
    item(
        roff,
        "LIGHTSOUT_HOME",
        [roman(
            "The home directory, as --home (default ~/.config/lightsout).",
        )],
    );
    item(
        roff,
        "LIGHTSOUT_BUNDLE",
        [roman("A bundle of certificate, CA and key, as --bundle.")],
    );
    item(
        roff,
        "LIGHTSOUT_INVENTORY",
        [roman("The inventory, as --inventory.")],
    );
    item(
        roff,
        "RUST_LOG",
        [roman("Diagnostics on stderr, overriding -v (e.g. debug).")],
    );
}

fn files(roff: &mut Roff) {
    roff.control("SH", ["FILES"]);
    item(
        roff,
        "~/.config/lightsout/",
        [roman(
            "The default home directory: the lab CA (ca.pem, ca-key.pem), this controller's \
             certificate and key (controller.pem, controller-key.pem), the revocation list \
             (crl.pem) and inventory.toml. An empty one gets a new lab CA on first use.",
        )],
    );
    item(
        roff,
        "/usr/share/doc/lightsout/inventory.example.toml",
        [roman("An example inventory, every key commented.")],
    );
}

fn see_also(cmd: &clap::Command, main: bool, roff: &mut Roff) {
    let mut pages: Vec<String> = Vec::new();
    if main {
        pages.push("lightsout-agent(8)".into());
    } else {
        pages.push(format!("lightsout({SECTION})"));
    }
    pages.extend(subcommands(cmd).map(|s| format!("{}({SECTION})", page_name(s))));
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

    /// Whether `page` has the section `name` (`.SH NAME`, quoted when it has a space).
    fn has_section(page: &str, name: &str) -> bool {
        page.lines()
            .any(|l| l == format!(".SH {name}") || l == format!(".SH \"{name}\""))
    }

    #[test]
    fn every_subcommand_at_every_level_gets_a_page_and_the_main_one_lists_them() {
        let dir = tempfile::tempdir().unwrap();
        let written = manual().write_all(dir.path()).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for page in [
            "lightsout.1",
            "lightsout-shutdown.1",
            "lightsout-restart.1",
            "lightsout-inventory-learn.1",
            "lightsout-pki-issue-agent.1",
        ] {
            assert!(names.iter().any(|n| n == page), "{page} in {names:?}");
        }
        assert!(!names.iter().any(|n| n.contains("help")), "{names:?}");
        let main = std::fs::read_to_string(dir.path().join("lightsout.1")).unwrap();
        assert!(title(&main).starts_with(".TH lightsout 1"), "{main}");
        for section in [
            "EXIT STATUS",
            "INVENTORY",
            "DURATIONS",
            "TARGETS",
            "SEE ALSO",
        ] {
            assert!(has_section(&main, section), "{section}");
        }
        let shutdown = std::fs::read_to_string(dir.path().join("lightsout-shutdown.1")).unwrap();
        assert!(
            title(&shutdown).starts_with(".TH lightsout-shutdown 1"),
            "{shutdown}"
        );
        assert!(shutdown.contains("\\-\\-delay") && has_section(&shutdown, "EXIT STATUS"));
        assert!(
            !has_section(&shutdown, "INVENTORY"),
            "only where it concerns"
        );
    }

    #[test]
    fn plain_man_is_the_main_page() {
        let text = String::from_utf8(manual().main_page().unwrap()).unwrap();
        assert!(title(&text).starts_with(".TH lightsout 1"), "{text}");
        assert!(text.contains("lightsout\\-shutdown(1)"));
    }
}
