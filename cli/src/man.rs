//! Man pages, generated from a binary's clap definitions with clap_mangen: the main page and
//! one page per subcommand at every level (`lightsout-pki-issue-agent(1)`), so that every
//! name a SUBCOMMANDS section lists is a page that exists. clap knows the options; what it
//! cannot know (exit status, files, environment...) each binary writes in its own `man.rs`
//! and hands over as [`Manual::new`]'s `extra`, which adds it to the pages it concerns.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub use clap_mangen::roff;

use clap_mangen::Man;
use roff::{Inline, Roff, bold, roman};

/// Adds a binary's own sections to one page (`cmd` is the page's command).
pub type Extra = fn(cmd: &clap::Command, roff: &mut Roff);

/// One binary's manual: its command tree, its section and the sections clap cannot know.
#[derive(Debug)]
pub struct Manual {
    command: clap::Command,
    section: &'static str,
    extra: Extra,
}

impl Manual {
    /// The manual of `command` (the binary's top-level command) in `section` ("1" for
    /// user commands, "8" for daemons), with `extra` adding the binary's own sections.
    #[must_use]
    pub fn new(command: clap::Command, section: &'static str, extra: Extra) -> Self {
        // Built, so that each subcommand knows its full name (`lightsout-pki-issue`), and
        // without clap's `help` subcommand, which has no page.
        let mut command = command.disable_help_subcommand(true);
        command.build();
        Self {
            command,
            section,
            extra,
        }
    }

    /// The `man` subcommand: the main page on stdout, or every page into `out_dir`.
    ///
    /// # Errors
    /// Writing fails.
    pub fn run(&self, out_dir: Option<&Path>) -> io::Result<()> {
        match out_dir {
            None => {
                // Into memory first, then through the one stdout writer: a closed pipe
                // (`man | head`) is a normal end there, not an error.
                crate::stdout::bytes(&self.main_page()?);
                Ok(())
            }
            Some(dir) => self.write_all(dir).map(drop),
        }
    }

    /// The main page (the top-level command's), rendered.
    ///
    /// # Errors
    /// Rendering fails.
    pub fn main_page(&self) -> io::Result<Vec<u8>> {
        let mut page = Vec::new();
        self.render(&self.command, &mut page)?;
        Ok(page)
    }

    /// Writes every page into `dir` (created if missing), as `NAME.SECTION`; returns their
    /// paths.
    ///
    /// # Errors
    /// The directory or a page cannot be written.
    pub fn write_all(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir).map_err(|e| naming(dir, e))?;
        let mut written = Vec::new();
        self.write_tree(&self.command, dir, &mut written)?;
        Ok(written)
    }

    fn write_tree(
        &self,
        cmd: &clap::Command,
        dir: &Path,
        written: &mut Vec<PathBuf>,
    ) -> io::Result<()> {
        let path = dir.join(format!("{}.{}", page_name(cmd), self.section));
        let write = || {
            let mut file = io::BufWriter::new(std::fs::File::create(&path)?);
            self.render(cmd, &mut file)?;
            file.flush()
        };
        write().map_err(|e| naming(&path, e))?;
        written.push(path);
        for sub in subcommands(cmd) {
            self.write_tree(sub, dir, written)?;
        }
        Ok(())
    }

    /// One page: clap_mangen's sections in its order, the binary's before VERSION.
    fn render(&self, cmd: &clap::Command, w: &mut dyn Write) -> io::Result<()> {
        let man = Man::new(cmd.clone())
            .section(self.section)
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
        (self.extra)(cmd, &mut roff);
        roff.to_writer(w)?;
        // Subcommands carry no version of their own (clap_mangen would panic on them).
        if cmd.get_version().is_some() {
            man.render_version_section(w)?;
        }
        Ok(())
    }
}

/// The page's name: `lightsout-pki-issue` for `lightsout pki issue`.
#[must_use]
pub fn page_name(cmd: &clap::Command) -> &str {
    cmd.get_display_name().unwrap_or_else(|| cmd.get_name())
}

/// The subcommands that get a page (not the hidden ones).
pub fn subcommands(cmd: &clap::Command) -> impl Iterator<Item = &clap::Command> {
    cmd.get_subcommands().filter(|s| !s.is_hide_set())
}

/// `e`, with the file or directory it concerns in its message (`--out-dir` may be wrong).
fn naming(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("--out-dir: {}: {e}", path.display()))
}

/// A section made of one paragraph.
pub fn section(roff: &mut Roff, title: &str, paragraph: impl Into<Vec<Inline>>) {
    roff.control("SH", [title]);
    roff.text(paragraph);
}

/// A tagged paragraph: `tag` in bold, then its explanation.
pub fn item(roff: &mut Roff, tag: &str, text: impl Into<Vec<Inline>>) {
    roff.control("TP", []);
    roff.text([bold(tag)]);
    roff.text(text);
}

/// Lines kept as they are (`.nf` ... `.fi`), for examples.
pub fn verbatim(roff: &mut Roff, lines: &str) {
    roff.control("PP", []);
    roff.control("nf", []);
    for line in lines.lines() {
        roff.text([roman(line)]);
        roff.control("br", []);
    }
    roff.control("fi", []);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small tree: `demo`, `demo sub`, `demo sub leaf`, a hidden one.
    fn manual() -> Manual {
        let cmd = clap::Command::new("demo")
            .version("1.0")
            .about("A demo")
            .arg(clap::Arg::new("verbose").long("verbose").num_args(0))
            .subcommand(
                clap::Command::new("sub")
                    .about("A sub")
                    .subcommand(clap::Command::new("leaf").about("A leaf")),
            )
            .subcommand(clap::Command::new("secret").hide(true));
        Manual::new(cmd, "7", |cmd, roff| {
            section(roff, "EXTRA", [roman(format!("for {}", page_name(cmd)))]);
        })
    }

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
        let err = manual()
            .write_all(&file.join("man"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("--out-dir: ") && err.contains(&file.join("man").display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn every_visible_subcommand_at_every_level_gets_a_page_with_the_extra_sections() {
        let dir = tempfile::tempdir().unwrap();
        let written = manual().write_all(dir.path()).unwrap();
        let mut names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["demo-sub-leaf.7", "demo-sub.7", "demo.7"]);
        let leaf = std::fs::read_to_string(dir.path().join("demo-sub-leaf.7")).unwrap();
        assert!(title(&leaf).starts_with(".TH demo-sub-leaf 7"), "{leaf}");
        assert!(
            leaf.contains(".SH EXTRA") && leaf.contains("for demo\\-sub\\-leaf"),
            "{leaf}"
        );
    }

    #[test]
    fn the_main_page_lists_the_subcommands_and_has_the_version() {
        let text = String::from_utf8(manual().main_page().unwrap()).unwrap();
        assert!(title(&text).starts_with(".TH demo 7"), "{text}");
        assert!(
            text.contains("demo\\-sub(7)") && !text.contains("secret"),
            "{text}"
        );
        assert!(text.contains(".SH VERSION"), "{text}");
    }
}
